"""What a run cost: each finished batch's execution logs read in one list call, recorded once, against the
offline judge in-process (its own log rows are the truth the recorded costs must equal)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import httpx
import pytest
from django.utils import timezone

from evals import client
from evals.client import JudgeAPI
from evals.models import Dataset, Item, Judge, JudgeApiEvent, RemoteBatch, Run, Score
from evals.pump import COST_READ_ATTEMPTS, Pump, perform, pump, pump_has_work
from evals.services.runs import run_create
from offline_judge import stats
from offline_judge.models import Batch as JudgeBatch
from offline_judge.models import ExecutionLog
from tests.conftest import SUPPORT_JUDGE
from tests.factories import pump_until_finished

LOG_LIST = "GET execution-logs-list"


def log_calls() -> int:
    return int(stats.process_counts()["requests"].get(LOG_LIST, 0))


def judge_costs(item: Item) -> tuple[float | None, dict[str, float | None]]:
    """What the offline judge's own log rows say the item cost: its judge-level log and that log's children."""
    log = ExecutionLog.objects.get(pk=item.execution_log_id)
    return log.cost, {child.executed_item_name: child.cost for child in log.children.all()}


def forget_costs(run: Run) -> None:
    """As if the pump had finished the run but not yet read its batches' logs (they stay on the judge)."""
    RemoteBatch.objects.filter(run=run).update(logs_fetched_at=None, cost=None)
    Item.objects.filter(run=run).update(cost=None, evaluator_costs=None)
    Run.objects.filter(pk=run.pk).update(cost_total=0.0, cost_items=0, cost_by_evaluator={})


def test_each_item_run_and_batch_cost_is_what_the_judges_logs_say_with_one_log_call_per_batch(
    judges: dict[str, Judge], make_dataset: Callable[..., Dataset]
) -> None:
    judge = judges[SUPPORT_JUDGE]
    run = run_create(dataset=make_dataset(30), judge=judge, batch_size=10)
    run = pump_until_finished(run)
    assert run.status == Run.Status.COMPLETED
    # Three batches, three reads of the log list (10 items x (1 + evaluators) logs fit one page).
    assert log_calls() == 3

    items = list(run.items.order_by("position"))
    by_evaluator: dict[str, float] = {}
    for item in items:
        cost, children = judge_costs(item)
        assert cost is not None and cost > 0
        assert item.cost == cost
        assert item.evaluator_costs == children
        assert set(children) == set(judge.evaluator_names)
        for name, value in children.items():
            assert value is not None
            by_evaluator[name] = by_evaluator.get(name, 0.0) + value
    assert run.cost_items == 30
    assert run.cost_total == pytest.approx(sum(item.cost or 0.0 for item in items))
    assert run.cost_by_evaluator.keys() == by_evaluator.keys()
    for name, value in by_evaluator.items():
        assert run.cost_by_evaluator[name] == pytest.approx(value)
    for batch in run.batches.all():
        assert batch.logs_fetched_at is not None
        assert batch.cost == pytest.approx(sum(item.cost or 0.0 for item in batch.items.all()))


def test_a_full_batch_is_read_in_one_call_too(
    judges: dict[str, Judge], make_dataset: Callable[..., Dataset]
) -> None:
    # 100 items write 100 judge-level logs and 100 per evaluator: the page is sized to hold them all.
    run = pump_until_finished(run_create(dataset=make_dataset(100), judge=judges[SUPPORT_JUDGE]))
    assert log_calls() == 1
    assert run.cost_items == 100
    assert not run.items.filter(cost__isnull=True).exists()


def test_costs_recorded_twice_or_by_a_stale_pump_are_counted_once(
    judges: dict[str, Judge], make_dataset: Callable[..., Dataset]
) -> None:
    run = pump_until_finished(run_create(dataset=make_dataset(10), judge=judges[SUPPORT_JUDGE]))
    expected = run.cost_total
    assert expected > 0
    forget_costs(run)

    api = JudgeAPI.from_settings()
    first, second = Pump(api=api, owner="first", concurrency=1), Pump(api=api, owner="second", concurrency=1)
    [read] = first.claim(limit=1)
    assert read.kind == "costs"
    late_answer = perform(api, read)
    # The first pump's lease runs out under a slow call; the second takes the batch over and records it.
    RemoteBatch.objects.filter(run=run).update(lease_until=timezone.now() - timedelta(seconds=1))
    [again] = second.claim(limit=1)
    answer = perform(api, again)
    assert second.apply(answer)
    assert not first.apply(late_answer)  # stale: dropped
    assert not second.apply(answer)  # the same answer twice: the lease went with the first
    run.refresh_from_db()
    assert run.cost_total == pytest.approx(expected)
    assert run.cost_items == 10
    assert sum(run.cost_by_evaluator.values()) == pytest.approx(expected)
    # Nothing is left to read: a pump started now has no work.
    assert not pump_has_work()


def test_a_run_that_finished_before_its_costs_were_read_has_them_read_afterwards(
    judges: dict[str, Judge], make_dataset: Callable[..., Dataset]
) -> None:
    run = pump_until_finished(
        run_create(dataset=make_dataset(25), judge=judges[SUPPORT_JUDGE], batch_size=10)
    )
    expected = run.cost_total
    forget_costs(run)
    stats.reset()
    # A finished run with unread batches is work: the watchdog and a requeued pump see it.
    assert pump_has_work()
    pump(budget_seconds=30, concurrency=1, requeue=False)
    run.refresh_from_db()
    assert run.status == Run.Status.COMPLETED
    assert run.cost_total == pytest.approx(expected) and run.cost_items == 25
    assert log_calls() == 3
    assert not pump_has_work()


