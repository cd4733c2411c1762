"""Spending caps: the estimate a cap rests on, the pump pausing a run within one batch of its cap, and
raising the cap to resume. Worked examples carry their arithmetic; runs go through the offline judge."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest

from evals.client import JudgeAPI
from evals.models import BackoffKind, Dataset, Item, Judge, RemoteBatch, Run
from evals.money import format_cost
from evals.pump import Pump, pump, pump_has_work
from evals.services.costs import (
    Budget,
    CostError,
    budget_allows,
    cost_per_item_estimate,
    judge_cost_per_item_estimate,
    run_budget_raise,
)
from evals.services.runs import run_create, wake_pump
from tests.conftest import SUPPORT_JUDGE
from tests.factories import build_run, make_judge, pump_until_finished


def costed_run(judge: Judge, total: float, items: int, **fields: Any) -> Run:
    run = build_run({"Tone": [0.5] * 2}, judge=judge)
    Run.objects.filter(pk=run.pk).update(cost_total=total, cost_items=items, **fields)
    run.refresh_from_db()
    return run


# --- Estimates ------------------------------------------------------------------------------------------


def test_the_estimate_is_the_judges_last_five_costed_runs_per_item(db: None) -> None:
    judge = make_judge(evaluators=["Tone"])
    assert judge_cost_per_item_estimate(judge=judge) == (None, "no cost seen yet for this judge")
    costed_run(judge, 9.0, 100)  # the oldest of six: left out
    for total, items in [(1.0, 100), (2.0, 100), (0.5, 50), (0.25, 50), (0.25, 100)]:
        costed_run(judge, total, items)
    costed_run(judge, 0.0, 0)  # no cost known: not one of the five
    # (1 + 2 + 0.5 + 0.25 + 0.25) / (100 + 100 + 50 + 50 + 100) = 4 / 400 = 0.01
    value, basis = judge_cost_per_item_estimate(judge=judge)
    assert value == pytest.approx(0.01)
    assert basis == "the judge's last 5 runs (400 items)"
    # A run with costs of its own goes by them: 0.3 / 20 = 0.015.
    own = costed_run(judge, 0.3, 20)
    assert cost_per_item_estimate(own) == (pytest.approx(0.015), "this run's 20 costed items")
    # An unsaved run (a pre-flight) draws on the judge's runs: now the last five are 0.3 / 20 and four
    # of the above: (0.3 + 2 + 0.5 + 0.25 + 0.25) / (20 + 100 + 50 + 50 + 100) = 3.3 / 320.
    assert cost_per_item_estimate(Run(judge=judge))[0] == pytest.approx(3.3 / 320)


def test_an_evaluator_set_is_estimated_from_what_its_evaluators_cost(db: None) -> None:
    judge = make_judge(evaluators=["Tone", "Safety", "Facts"])
    costed_run(judge, 2.0, 100, cost_by_evaluator={"Tone": 0.4, "Safety": 0.6, "Facts": 1.0})
    costed_run(judge, 0.2, 100, cost_by_evaluator={"Tone": 0.2}, evaluator_ids=["e-tone"])
    # Tone: (0.4 + 0.2) / 200 = 0.003 per item; Safety: 0.6 / 100 = 0.006; the set: 0.009.
    value, _ = judge_cost_per_item_estimate(judge=judge, evaluators=["Tone", "Safety"])
    assert value == pytest.approx(0.009)
    unsent = Run(judge=judge, evaluator_ids=["e-tone", "e-x"], evaluators=["Tone", "Unknown"])
    assert cost_per_item_estimate(unsent) == (None, 'no cost seen yet for the evaluator "Unknown"')
    # The whole judge goes by whole-judge runs only: 2.0 / 100.
    assert judge_cost_per_item_estimate(judge=judge)[0] == pytest.approx(0.02)


def test_a_budget_fits_batches_while_spent_plus_out_plus_the_batches_stay_within_the_cap() -> None:
    # Spent 0.40, 100 items out at 0.002 = 0.20: 0.60 committed. Batches of 100 add 0.20 each:
    # 0.80 and 1.00 fit a cap of 1.00, 1.20 does not.
    budget = Budget(cap=1.0, spent=0.4, uncosted=100, estimate=0.002, basis="")
    assert budget.committed == pytest.approx(0.6)
    assert budget.fits([100, 100, 100]) == 2
    assert budget.allows(200) and not budget.allows(201)
    # No cost seen yet: the first batch goes alone, and nothing while it is out.
    assert Budget(cap=1.0, spent=0.0, uncosted=0, estimate=None, basis="").fits([10, 10]) == 1
    assert Budget(cap=1.0, spent=0.0, uncosted=10, estimate=None, basis="").fits([10]) == 0
    assert Budget(cap=1.0, spent=1.0, uncosted=0, estimate=0.0, basis="").fits([10]) == 0


@pytest.mark.parametrize(
    ("value", "shown"),
    [(12.5, "$12.50"), (1234.5, "$1,234.50"), (0.0123, "$0.0123"), (0.5, "$0.5000"), (0.000123, "$0.000123")],
)
def test_costs_are_shown_in_dollars_with_four_decimals_below_one(value: float, shown: str) -> None:
    assert format_cost(value) == shown


# --- The cap in the pump --------------------------------------------------------------------------------


def capped_run(judge: Judge, dataset: Dataset, cap: float) -> Run:
    run = run_create(dataset=dataset, judge=judge, batch_size=10)
    Run.objects.filter(pk=run.pk).update(max_cost=cap)
    run.refresh_from_db()
    return run


def test_a_cap_pauses_the_run_within_one_batch_of_it_and_raising_it_resumes_to_the_end(
    judges: dict[str, Judge],
    make_dataset: Callable[..., Dataset],
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    judge = judges[SUPPORT_JUDGE]
    dataset = make_dataset(60)
    # An uncapped run of the same rows: what the whole costs, and the estimate the capped run goes by.
    reference = pump_until_finished(run_create(dataset=dataset, judge=judge, batch_size=10))
    whole = reference.cost_total
    batch_costs = list(reference.batches.values_list("cost", flat=True))
    assert len(batch_costs) == 6 and all(cost for cost in batch_costs)
    largest = max(cost for cost in batch_costs if cost is not None)

    cap = 0.45 * whole  # two batches of six fit (about 0.33), a third would not (about 0.5)
    run = capped_run(judge, dataset, cap)
    pump(budget_seconds=30, concurrency=1, requeue=False)
    run.refresh_from_db()
    assert run.status == Run.Status.RUNNING and run.backoff_kind == BackoffKind.BUDGET
    assert (
        run.backoff_reason == f"Paused: budget reached at {format_cost(run.cost_total)} of {format_cost(cap)}"
    )
    assert run.cost_total <= cap and cap - run.cost_total < largest
    sent = run.batches.exclude(remote_id="")
    assert sent.count() == 2 and run.cost_items == 20
    # Nothing failed: the rest waits, unsent, and no pump stays up for it.
    assert run.failed_count == 0
    assert set(run.items.exclude(batch__in=sent).values_list("status", flat=True)) == {Item.Status.PENDING}
    assert not pump_has_work()

    with django_capture_on_commit_callbacks() as callbacks:
        run = run_budget_raise(run=run, max_cost=2 * whole)
    assert wake_pump in callbacks
    assert (run.max_cost, run.backoff_kind, run.backoff_reason) == (2 * whole, "", "")
    run = pump_until_finished(run)
    assert run.status == Run.Status.COMPLETED and run.completed_count == 60
    assert run.cost_items == 60 and run.cost_total == pytest.approx(whole)


def test_with_no_cost_seen_yet_the_first_batch_goes_alone_and_its_cost_decides(
    judges: dict[str, Judge], make_dataset: Callable[..., Dataset]
) -> None:
    run = capped_run(judges[SUPPORT_JUDGE], make_dataset(30), cap=1e-9)
    worker = Pump(api=JudgeAPI.from_settings(), owner="test", concurrency=1)
    # Room for ten batches in flight, but no estimate: one is sent.
    actions = worker.claim(limit=8)
    assert [action.kind for action in actions] == ["create"]
    worker.dispatch(actions[0])
    polls = worker.claim(limit=8)
    assert [action.kind for action in polls] in ([], ["poll"])  # no second create while the first is out
    run.refresh_from_db()
    assert run.backoff_kind == BackoffKind.BUDGET
    assert (
        run.backoff_reason
        == "Paused: waiting for the first batch's cost before sending more (cap $0.00000000100)"
    )
    for action in polls:
        worker.dispatch(action)

    pump(budget_seconds=30, concurrency=1, requeue=False)
    run.refresh_from_db()
    # The first batch cost more than the cap: it stops there, within one batch of it.
    assert run.batches.exclude(remote_id="").count() == 1
    assert run.cost_items == 10 and run.cost_total > 1e-9
    assert (
        run.backoff_reason
        == f"Paused: budget reached at {format_cost(run.cost_total)} of {format_cost(1e-9)}"
    )
    assert not budget_allows(run, 10)


def test_raising_a_cap_is_refused_below_what_was_spent_and_for_a_finished_run(
    judges: dict[str, Judge], make_dataset: Callable[..., Dataset]
) -> None:
    run = capped_run(judges[SUPPORT_JUDGE], make_dataset(5), cap=0.4)
    Run.objects.filter(pk=run.pk).update(
        cost_total=0.5,
        backoff_kind=BackoffKind.BUDGET,
        backoff_reason="Paused: budget reached at $0.5000 of $0.4000",
    )
    for bad in [0.4999, 0.0, -1.0, math.nan, math.inf]:
        with pytest.raises(CostError) as refused:
            run_budget_raise(run=run, max_cost=bad)
        assert refused.value.field == "max_cost"
    with pytest.raises(CostError, match=r"at least what this run has spent already, \$0.5000"):
        run_budget_raise(run=run, max_cost=0.45)
    run.refresh_from_db()
    assert run.max_cost == 0.4 and run.backoff_kind == BackoffKind.BUDGET
    seq = run.change_seq
    run = run_budget_raise(run=run, max_cost=0.5)  # what was spent: allowed
    assert (run.max_cost, run.backoff_kind, run.backoff_reason) == (0.5, "", "")
    assert run.change_seq > seq
    run = run_budget_raise(run=run, max_cost=None)
    assert run.max_cost is None and budget_allows(run, 100)

    finished = build_run({"Tone": [0.5]})
    with pytest.raises(CostError, match="has finished"):
        run_budget_raise(run=finished, max_cost=1.0)


def test_a_cancelled_paused_run_finishes_and_is_no_longer_paused(
    judges: dict[str, Judge], make_dataset: Callable[..., Dataset]
) -> None:
    from evals.services.runs import run_cancel

    run = capped_run(judges[SUPPORT_JUDGE], make_dataset(30), cap=1e-9)
    pump(budget_seconds=30, concurrency=1, requeue=False)
    run.refresh_from_db()
    assert run.backoff_kind == BackoffKind.BUDGET
    run = run_cancel(run=run)
    assert run.status == Run.Status.CANCELLED and run.cancelled_count == 20
    assert run.backoff_kind == ""
    assert not RemoteBatch.objects.filter(run=run).unfinished().exists()
