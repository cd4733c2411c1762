"""The run pipeline end to end against the offline judge in-process: create, pump, faults, cancel, retry."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest
from django.utils import timezone
from pytest_django.fixtures import Settings as SettingsWrapper

from evals import client
from evals.client import Batch, BatchCreated, JudgeAPI, JudgeError
from evals.models import Dataset, Item, Judge, JudgeApiEvent, RemoteBatch, Run, Score
from evals.pump import pump
from evals.selectors.runs import run_items_merged
from evals.services.retry import run_retry_failed
from evals.services.run_options import RunError, run_preflight
from evals.services.runs import run_cancel, run_create
from tests.conftest import QA_JUDGE, RAG_JUDGE, SUPPORT_JUDGE
from tests.factories import assert_counts_match_items, judge_batches_by_tag, pump_until_finished


def test_run_create_splits_rows_into_batches_of_100(
    judges: dict[str, Judge], make_dataset: Callable[..., Dataset]
) -> None:
    dataset = make_dataset(250)
    run = run_create(dataset=dataset, judge=judges[SUPPORT_JUDGE], tags=["nightly"])
    assert list(run.batches.values_list("size", flat=True)) == [100, 100, 50]
    assert run.total_count == 250 == run.items.count()
    assert run.status == Run.Status.QUEUED
    # Items keep dataset order inside batches.
    third = run.batches.get(position=2)
    assert list(third.items.order_by("index_in_batch").values_list("position", flat=True)) == list(
        range(200, 250)
    )
    assert third.tag == f"docket:{run.uid}:2"
    assert run.judge_version_id == judges[SUPPORT_JUDGE].version_id != ""


def test_a_lower_batch_size_may_be_set(
    judges: dict[str, Judge], make_dataset: Callable[..., Dataset]
) -> None:
    run = run_create(dataset=make_dataset(25), judge=judges[SUPPORT_JUDGE], batch_size=10)
    assert list(run.batches.values_list("size", flat=True)) == [10, 10, 5]
    with pytest.raises(RunError, match="between 1 and 100"):
        run_create(dataset=make_dataset(5), judge=judges[SUPPORT_JUDGE], batch_size=101)


def test_preflight_names_the_inputs_the_dataset_lacks_and_blocks_the_run(
    judges: dict[str, Judge], make_dataset: Callable[..., Dataset]
) -> None:
    dataset = make_dataset(12)
    preflight = run_preflight(dataset=dataset, judge=judges[RAG_JUDGE])
    assert preflight.missing_inputs == ["contexts"]
    assert preflight.blocked
    assert preflight.batches == 1 and preflight.rows == 12
    assert preflight.evaluators == ["Context support", "Request relevance", "Context use"]
    with pytest.raises(RunError, match='needs "contexts"'):
        run_create(dataset=dataset, judge=judges[RAG_JUDGE])
    assert not Run.objects.exists()


def test_preflight_warns_about_rows_that_lack_an_input(
    judges: dict[str, Judge], make_dataset: Callable[..., Dataset]
) -> None:
    dataset = make_dataset(10, expected_output=lambda position: "Reset" if position < 7 else "")
    preflight = run_preflight(dataset=dataset, judge=judges[QA_JUDGE])
    assert preflight.missing_inputs == []
    assert preflight.partial_inputs == {"expected_output": 3}


def test_reserved_tags_are_refused(judges: dict[str, Judge], make_dataset: Callable[..., Dataset]) -> None:
    with pytest.raises(RunError, match="reserved"):
        run_create(dataset=make_dataset(3), judge=judges[SUPPORT_JUDGE], tags=["docket:mine"])


# Production sends calls from a pool of threads (DOCKET_HTTP_CONCURRENCY); the offline judge those threads
# call writes through connections of their own, so those tests commit (transaction=True).
POOLED = pytest.param(4, marks=pytest.mark.django_db(transaction=True), id="pool-of-4")
INLINE = pytest.param(1, id="inline")


@pytest.mark.parametrize("concurrency", [INLINE, POOLED])
def test_pump_runs_a_dataset_to_completion_with_every_score_and_justification(
    judges: dict[str, Judge], make_dataset: Callable[..., Dataset], concurrency: int
) -> None:
    run = run_create(dataset=make_dataset(230), judge=judges[SUPPORT_JUDGE], tags=["release-2.3"])
    run = pump_until_finished(run, concurrency=concurrency)
    assert run.status == Run.Status.COMPLETED
    assert run.completed_count == 230 and run.failed_count == 0
    assert_counts_match_items(run)
    evaluators = judges[SUPPORT_JUDGE].evaluator_names
    assert Score.objects.filter(run=run).count() == 230 * len(evaluators)
    assert set(Score.objects.filter(run=run).values_list("evaluator_name", flat=True)) == set(evaluators)
    assert not Score.objects.filter(run=run, justification="").exists()
    item = run.items.get(position=0)
    assert item.execution_log_id and item.completed_at and item.error_message == ""
    assert run.finished_at and run.started_at and run.finished_at >= run.started_at
    # The per-evaluator running totals agree with the stored scores.
    for name, mean, n in run.evaluator_means:
        scores = [
            score
            for score in Score.objects.filter(run=run, evaluator_name=name).values_list("score", flat=True)
            if score is not None
        ]
        assert n == len(scores) and mean == pytest.approx(sum(scores) / len(scores))
    # Each remote batch was created exactly once, tagged with the run's tag and the user's.
    assert judge_batches_by_tag(run) == Counter({f"docket:{run.uid}:{position}": 1 for position in range(3)})
    assert set(RemoteBatch.objects.filter(run=run).values_list("status", flat=True)) == {"completed"}


def test_failed_items_are_exactly_those_the_judge_failed(
    judges: dict[str, Judge], make_dataset: Callable[..., Dataset], offline_judge: Callable[[str], None]
) -> None:
    offline_judge("item_ms=1,lanes=100,item_fail=0.3,seed=7")
    run = pump_until_finished(run_create(dataset=make_dataset(150), judge=judges[SUPPORT_JUDGE]))
    assert run.status == Run.Status.PARTIAL
    assert_counts_match_items(run)
    with JudgeAPI.from_settings() as api:
        judged_failed = set()
        for batch in RemoteBatch.objects.filter(run=run):
            remote = api.get_batch(batch.remote_id)
            judged_failed |= {
                (batch.position, item.index) for item in remote.items if item.status == "failed"
            }
    ours = set(run.items.filter(status=Item.Status.FAILED).values_list("batch__position", "index_in_batch"))
    assert ours == judged_failed and len(ours) > 10
    failed = run.items.filter(status=Item.Status.FAILED).first()
    assert failed is not None and "failed" in failed.error_message and not failed.scores.exists()


def test_a_judge_failing_whole_batches_fails_the_run_with_its_message(
    judges: dict[str, Judge], make_dataset: Callable[..., Dataset], offline_judge: Callable[[str], None]
) -> None:
    offline_judge("item_ms=1,lanes=100,batch_fail=1")
    run = pump_until_finished(run_create(dataset=make_dataset(120), judge=judges[SUPPORT_JUDGE]))
    assert run.status == Run.Status.FAILED
    assert run.failed_count == 120
    assert set(run.batches.values_list("status", flat=True)) == {RemoteBatch.Status.FAILED}
    assert all(message for message in run.items.values_list("error_message", flat=True))


@pytest.mark.parametrize(
    "faults",
    [
        "throttle=0.3,retry_after=0",
        "error=0.3",
        "drop=0.3,drop_s=0",
        "throttle=0.15,error=0.1,drop=0.1,drop_s=0,item_fail=0.05,latency_ms=1",
    ],
)
@pytest.mark.parametrize("concurrency", [INLINE, POOLED])
def test_faults_never_lose_an_item_nor_create_a_batch_twice(
    judges: dict[str, Judge],
    make_dataset: Callable[..., Dataset],
    offline_judge: Callable[[str], None],
    faults: str,
    concurrency: int,
) -> None:
    offline_judge(f"item_ms=1,lanes=100,seed=3,{faults}")
    run = run_create(dataset=make_dataset(450), judge=judges[SUPPORT_JUDGE], batch_size=50)
    run = pump_until_finished(run, rounds=40, concurrency=concurrency)
    assert run.is_finished and run.status in (Run.Status.COMPLETED, Run.Status.PARTIAL)
    assert_counts_match_items(run)
    assert not run.items.exclude(status__in=Item.FINISHED).exists()
    offline_judge("item_ms=1,lanes=100")  # read the judge's own list without faults
    tags = judge_batches_by_tag(run)
    assert tags == Counter({f"docket:{run.uid}:{position}": 1 for position in range(9)})
    # Items failed only where the judge said so: never because of a transport fault.
    assert (
        not run.items.filter(status=Item.Status.FAILED)
        .exclude(error_message__contains="(simulated)")
        .exists()
    )


def test_a_create_whose_reply_was_lost_is_found_by_its_tag_and_not_sent_again(
    judges: dict[str, Judge], make_dataset: Callable[..., Dataset]
) -> None:
    inner = client.default_transport
    assert inner is not None
    lost: list[httpx.Request] = []

    class LoseFirstCreateReply(httpx.BaseTransport):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            assert inner is not None
            response = inner.handle_request(request)
            if request.method == "POST" and not lost:
                lost.append(request)
                raise httpx.ReadTimeout("reply lost after the judge accepted the create", request=request)
            return response

    client.default_transport = LoseFirstCreateReply()
    run = pump_until_finished(run_create(dataset=make_dataset(40), judge=judges[SUPPORT_JUDGE]))
    client.default_transport = inner
    assert lost and run.status == Run.Status.COMPLETED
    assert judge_batches_by_tag(run) == Counter({f"docket:{run.uid}:0": 1})


def test_a_pump_that_died_after_sending_a_create_is_followed_by_a_lookup_not_a_second_create(
    judges: dict[str, Judge], make_dataset: Callable[..., Dataset]
) -> None:
    run = run_create(dataset=make_dataset(30), judge=judges[SUPPORT_JUDGE])
    batch = run.batches.get()
    # The dead pump's create reached the judge...
    with JudgeAPI.from_settings() as api:
        inputs = [item.example.as_judge_input() for item in batch.items.order_by("index_in_batch")]
        api.create_batch(judges[SUPPORT_JUDGE].remote_id, inputs=inputs, tags=[batch.tag])
    # ...and it died holding the lease, before it could record the reply.
    past = timezone.now() - timedelta(minutes=5)
    RemoteBatch.objects.filter(pk=batch.pk).update(
        status=RemoteBatch.Status.SUBMITTING,
        attempts=1,
        submitted_at=past,
        lease_until=past,
        next_action_at=past,
    )
    Run.objects.filter(pk=run.pk).update(status=Run.Status.RUNNING, started_at=past)
    run = pump_until_finished(run)
    assert run.status == Run.Status.COMPLETED and run.completed_count == 30
    assert judge_batches_by_tag(run) == Counter({batch.tag: 1})


def test_a_permanent_rejection_fails_the_batch_with_the_judges_message(
    judges: dict[str, Judge], make_dataset: Callable[..., Dataset]
) -> None:
    run = run_create(
        dataset=make_dataset(20),
        judge=judges[SUPPORT_JUDGE],
        judge_version_id="00000000-0000-0000-0000-000000000000",
    )
    run = pump_until_finished(run)
    assert run.status == Run.Status.FAILED
    batch = run.batches.get()
    assert batch.status == RemoteBatch.Status.FAILED and "judge_version_id" in batch.last_error
    assert "judge_version_id" in run.last_error
    assert judge_batches_by_tag(run) == Counter()


def test_cancel_stops_sending_while_batches_already_sent_are_collected(
    judges: dict[str, Judge], make_dataset: Callable[..., Dataset], settings: SettingsWrapper
) -> None:
    settings.DOCKET_MAX_IN_FLIGHT_PER_RUN = 1
    run = run_create(dataset=make_dataset(250), judge=judges[SUPPORT_JUDGE])
    from evals.pump import Pump

    worker = Pump(api=JudgeAPI.from_settings(), owner="test", concurrency=1)
    for action in worker.claim(limit=5):
        worker.dispatch(action)
    assert run.batches.filter(status=RemoteBatch.Status.RUNNING).count() == 1
    run = run_cancel(run=run)
    assert run.cancelled_count == 150 and not run.is_finished
    run = pump_until_finished(run)
    assert run.status == Run.Status.CANCELLED
    assert (run.completed_count, run.cancelled_count) == (100, 150)
    assert_counts_match_items(run)
    assert judge_batches_by_tag(run) == Counter({f"docket:{run.uid}:0": 1})
    with pytest.raises(RunError, match="already finished"):
        run_cancel(run=run)


def test_cancel_before_anything_was_sent_finishes_the_run_at_once(
    judges: dict[str, Judge], make_dataset: Callable[..., Dataset]
) -> None:
    run = run_cancel(run=run_create(dataset=make_dataset(30), judge=judges[SUPPORT_JUDGE]))
    assert run.status == Run.Status.CANCELLED and run.cancelled_count == 30


def test_retry_failed_runs_only_the_failed_items_and_merges_the_latest_verdicts(
    judges: dict[str, Judge], make_dataset: Callable[..., Dataset], offline_judge: Callable[[str], None]
) -> None:
    offline_judge("item_ms=1,lanes=100,item_fail=0.4,seed=11")
    first = pump_until_finished(
        run_create(dataset=make_dataset(60), judge=judges[SUPPORT_JUDGE], tags=["t1"])
    )
    failed_positions = set(first.items.filter(status=Item.Status.FAILED).values_list("position", flat=True))
    assert failed_positions
    offline_judge("item_ms=1,lanes=100")
    retry = run_retry_failed(run=first)
    assert retry.retry_of == first and retry.tags == ["t1"]
    assert set(retry.items.values_list("position", flat=True)) == failed_positions
    retry = pump_until_finished(retry)
    assert retry.status == Run.Status.COMPLETED
    merged = run_items_merged(first)
    assert merged.count() == 60
    assert set(merged.values_list("status", flat=True)) == {Item.Status.COMPLETED}


def test_retry_is_refused_while_the_run_is_running_or_when_nothing_failed(
    judges: dict[str, Judge], make_dataset: Callable[..., Dataset]
) -> None:
    run = run_create(dataset=make_dataset(5), judge=judges[SUPPORT_JUDGE])
    with pytest.raises(RunError, match="Wait for the run to finish"):
        run_retry_failed(run=run)
    run = pump_until_finished(run)
    with pytest.raises(RunError, match="nothing to retry"):
        run_retry_failed(run=run)


def test_throttling_is_shown_on_the_run_while_it_lasts(
    judges: dict[str, Judge],
    make_dataset: Callable[..., Dataset],
    offline_judge: Callable[[str], None],
    settings: SettingsWrapper,
) -> None:
    offline_judge("item_ms=1,lanes=100,throttle=1,retry_after=30")
    run = run_create(dataset=make_dataset(5), judge=judges[SUPPORT_JUDGE])
    pump(budget_seconds=0.5, concurrency=1, requeue=False)
    run.refresh_from_db()
    assert run.backoff_reason == "judge API throttled"
    assert run.backoff_until is not None and (run.backoff_until - timezone.now()).total_seconds() > 20
    batch = run.batches.get()
    # A throttle is the server asking to wait, not a failure: it uses up no attempt.
    assert batch.status == RemoteBatch.Status.WAITING and batch.attempts == 0
    assert "throttl" in batch.last_error
    event = JudgeApiEvent.objects.get()
    assert (event.action, event.status, event.throttled, event.run_id) == ("create", "429", True, run.pk)
    offline_judge("item_ms=1,lanes=100")
    assert judge_batches_by_tag(run) == Counter()


# --- Late answers for rows that are gone, and batches the judge refuses ------------------------------------


class DeletesTheRunDuringTheCall(JudgeAPI):
    """The judge answers after the run was deleted (from its page, say) while the call was out."""

    during = "poll"
    error: JudgeError | None = None

    def gone(self, kind: str) -> None:
        if kind == self.during:
            Run.objects.all().delete()
            if self.error is not None:
                raise self.error

    def create_batch(self, judge_id: str, **kwargs: Any) -> BatchCreated:
        created = super().create_batch(judge_id, **kwargs)
        self.gone("create")
        return created

    def get_batch(self, batch_id: str, *, attempt: int = 1) -> Batch:
        found = super().get_batch(batch_id, attempt=attempt)
        self.gone("poll")
        return found


@pytest.mark.parametrize(
    ("during", "error"),
    [
        ("create", None),
        ("poll", None),
        ("poll", JudgeError("The judge API failed (503).", status=503)),
        ("poll", JudgeError("The judge API rejected it (404).", status=404, permanent=True)),
    ],
    ids=["created", "polled", "poll-failed", "poll-refused"],
)
def test_the_pump_drops_answers_for_a_deleted_run_without_an_error(
    judges: dict[str, Judge],
    make_dataset: Callable[..., Dataset],
    caplog: pytest.LogCaptureFixture,
    during: str,
    error: JudgeError | None,
) -> None:
    run = run_create(dataset=make_dataset(120), judge=judges[SUPPORT_JUDGE])
    api = DeletesTheRunDuringTheCall.from_settings()
    assert isinstance(api, DeletesTheRunDuringTheCall)
    api.during, api.error = during, error
    caplog.set_level("INFO", logger="evals")
    with api:
        report = pump(budget_seconds=30, api=api, concurrency=1, requeue=False)
    assert report.actions >= 1
    assert not Run.objects.filter(pk=run.pk).exists()
    assert not Item.objects.exists() and not Score.objects.exists() and not RemoteBatch.objects.exists()
    assert not JudgeApiEvent.objects.exists()
    pump_logs = [record for record in caplog.records if record.name == "evals.pump"]
    assert [record.getMessage() for record in pump_logs if record.levelno >= logging.WARNING] == []
    assert any("its run was deleted" in record.getMessage() for record in pump_logs)


def test_a_batch_the_judge_refuses_fails_its_items_for_good_while_judge_failed_items_stay_retryable(
    judges: dict[str, Judge], make_dataset: Callable[..., Dataset], offline_judge: Callable[[str], None]
) -> None:
    refused = pump_until_finished(
        run_create(
            dataset=make_dataset(5),
            judge=judges[SUPPORT_JUDGE],
            judge_version_id="00000000-0000-0000-0000-000000000000",
        )
    )
    assert refused.status == Run.Status.FAILED
    assert list(refused.items.values_list("error_is_permanent", flat=True)) == [True] * 5

    offline_judge("item_ms=1,lanes=100,item_fail=0.5,seed=3")
    partial = pump_until_finished(run_create(dataset=make_dataset(20), judge=judges[SUPPORT_JUDGE]))
    assert partial.failed_count > 0
    assert not partial.items.filter(error_is_permanent=True).exists()


def test_a_batch_given_up_after_passing_failures_stays_retryable(
    judges: dict[str, Judge],
    make_dataset: Callable[..., Dataset],
    offline_judge: Callable[[str], None],
    settings: SettingsWrapper,
) -> None:
    settings.DOCKET_MAX_CREATE_ATTEMPTS = 2
    offline_judge("item_ms=1,lanes=100,error=1")
    run = pump_until_finished(run_create(dataset=make_dataset(5), judge=judges[SUPPORT_JUDGE]))
    assert run.status == Run.Status.FAILED and "Gave up after 2 attempts" in run.last_error
    assert not run.items.filter(error_is_permanent=True).exists()
