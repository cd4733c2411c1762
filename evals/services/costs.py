"""What runs cost, what the next batch will cost, and a run's spending cap.

Costs come from the judge's execution logs, read once per finished batch by the pump and added up by
`evals.services.batches.batch_costs_recorded`; they are in the judge's currency, shown with a "$".
Before each create the pump asks `budget_check(run)` whether the next batches fit under the run's
`max_cost`: what is spent, plus what is out (sent, or finished with its logs not read yet) and the
batches themselves at the estimated cost per item. When they do not, the run is paused (nothing fails,
what is out finishes and is costed) until `run_budget_raise` lifts the cap.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from django.db import transaction
from django.db.models import F, Q

from evals.models import BackoffKind, Item, Judge, RemoteBatch, Run
from evals.money import format_cost
from evals.tasks import wake_pump

# The judge's recent runs an estimate draws on (those with a known cost).
RECENT_RUNS = 5


class CostError(Exception):
    """A budget change that cannot be made; `field` names the value at fault, for forms and the API."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


# --- Estimates ----------------------------------------------------------------------------------------


def cost_per_item_estimate(run: Run) -> tuple[float | None, str]:
    """What one more item of this run will likely cost, and what the figure rests on.

    This run's own costed items first; else the judge's recent runs (the last RECENT_RUNS with costs);
    else None. Works on an unsaved Run(judge=..., evaluator_ids=..., evaluators=...) too (a pre-flight).
    """
    if run.pk is not None and run.cost_items:
        return run.cost_total / run.cost_items, f"this run's {run.cost_items:,} costed items"
    evaluators = list(run.evaluators) if run.evaluator_ids else None
    return judge_cost_per_item_estimate(judge=run.judge, evaluators=evaluators, exclude_run_id=run.pk)


def judge_cost_per_item_estimate(
    *, judge: Judge, evaluators: Sequence[str] | None = None, exclude_run_id: int | None = None
) -> tuple[float | None, str]:
    """The cost per item of the judge's recent runs: of the whole judge, or of a set of its evaluators.

    A set's estimate adds up what each of its evaluators cost per item in recent runs (any run that used
    it, whole judge or set), since a set costs what its evaluators cost, not what the whole judge does.
    """
    recent = Run.objects.filter(judge=judge, cost_items__gt=0)
    if exclude_run_id is not None:
        recent = recent.exclude(pk=exclude_run_id)
    # More than RECENT_RUNS: a set's evaluators are looked for in the last RECENT_RUNS runs that used them.
    rows = list(
        recent.order_by("-created_at", "-id").values(
            "cost_total", "cost_items", "cost_by_evaluator", "evaluator_ids"
        )[: RECENT_RUNS * 4]
    )
    if not rows:
        return None, "no cost seen yet for this judge"
    if not evaluators:
        whole = [row for row in rows if not row["evaluator_ids"]][:RECENT_RUNS]
        if not whole:
            return None, "no run of the whole judge has a known cost yet"
        items = sum(row["cost_items"] for row in whole)
        value = sum(row["cost_total"] for row in whole) / items
        return value, f"the judge's last {_runs(len(whole))} ({items:,} items)"
    total = 0.0
    used: set[int] = set()
    for name in evaluators:
        having = [index for index, row in enumerate(rows) if name in (row["cost_by_evaluator"] or {})]
        having = having[:RECENT_RUNS]
        if not having:
            return None, f'no cost seen yet for the evaluator "{name}"'
        items = sum(rows[index]["cost_items"] for index in having)
        total += sum(float(rows[index]["cost_by_evaluator"][name]) for index in having) / items
        used.update(having)
    return total, f"its evaluators' costs in the judge's last {_runs(len(used))}"


def _runs(count: int) -> str:
    return "run" if count == 1 else f"{count} runs"


