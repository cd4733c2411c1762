"""Batch state changes (evals/services/batches.py) and the pump's timing: stale writers, cancels in
flight, throttles, quotas, unknown statuses, rows the judge refuses, and a loop that does not spin."""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from pytest_django.fixtures import Settings as SettingsWrapper

from evals import pump as pump_module
from evals.client import Batch, BatchCreated, JudgeAPI, JudgeError
from evals.models import BackoffKind, Dataset, Item, Judge, RemoteBatch, Run, Score
from evals.pump import Pump, perform, pump
from evals.services.batches import backoff_seconds, batch_fail, batch_submitted, batches_cancel
from evals.services.runs import run_cancel, run_create
from tests.conftest import SUPPORT_JUDGE
from tests.factories import (
    assert_counts_match_items,
    finished_remotely,
    judge_batches_by_tag,
    pump_until_finished,
)


def throttled(retry_after: float | None = 1.0, code: str = "throttled") -> JudgeError:
    return JudgeError(
        "The judge API is throttling requests: slow down", status=429, code=code, retry_after=retry_after
    )


def make_due(run: Run) -> None:
    past = timezone.now() - timedelta(seconds=1)
    RemoteBatch.objects.filter(run=run).unfinished().update(next_action_at=past)
    Run.objects.filter(pk=run.pk).update(backoff_until=None, backoff_kind="", backoff_reason="")


# --- The four defects -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "error",
    [
        throttled(retry_after=1.0),
        JudgeError("The judge API failed (500): oops", status=500),
        JudgeError("Could not reach the judge API", reason="connect", outcome_unknown=True),
    ],
    ids=["throttled", "failed", "outcome-unknown"],
)
def test_a_run_cancelled_while_its_create_is_out_ends_when_the_create_fails(
    judges: dict[str, Judge], make_dataset: Callable[..., Dataset], error: JudgeError
) -> None:
    run = run_create(dataset=make_dataset(30), judge=judges[SUPPORT_JUDGE])

    class CancelledDuringCreate(JudgeAPI):
        def create_batch(self, judge_id: str, **kwargs: Any) -> BatchCreated:
            run_cancel(run=Run.objects.get(pk=run.pk))
            raise error

    api = CancelledDuringCreate.from_settings()
    with api:
        pump(budget_seconds=5, api=api, concurrency=1, requeue=False)
    run.refresh_from_db()
    assert run.status == Run.Status.CANCELLED and run.cancelled_count == 30
    assert not RemoteBatch.objects.filter(run=run).unfinished().exists()


def test_a_create_whose_reply_was_lost_is_looked_up_only_once_the_judge_had_time_to_finish_it(
    judges: dict[str, Judge], make_dataset: Callable[..., Dataset], settings: Any
) -> None:
    """A reply lost to our timeout may belong to a create the judge is still committing: a lookup made
    half a second later missed it and the batch was sent, and paid for, twice (the worker e2e test)."""
    settings.JUDGE_API_TIMEOUT = 5.0
    run = run_create(dataset=make_dataset(10), judge=judges[SUPPORT_JUDGE])

    class LostReply(JudgeAPI):
        def create_batch(self, judge_id: str | None, **kwargs: Any) -> BatchCreated:
            raise JudgeError("The judge API did not answer in time", reason="timeout", outcome_unknown=True)

    before = timezone.now()
    with LostReply.from_settings() as api:
        pump(budget_seconds=0.5, api=api, concurrency=1, requeue=False)
    batch = RemoteBatch.objects.get(run=run)
    assert batch.status == RemoteBatch.Status.SUBMITTING  # looked up before anything is sent again
    assert batch.next_action_at is not None
    assert batch.next_action_at >= before + timedelta(seconds=2 * settings.JUDGE_API_TIMEOUT)


