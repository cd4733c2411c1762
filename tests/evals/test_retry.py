"""Retry: only rows whose latest verdict failed or was cancelled, never a row a retry cannot fix, never twice."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone

from evals.models import Dataset, Item, Judge, RemoteBatch, Run
from evals.services import retry as retry_service
from evals.services.retry import run_retry, run_retry_failed, run_retry_plan
from evals.services.run_options import RunError
from evals.services.runs import run_create
from tests.conftest import RAG_JUDGE, SUPPORT_JUDGE


def settle(
    run: Run,
    *,
    failed: Iterable[int] = (),
    cancelled: Iterable[int] = (),
    permanent: Iterable[int] = (),
) -> Run:
    """Finish a run as if the judge had answered: the rows at these positions failed (for good, for
    `permanent`) or were cancelled, every other row completed."""
    failed, cancelled, permanent = set(failed) | set(permanent), set(cancelled), set(permanent)
    items = run.items.all()
    items.update(status=Item.Status.COMPLETED, completed_at=timezone.now())
    items.filter(position__in=failed).update(status=Item.Status.FAILED, error_message="judge API timeout")
    items.filter(position__in=permanent).update(
        error_is_permanent=True, error_message="400: inputs[0].contexts: this field is required."
    )
    items.filter(position__in=cancelled).update(
        status=Item.Status.CANCELLED, error_message="Cancelled before it was sent."
    )
    run.batches.update(status=RemoteBatch.Status.COMPLETED, finished_at=timezone.now())
    counts = {status: items.filter(status=status).count() for status in Item.Status.values}
    Run.objects.filter(pk=run.pk).update(
        status=Run.Status.CANCELLED if cancelled else Run.Status.PARTIAL if failed else Run.Status.COMPLETED,
        completed_count=counts[Item.Status.COMPLETED],
        failed_count=counts[Item.Status.FAILED],
        cancelled_count=counts[Item.Status.CANCELLED],
        started_at=timezone.now(),
        finished_at=timezone.now(),
    )
    run.refresh_from_db()
    return run


@pytest.mark.django_db
def test_a_retry_sends_the_failed_and_cancelled_rows_and_names_them_apart(
    judges: dict[str, Judge], make_dataset: Callable[..., Dataset]
) -> None:
    run = settle(
        run_create(dataset=make_dataset(20), judge=judges[SUPPORT_JUDGE]),
        failed=[1, 2],
        cancelled=[10, 11, 12],
    )
    plan = run_retry_plan(run=run)
    assert (plan.failed, plan.cancelled, plan.to_send) == (2, 3, 5)
    assert plan.label == "Retry 2 failed, resume 3 cancelled"
    retry, created = run_retry(run=run)
    assert created and retry.retry_of == run and retry.total_count == 5
    assert set(retry.items.values_list("position", flat=True)) == {1, 2, 10, 11, 12}


@pytest.mark.django_db
def test_cancelled_rows_alone_are_resumed_not_retried(
    judges: dict[str, Judge], make_dataset: Callable[..., Dataset]
) -> None:
    run = settle(
        run_create(dataset=make_dataset(3000), judge=judges[SUPPORT_JUDGE]), cancelled=range(1000, 3000)
    )
    assert run_retry_plan(run=run).label == "Resume 2,000 cancelled"


@pytest.mark.django_db
def test_after_a_retry_completed_every_row_there_is_nothing_left_to_retry(
    judges: dict[str, Judge], make_dataset: Callable[..., Dataset]
) -> None:
    run = settle(run_create(dataset=make_dataset(30), judge=judges[SUPPORT_JUDGE]), cancelled=range(30))
    retry = settle(run_retry_failed(run=run))
    assert retry.completed_count == 30
    # The run's own counts still say 30 cancelled; the latest verdicts say none.
    run.refresh_from_db()
    assert run.cancelled_count == 30
    for clicked in (run, retry):
        plan = run_retry_plan(run=clicked)
        assert (plan.to_send, plan.label) == (0, "")
        with pytest.raises(RunError, match="nothing to retry"):
            run_retry(run=clicked)
    assert Run.objects.count() == 2


@pytest.mark.django_db
def test_retries_link_to_the_first_run_whichever_run_of_the_chain_is_retried(
    judges: dict[str, Judge], make_dataset: Callable[..., Dataset]
) -> None:
    run = settle(run_create(dataset=make_dataset(10), judge=judges[SUPPORT_JUDGE]), failed=[0, 1, 2])
    first = settle(run_retry_failed(run=run), failed=[1])
    second, created = run_retry(run=first)
    assert created
    assert second.retry_of == run, "linked to the root, so one constraint guards the whole chain"
    assert list(second.items.values_list("position", flat=True)) == [1]
    assert second.name == f"Retry 2 of {run}"


@pytest.mark.django_db
def test_while_a_retry_is_queued_another_request_returns_it_from_any_run_of_the_chain(
    judges: dict[str, Judge], make_dataset: Callable[..., Dataset]
) -> None:
    run = settle(run_create(dataset=make_dataset(10), judge=judges[SUPPORT_JUDGE]), failed=[0, 1, 2])
    first = settle(run_retry_failed(run=run), failed=[1, 2])
    active, created = run_retry(run=first)
    assert created and active.status == Run.Status.QUEUED
    for clicked in (run, first, active):
        again, created = run_retry(run=clicked)
        assert (again, created) == (active, False)
    assert run_retry_plan(run=first).active_retry == active
    assert Run.objects.filter(retry_of=run).count() == 2


@pytest.mark.django_db
def test_a_request_that_loses_the_insert_race_returns_the_winners_retry(
    judges: dict[str, Judge], make_dataset: Callable[..., Dataset], monkeypatch: pytest.MonkeyPatch
) -> None:
    run = settle(run_create(dataset=make_dataset(10), judge=judges[SUPPORT_JUDGE]), failed=[0, 1])
    real_create = retry_service.run_create
    winners: list[Run] = []

    def another_request_commits_first(**kwargs: Any) -> Run:
        # This request has made every check; another one inserts its retry now, before this insert.
        winners.append(real_create(**kwargs))
        return real_create(**kwargs)

    monkeypatch.setattr(retry_service, "run_create", another_request_commits_first)
    assert run_retry(run=run) == (winners[0], False)
    assert Run.objects.filter(retry_of=run).count() == 1


@pytest.mark.django_db
def test_rows_the_judge_rejected_for_good_or_that_lack_a_required_input_are_left_out_and_listed(
    judges: dict[str, Judge], make_dataset: Callable[..., Dataset]
) -> None:
    # Rows 3 and 4 have no contexts, which the RAG judge requires; row 5's turns do not stand in for them.
    dataset = make_dataset(
        10,
        contexts=lambda n: [] if n in (3, 4, 5) else [f"Reset passwords under Settings ({n})."],
        turns=lambda n: [{"role": "user", "content": "hi"}] if n == 5 else None,
    )
    run = settle(
        run_create(dataset=dataset, judge=judges[RAG_JUDGE]),
        failed=[3, 5, 6],
        permanent=[7],
        cancelled=[4, 8],
    )
    plan = run_retry_plan(run=run)
    assert (plan.failed, plan.cancelled) == (1, 1), "only rows 6 (failed) and 8 (cancelled) can be fixed"
    assert plan.excluded_count == 4
    reasons = {entry.item.position: entry.reason for entry in plan.excluded}
    assert set(reasons) == {3, 4, 5, 7}
    assert reasons[3] == "The row has no contexts, which the judge requires."
    assert reasons[7].startswith("The judge rejected this row: 400: inputs[0].contexts")
    assert len(run_retry_plan(run=run, shown=2).excluded) == 2
    retry, _ = run_retry(run=run)
    assert sorted(retry.items.values_list("position", flat=True)) == [6, 8]


@pytest.mark.django_db
def test_turns_stand_in_for_a_missing_request_as_in_the_preflight(
    judges: dict[str, Judge], make_dataset: Callable[..., Dataset]
) -> None:
    dataset = make_dataset(
        4,
        request=lambda n: "" if n in (0, 1) else "Where is my order?",
        turns=lambda n: [{"role": "user", "content": "Where is my order?"}] if n == 0 else None,
        contexts=["Orders ship within two days."],
    )
    # The RAG judge requires request, response and contexts.
    run = settle(run_create(dataset=dataset, judge=judges[RAG_JUDGE]), failed=[0, 1, 2])
    plan = run_retry_plan(run=run)
    assert plan.failed == 2 and [entry.item.position for entry in plan.excluded] == [1]


@pytest.mark.django_db
def test_every_row_unfixable_says_so_instead_of_nothing_failed(
    judges: dict[str, Judge], make_dataset: Callable[..., Dataset]
) -> None:
    run = settle(run_create(dataset=make_dataset(3), judge=judges[SUPPORT_JUDGE]), permanent=[0, 1])
    with pytest.raises(RunError, match="2 rows failed for a reason a retry cannot fix"):
        run_retry(run=run)


@pytest.mark.django_db
def test_a_run_still_running_cannot_be_retried(
    judges: dict[str, Judge], make_dataset: Callable[..., Dataset]
) -> None:
    run = run_create(dataset=make_dataset(3), judge=judges[SUPPORT_JUDGE])
    assert run_retry_plan(run=run).blocked.startswith("Wait for the run to finish")
    with pytest.raises(RunError, match="Wait for the run to finish"):
        run_retry(run=run)


@pytest.mark.django_db(transaction=True)
def test_two_simultaneous_retry_posts_make_one_retry_run(
    judges: dict[str, Judge],
    make_dataset: Callable[..., Dataset],
    django_user_model: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    run = settle(run_create(dataset=make_dataset(40), judge=judges[SUPPORT_JUDGE]), cancelled=range(40))
    user = django_user_model.objects.create_user(username="ada", password="a-long-test-password")
    # Both requests pass every check before either inserts: only the database can then tell them apart.
    both_checked = threading.Barrier(2, timeout=30)
    real_create = retry_service.run_create

    def create_after_both_checked(**kwargs: Any) -> Run:
        both_checked.wait()
        return real_create(**kwargs)

    monkeypatch.setattr(retry_service, "run_create", create_after_both_checked)
    locations: list[str] = []
    errors: list[BaseException] = []

    def post() -> None:
        client = Client()
        client.force_login(user)
        try:
            response = client.post(f"/runs/{run.pk}/retry/")
            locations.append(response["Location"])
        except BaseException as error:  # noqa: BLE001 - reported by the assertion below
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=post) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert not errors, errors
    retries = list(Run.objects.filter(retry_of=run))
    assert len(retries) == 1, "two simultaneous POSTs made two retries"
    assert locations == [f"/runs/{retries[0].pk}/"] * 2
    assert retries[0].items.count() == 40