# --- The cap ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Budget:
    """A capped run's spending as the pump sees it before a create."""

    cap: float
    spent: float
    # Items sent and not finished, or finished with their batch's logs not read yet: paid, not yet known.
    uncosted: int
    estimate: float | None
    basis: str

    @property
    def committed(self) -> float:
        return self.spent + self.uncosted * (self.estimate or 0.0)

    def allows(self, items: int) -> bool:
        """May `items` more be sent?"""
        if self.spent >= self.cap:
            return False
        if self.estimate is None:
            # No cost seen yet, for this run or its judge: the first batch goes, and what it costs is the
            # estimate for the rest. Only one at a time, until a figure is known.
            return self.uncosted == 0
        # A hair of slack: sums of float costs that land exactly on the cap must not refuse the batch.
        return self.committed + items * self.estimate <= self.cap * (1 + 1e-9)

    def fits(self, sizes: Sequence[int]) -> int:
        """How many of these batches, in order, may be sent now."""
        count = sent = 0
        for size in sizes:
            if self.estimate is None:
                if count or not self.allows(size):
                    break
            elif not self.allows(sent + size):
                break
            sent += size
            count += 1
        return count

    @property
    def pause_reason(self) -> str:
        if self.estimate is None and self.spent < self.cap:
            return f"Paused: waiting for the first batch's cost before sending more (cap {format_cost(self.cap)})"
        return f"Paused: budget reached at {format_cost(self.spent)} of {format_cost(self.cap)}"


def budget_check(run: Run) -> Budget | None:
    """The run's budget as it stands (read from the database), or None when it has no cap."""
    fresh = Run.objects.select_related("judge").get(pk=run.pk)
    if fresh.max_cost is None:
        return None
    in_flight = [RemoteBatch.Status.SUBMITTING, RemoteBatch.Status.RUNNING]
    uncosted = (
        Item.objects.filter(run_id=run.pk)
        .filter(
            Q(batch__status__in=in_flight, status__in=[Item.Status.PENDING, Item.Status.PROCESSING])
            | Q(status=Item.Status.COMPLETED, cost__isnull=True, batch__logs_fetched_at__isnull=True)
        )
        .count()
    )
    estimate, basis = cost_per_item_estimate(fresh)
    return Budget(
        cap=fresh.max_cost, spent=fresh.cost_total, uncosted=uncosted, estimate=estimate, basis=basis
    )


def budget_allows(run: Run, batch_size: int) -> bool:
    """May a batch of `batch_size` items of this run be sent without passing its cap?"""
    budget = budget_check(run)
    return budget is None or budget.allows(batch_size)


def run_budget_pause(*, run_id: int, budget: Budget) -> bool:
    """Pause the run's creates: the cap would be passed. Its batches out finish and are costed.

    No `backoff_until`: the pause has no end of its own, and `run_backoff_clear` (a poll that went
    through) leaves it alone. Only run_budget_raise or new costs (batch_costs_recorded) lift it.
    """
    reason = budget.pause_reason
    return bool(
        Run.objects.filter(pk=run_id)
        .exclude(backoff_kind=BackoffKind.BUDGET, backoff_reason=reason)
        .update(
            backoff_kind=BackoffKind.BUDGET,
            backoff_reason=reason[:300],
            backoff_until=None,
            change_seq=F("change_seq") + 1,
        )
    )


def run_budget_raise(*, run: Run, max_cost: float | None) -> Run:
    """Set a run's cap (None removes it), lift a budget pause and wake the pump.

    A cap below what the run has spent already is refused (CostError on `max_cost`); so is a run that
    has finished, for which a cap changes nothing.
    """
    if max_cost is not None:
        if isinstance(max_cost, bool) or not isinstance(max_cost, int | float) or not math.isfinite(max_cost):
            raise CostError("The cap must be a number.", field="max_cost")
        if max_cost <= 0:
            raise CostError("The cap must be more than $0.", field="max_cost")
    with transaction.atomic():
        locked = Run.objects.select_for_update().filter(pk=run.pk).first()
        if locked is None:
            raise CostError("This run no longer exists.")
        if locked.is_finished:
            raise CostError("This run has finished: it sends nothing more, so a cap changes nothing.")
        if max_cost is not None and max_cost < locked.cost_total:
            raise CostError(
                f"The cap must be at least what this run has spent already, {format_cost(locked.cost_total)}.",
                field="max_cost",
            )
        update: dict[str, object] = {"max_cost": max_cost, "change_seq": F("change_seq") + 1}
        if locked.backoff_kind == BackoffKind.BUDGET:
            update.update(backoff_kind="", backoff_reason="", backoff_until=None)
        Run.objects.filter(pk=run.pk).update(**update)
        transaction.on_commit(wake_pump)
    run.refresh_from_db()
    return run