class FailingLogList(httpx.BaseTransport):
    """The offline judge, except that its execution log list answers `status` (`times` times, or always)."""

    def __init__(self, inner: httpx.BaseTransport, status: int, times: int | None = None) -> None:
        self.inner = inner
        self.status = status
        self.times = times
        self.failed = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/v1/execution-logs/") and (
            self.times is None or self.failed < self.times
        ):
            self.failed += 1
            problem = {
                "type": "about:blank",
                "title": "Nope.",
                "status": self.status,
                "detail": "Logs are down.",
            }
            return httpx.Response(self.status, json=problem, request=request)
        return self.inner.handle_request(request)


@pytest.mark.parametrize(
    ("status", "calls"), [(404, 1), (503, COST_READ_ATTEMPTS)], ids=["refused", "failing"]
)
def test_a_log_read_that_keeps_failing_leaves_items_completed_and_their_cost_unknown(
    judges: dict[str, Judge], make_dataset: Callable[..., Dataset], status: int, calls: int
) -> None:
    inner = client.default_transport
    assert inner is not None
    failing = FailingLogList(inner, status)
    client.default_transport = failing
    try:
        run = pump_until_finished(run_create(dataset=make_dataset(8), judge=judges[SUPPORT_JUDGE]))
    finally:
        client.default_transport = inner
    # A refusal is not tried again; a failure is, then given up.
    assert failing.failed == calls
    assert run.status == Run.Status.COMPLETED and run.completed_count == 8
    assert Score.objects.filter(run=run).count() == 8 * len(judges[SUPPORT_JUDGE].evaluator_names)
    assert not run.items.exclude(cost=None).exists()
    assert (run.cost_total, run.cost_items, run.cost_by_evaluator) == (0.0, 0, {})
    batch = run.batches.get()
    assert batch.status == RemoteBatch.Status.COMPLETED
    assert batch.logs_fetched_at is not None and batch.cost is None
    assert batch.last_error.startswith("Cost unknown: Docket could not read this batch's execution logs")
    assert "Logs are down" in batch.last_error
    assert JudgeApiEvent.objects.filter(action="logs", status=str(status)).count() == calls
    assert not pump_has_work()


def test_a_log_read_that_fails_for_a_while_is_tried_again_and_recorded(
    judges: dict[str, Judge], make_dataset: Callable[..., Dataset]
) -> None:
    inner = client.default_transport
    assert inner is not None
    client.default_transport = FailingLogList(inner, 503, times=2)
    try:
        run = pump_until_finished(run_create(dataset=make_dataset(8), judge=judges[SUPPORT_JUDGE]))
    finally:
        client.default_transport = inner
    assert run.cost_items == 8
    assert run.batches.get().last_error == ""
    for item in run.items.all():
        assert item.cost == judge_costs(item)[0]


def test_an_evaluator_set_run_sends_its_evaluators_in_its_project_and_costs_only_them(
    judges: dict[str, Judge], make_dataset: Callable[..., Dataset]
) -> None:
    judge = judges[SUPPORT_JUDGE]
    chosen = judge.evaluators[:2]
    assert len(judge.evaluators) > 2
    project = "6f1c2a7e-0000-4000-8000-00000000abcd"
    run = run_create(dataset=make_dataset(12), judge=judge, batch_size=10)
    # What run_create stores for an evaluator set (its ids, and their names in the judge's order).
    Run.objects.filter(pk=run.pk).update(
        evaluator_ids=[evaluator["id"] for evaluator in chosen],
        evaluators=[evaluator["name"] for evaluator in chosen],
        project_id=project,
    )
    run = pump_until_finished(run)
    assert run.status == Run.Status.COMPLETED and run.completed_count == 12
    names = {evaluator["name"] for evaluator in chosen}
    assert set(Score.objects.filter(run=run).values_list("evaluator_name", flat=True)) == names
    # The judge ran the two evaluators, without the judge, in the run's project.
    for batch in run.batches.all():
        remote = JudgeBatch.objects.get(pk=batch.remote_id)
        assert remote.judge_id is None
        assert str(remote.project_id) == project
    assert set(run.cost_by_evaluator) == names
    assert run.cost_items == 12
    for item in run.items.all():
        cost, children = judge_costs(item)
        assert item.cost == cost and item.evaluator_costs == children and set(children) == names


class ListsALogLate(httpx.BaseTransport):
    """The offline judge, except that its first log list leaves out one item's judge-level log (a judge
    that lists a batch's logs a moment after it reports the batch finished)."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner = inner
        self.hidden: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        if not request.url.path.endswith("/v1/execution-logs/") or self.hidden:
            return response
        page = response.json()
        first = next(row for row in page["results"] if row["parent_execution_log_id"] is None)
        self.hidden.append(first["id"])
        page["results"] = [row for row in page["results"] if row["id"] != first["id"]]
        return httpx.Response(200, json=page, request=request)


def test_a_log_the_judge_lists_late_is_waited_for_and_its_item_costed(
    judges: dict[str, Judge], make_dataset: Callable[..., Dataset]
) -> None:
    inner = client.default_transport
    assert inner is not None
    late = ListsALogLate(inner)
    client.default_transport = late
    try:
        run = pump_until_finished(run_create(dataset=make_dataset(6), judge=judges[SUPPORT_JUDGE]))
    finally:
        client.default_transport = inner
    assert len(late.hidden) == 1
    assert log_calls() == 2  # the first read lacked a log: read again, not recorded half
    assert run.cost_items == 6
    item = run.items.get(execution_log_id=late.hidden[0])
    assert item.cost is not None and item.cost == judge_costs(item)[0]