class FakeTime:
    """The pump's clock: sleeping moves it on at once, so a test sees how often the loop would run."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.mark.parametrize("blocked_by", ["in-flight cap", "throttle", "cancelled run"])
def test_a_past_due_batch_the_pump_cannot_take_does_not_make_it_spin(
    judges: dict[str, Judge],
    make_dataset: Callable[..., Dataset],
    settings: SettingsWrapper,
    monkeypatch: pytest.MonkeyPatch,
    blocked_by: str,
) -> None:
    settings.DOCKET_MAX_IN_FLIGHT_PER_RUN = 1
    run = run_create(dataset=make_dataset(20), judge=judges[SUPPORT_JUDGE], batch_size=10)
    later = timezone.now() + timedelta(minutes=10)
    # The first batch was sent and is next polled in ten minutes; the second is past due.
    RemoteBatch.objects.filter(run=run, position=0).update(
        status=RemoteBatch.Status.RUNNING, remote_id="elsewhere", next_action_at=later
    )
    RemoteBatch.objects.filter(run=run, position=1).update(
        next_action_at=timezone.now() - timedelta(seconds=5)
    )
    if blocked_by == "throttle":
        settings.DOCKET_MAX_IN_FLIGHT_PER_RUN = 10
        Run.objects.filter(pk=run.pk).update(backoff_until=later, backoff_kind=BackoffKind.THROTTLED)
    elif blocked_by == "cancelled run":
        # What the old record_error left behind: a cancelled run's batch put back to waiting.
        settings.DOCKET_MAX_IN_FLIGHT_PER_RUN = 10
        Run.objects.filter(pk=run.pk).update(cancel_requested_at=timezone.now())
    clock = FakeTime()
    monkeypatch.setattr(pump_module, "time", clock)
    worker = Pump(api=JudgeAPI.from_settings(), owner="test", concurrency=1)
    with CaptureQueriesContext(connection) as queries:
        worker.work(deadline=clock.monotonic() + 10)
    assert worker.actions == 0
    # Nothing can become due within the ten seconds: a claim round a second (the longest wait), no more.
    assert len(clock.sleeps) <= 11
    assert len(queries) <= 20 * 11


def test_a_stale_writer_is_dropped_and_counted_nowhere(
    judges: dict[str, Judge], make_dataset: Callable[..., Dataset]
) -> None:
    run = run_create(dataset=make_dataset(10), judge=judges[SUPPORT_JUDGE])
    api = JudgeAPI.from_settings()
    first, second = Pump(api=api, owner="first", concurrency=1), Pump(api=api, owner="second", concurrency=1)
    [create] = first.claim(limit=1)
    first.record(perform(api, create))
    batch = run.batches.get()
    assert batch.status == RemoteBatch.Status.RUNNING
    finished_remotely(api, batch)

    make_due(run)
    [late_poll] = first.claim(limit=1)
    late_answer = perform(api, late_poll)
    # The first pump's lease runs out under a slow call; the second pump takes the batch over.
    RemoteBatch.objects.filter(pk=batch.pk).update(lease_until=timezone.now() - timedelta(seconds=1))
    [poll] = second.claim(limit=1)
    first.record(late_answer)
    run.refresh_from_db()
    batch.refresh_from_db()
    assert (run.completed_count, run.score_summary) == (0, {})
    assert not Score.objects.exists()
    assert batch.lease_owner == "second" and batch.status == RemoteBatch.Status.RUNNING

    second.record(perform(api, poll))
    first.record(late_answer)  # once more, after the batch finished: still nothing
    run.refresh_from_db()
    assert run.status == Run.Status.COMPLETED and run.completed_count == 10
    assert_counts_match_items(run)
    evaluators = judges[SUPPORT_JUDGE].evaluator_names
    assert Score.objects.count() == 10 * len(evaluators)
    assert {entry["n"] for entry in run.score_summary.values()} == {10}


def test_a_stale_create_does_not_bring_a_finished_batch_back(
    judges: dict[str, Judge], make_dataset: Callable[..., Dataset]
) -> None:
    run = run_create(dataset=make_dataset(10), judge=judges[SUPPORT_JUDGE])
    api = JudgeAPI.from_settings()
    first = Pump(api=api, owner="first", concurrency=1)
    [create] = first.claim(limit=1)
    created = perform(api, create)
    # The lease ran out before the reply was recorded; another pump found the batch and finished it.
    RemoteBatch.objects.filter(run=run).update(lease_until=timezone.now() - timedelta(seconds=1))
    run = pump_until_finished(run)
    first.record(created)
    batch = run.batches.get()
    assert batch.status == RemoteBatch.Status.COMPLETED
    assert judge_batches_by_tag(run) == Counter({batch.tag: 1})


# --- Transitions one by one -----------------------------------------------------------------------------


def test_a_transition_applies_only_for_the_lease_holder_and_says_so(
    judges: dict[str, Judge], make_dataset: Callable[..., Dataset]
) -> None:
    run = run_create(dataset=make_dataset(10), judge=judges[SUPPORT_JUDGE])
    [create] = Pump(api=JudgeAPI.from_settings(), owner="holder", concurrency=1).claim(limit=1)
    batch_id, run_id = create.batch_id, run.pk
    assert not batch_submitted(batch_id=batch_id, run_id=run_id, owner="someone else", remote_id="r1")
    assert not batch_fail(batch_id=batch_id, run_id=run_id, owner="someone else", message="no")
    assert run.batches.get().status == RemoteBatch.Status.SUBMITTING
    assert batch_submitted(batch_id=batch_id, run_id=run_id, owner="holder", remote_id="r1")
    # A second answer to the same claim: the lease was let go with the first.
    assert not batch_submitted(batch_id=batch_id, run_id=run_id, owner="holder", remote_id="r2")
    batch = run.batches.get()
    assert (batch.status, batch.remote_id, batch.lease_until) == (RemoteBatch.Status.RUNNING, "r1", None)


def test_cancel_applies_to_a_held_batch_only_for_its_holder(
    judges: dict[str, Judge], make_dataset: Callable[..., Dataset]
) -> None:
    run = run_create(dataset=make_dataset(30), judge=judges[SUPPORT_JUDGE], batch_size=10)
    worker = Pump(api=JudgeAPI.from_settings(), owner="holder", concurrency=1)
    [held] = worker.claim(limit=1)
    Run.objects.filter(pk=run.pk).update(cancel_requested_at=timezone.now())
    # The run service cancels what is waiting; the batch whose create is out stays with its holder.
    assert batches_cancel(run_id=run.pk) == 20
    assert batches_cancel(run_id=run.pk, batch_id=held.batch_id, owner="someone else") == 0
    assert batches_cancel(run_id=run.pk, batch_id=held.batch_id, owner="holder") == 10
    run.refresh_from_db()
    assert run.status == Run.Status.CANCELLED and run.cancelled_count == 30


# --- Throttling and quotas ------------------------------------------------------------------------------


def test_retry_after_is_the_delay_and_backoff_grows_only_without_it() -> None:
    assert backoff_seconds(6, 1.0) == 1.0
    assert backoff_seconds(1, None) <= 0.75
    assert backoff_seconds(6, None) >= 8


class ThrottledCreates(JudgeAPI):
    """The judge API answers every create with a 429; polls go through."""

    error = throttled()

    def create_batch(self, judge_id: str, **kwargs: Any) -> BatchCreated:
        raise self.error


def test_a_throttle_pauses_every_runs_creates_until_its_retry_after_while_polls_go_on(
    judges: dict[str, Judge], make_dataset: Callable[..., Dataset], offline_judge: Callable[[str], None]
) -> None:
    offline_judge("item_ms=600000,lanes=100")  # the sent batch stays in progress: it is polled on
    sent = run_create(dataset=make_dataset(10, name="sent"), judge=judges[SUPPORT_JUDGE])
    api = JudgeAPI.from_settings()
    worker = Pump(api=api, owner="test", concurrency=1)
    [create] = worker.claim(limit=1)
    worker.record(perform(api, create))
    make_due(sent)
    first = run_create(dataset=make_dataset(10, name="first"), judge=judges[SUPPORT_JUDGE])
    second = run_create(dataset=make_dataset(10, name="second"), judge=judges[SUPPORT_JUDGE])

    throttling = ThrottledCreates.from_settings()
    assert isinstance(throttling, ThrottledCreates)
    throttling.error = throttled(retry_after=30)
    worker = Pump(api=throttling, owner="test", concurrency=1)
    window = worker.window
    actions = worker.claim(limit=2)
    assert [action.kind for action in actions] == ["poll", "create"]
    for action in actions:
        worker.dispatch(action)
    first.refresh_from_db()
    assert first.backoff_kind == BackoffKind.THROTTLED and first.backoff_reason == "judge API throttled"
    assert first.backoff_until is not None
    assert 25 < (first.backoff_until - timezone.now()).total_seconds() <= 30
    assert worker.window == window / 2

    # The second run sends nothing while the API throttles; the sent batch is polled as it falls due.
    make_due(sent)
    assert [action.kind for action in worker.claim(limit=8)] == ["poll"]
    assert second.batches.get().status == RemoteBatch.Status.WAITING
    assert first.batches.get().attempts == 0  # a throttle uses up no attempt


def test_the_in_flight_window_halves_on_a_throttle_and_grows_by_one_per_accepted_create(
    judges: dict[str, Judge], make_dataset: Callable[..., Dataset], settings: SettingsWrapper
) -> None:
    settings.DOCKET_MAX_IN_FLIGHT = 8
    run = run_create(dataset=make_dataset(60), judge=judges[SUPPORT_JUDGE], batch_size=5)
    worker = Pump(api=JudgeAPI.from_settings(), owner="test", concurrency=1)
    worker.window = 2.0
    creates = worker.claim(limit=8)
    assert len(creates) == 2
    for action in creates:
        worker.dispatch(action)
    assert worker.window == 4.0
    # Four may be in flight now: two more creates (the two sent may be due for a poll too).
    assert [action.kind for action in worker.claim(limit=8)].count("create") == 2
    assert run.batches.filter(status=RemoteBatch.Status.SUBMITTING).count() == 2


def test_a_spent_quota_pauses_the_run_and_never_fails_its_items(
    judges: dict[str, Judge], make_dataset: Callable[..., Dataset], settings: SettingsWrapper
) -> None:
    settings.DOCKET_MAX_CREATE_ATTEMPTS = 1
    run = run_create(dataset=make_dataset(10), judge=judges[SUPPORT_JUDGE])
    api = ThrottledCreates.from_settings()
    assert isinstance(api, ThrottledCreates)
    api.error = throttled(retry_after=None, code="")  # a 429 with no time to wait: a quota
    worker = Pump(api=api, owner="test", concurrency=1)
    for _ in range(3):
        for action in worker.claim(limit=8):
            worker.dispatch(action)
        run.refresh_from_db()
        assert (run.backoff_kind, run.backoff_reason) == (BackoffKind.QUOTA, "judge API quota exceeded")
        assert run.backoff_until is not None and (run.backoff_until - timezone.now()).total_seconds() > 250
        make_due(run)
    assert not run.items.filter(status=Item.Status.FAILED).exists()
    assert run.batches.get().status == RemoteBatch.Status.WAITING and not run.is_finished


# --- What the judge says that Docket does not expect ----------------------------------------------------


class ReportsAStatus(JudgeAPI):
    status = "cancelled"
    item_status = "skipped"

    def get_batch(self, batch_id: str, *, attempt: int = 1) -> Batch:
        found = super().get_batch(batch_id, attempt=attempt)
        items = tuple(dataclasses.replace(item, status=self.item_status) for item in found.items)
        return dataclasses.replace(found, status=self.status, items=items)


def test_an_unknown_batch_status_is_polled_for_ten_minutes_then_fails_the_batch(
    judges: dict[str, Judge], make_dataset: Callable[..., Dataset]
) -> None:
    run = run_create(dataset=make_dataset(5), judge=judges[SUPPORT_JUDGE])
    api = ReportsAStatus.from_settings()
    worker = Pump(api=api, owner="test", concurrency=1)
    for _ in range(2):
        for action in worker.claim(limit=8):
            worker.dispatch(action)
        make_due(run)
    batch = run.batches.get()
    assert batch.status == RemoteBatch.Status.RUNNING and batch.unknown_status_since is not None
    assert set(run.items.values_list("error_message", flat=True)) == {
        'The judge reports this item as "skipped".'
    }
    assert set(run.items.values_list("status", flat=True)) == {Item.Status.PENDING}

    RemoteBatch.objects.filter(pk=batch.pk).update(
        unknown_status_since=timezone.now() - timedelta(minutes=11)
    )
    for action in worker.claim(limit=8):
        worker.dispatch(action)
    run.refresh_from_db()
    assert run.status == Run.Status.FAILED and run.failed_count == 5
    assert 'The judge returned status "cancelled"' in run.batches.get().last_error


# --- Rows the judge refuses -----------------------------------------------------------------------------


class RefusesBadRows(JudgeAPI):
    """Refuses a create holding a row whose request says BAD, naming it as inputs[i] (as Scorable does)."""

    def create_batch(self, judge_id: str, **kwargs: Any) -> BatchCreated:
        for index, row in enumerate(kwargs["inputs"]):
            if row.get("request") == "BAD":
                raise JudgeError(
                    f"The judge API rejected POST /v1/judges/{judge_id}/batch-execute/ (400): "
                    f"inputs[{index}].turns[1].contexts: Input should be a valid list",
                    status=400,
                    permanent=True,
                )
        return super().create_batch(judge_id, **kwargs)


def test_a_row_the_judge_refuses_fails_alone_and_the_rest_is_sent_under_a_new_tag(
    judges: dict[str, Judge], make_dataset: Callable[..., Dataset]
) -> None:
    bad_positions = {4, 7}
    dataset = make_dataset(
        10, request=lambda position: "BAD" if position in bad_positions else f"Question {position}"
    )
    run = run_create(dataset=dataset, judge=judges[SUPPORT_JUDGE])
    api = RefusesBadRows.from_settings()
    for _ in range(10):
        pump(budget_seconds=30, api=api, concurrency=1, requeue=False)
        run.refresh_from_db()
        if run.is_finished:
            break
    assert run.status == Run.Status.PARTIAL
    assert (run.completed_count, run.failed_count) == (8, 2)
    assert_counts_match_items(run)
    failed = run.items.filter(status=Item.Status.FAILED)
    assert set(failed.values_list("position", flat=True)) == bad_positions
    assert all(item.error_is_permanent and "contexts" in item.error_message for item in failed)
    # The original tag was refused (never created); the rest went out once, under the second split's tag.
    assert judge_batches_by_tag(run) == Counter({f"docket:{run.uid}:0.2": 1})


def test_a_batch_is_split_at_most_three_times(
    judges: dict[str, Judge], make_dataset: Callable[..., Dataset]
) -> None:
    dataset = make_dataset(10, request=lambda position: "BAD" if position % 2 else f"Question {position}")
    run = run_create(dataset=dataset, judge=judges[SUPPORT_JUDGE])
    api = RefusesBadRows.from_settings()
    for _ in range(10):
        pump(budget_seconds=30, api=api, concurrency=1, requeue=False)
        run.refresh_from_db()
        if run.is_finished:
            break
    assert run.status == Run.Status.FAILED and run.failed_count == 10
    batch = run.batches.get()
    assert batch.splits == 3 and batch.status == RemoteBatch.Status.FAILED
    assert "inputs[" in batch.last_error


def test_rows_the_offline_judge_refuses_fail_alone_with_its_words_and_the_rest_completes(
    judges: dict[str, Judge], make_dataset: Callable[..., Dataset]
) -> None:
    def turns(position: int) -> list[dict[str, Any]]:
        # What the SDK's MessageTurnRequest rejects: contexts as a string, not a list of strings.
        contexts: Any = "a string" if position in (2, 6) else ["The reset link expires in an hour."]
        return [
            {"role": "user", "content": f"How do I reset my password ({position})?"},
            {"role": "assistant", "content": "Open Settings, then Security.", "contexts": contexts},
        ]

    run = run_create(dataset=make_dataset(10, turns=turns), judge=judges[SUPPORT_JUDGE])
    run = pump_until_finished(run)
    assert run.status == Run.Status.PARTIAL and (run.completed_count, run.failed_count) == (8, 2)
    assert_counts_match_items(run)
    failed = list(run.items.filter(status=Item.Status.FAILED).order_by("position"))
    assert [item.position for item in failed] == [2, 6]
    for item in failed:
        assert item.error_is_permanent
        assert item.error_message.startswith("The judge API rejected this row: input.turns[1].contexts")
    # Both rows were named by one refusal: one split, and the rest created once under its new tag.
    assert judge_batches_by_tag(run) == Counter({f"docket:{run.uid}:0.1": 1})
