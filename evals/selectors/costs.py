"""What runs cost, as pages, commands and the API show it.

The pump adds each batch's cost, read from the judge's execution logs, to the run's totals
(`Run.cost_total`, `cost_items`: the items whose cost is known, `cost_by_evaluator`); nothing here reads
an item. Over the items whose cost is known (a batch whose logs could not be read adds nothing):

    cost per item                  cost_total / cost_items
    an evaluator's cost per item   cost_by_evaluator[name] / cost_items

The latest-verdict view adds up the run and its retries: every verdict in view was paid for by one of them.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Q

from evals.models import BackoffKind, Item, RemoteBatch, Run
from evals.money import format_cap, format_cost
from evals.selectors.runs import run_chain


def format_cost_change(value: float | None) -> str:
    """A difference of costs with its sign, written as `format_cost` writes costs: "+$0.0012", "−$0.0012"."""
    if value is None or value == 0:
        return format_cost(value)
    return ("+" if value > 0 else "−") + format_cost(abs(value))


def cost_per(total: float | None, count: int | float | None) -> float | None:
    """A total spread over a count (items, a pass rate); None when either is unknown or the count is 0."""
    return total / count if total is not None and count else None


@dataclass(frozen=True)
class RunCost:
    """What a run cost so far, over the items whose cost the judge's logs gave (see the module's docstring)."""

    total: float
    items: int
    by_evaluator: dict[str, float]
    max_cost: float | None = None
    budget_paused: bool = False

    @property
    def known(self) -> bool:
        return self.items > 0

    @property
    def per_item(self) -> float | None:
        return cost_per(self.total, self.items)

    def evaluator_per_item(self, name: str) -> float | None:
        return cost_per(self.by_evaluator.get(name), self.items)

    @property
    def total_label(self) -> str:
        return format_cost(self.total)

    @property
    def per_item_label(self) -> str:
        return format_cost(self.per_item)

    @property
    def max_cost_label(self) -> str:
        return format_cap(self.max_cost)


def run_cost(run: Run, *, latest: bool = False) -> RunCost:
    """The run's cost totals; with `latest`, the run's and its retries' together (their verdicts are in view)."""
    paused = run.backoff_kind == BackoffKind.BUDGET and not run.is_finished
    if not latest:
        return RunCost(
            total=float(run.cost_total or 0.0),
            items=int(run.cost_items or 0),
            by_evaluator={str(k): float(v) for k, v in (run.cost_by_evaluator or {}).items()},
            max_cost=run.max_cost,
            budget_paused=paused,
        )
    total, items = 0.0, 0
    by_evaluator: dict[str, float] = {}
    for cost_total, cost_items, per_evaluator in Run.objects.filter(pk__in=run_chain(run)).values_list(
        "cost_total", "cost_items", "cost_by_evaluator"
    ):
        total += float(cost_total or 0.0)
        items += int(cost_items or 0)
        for name, value in (per_evaluator or {}).items():
            by_evaluator[str(name)] = by_evaluator.get(str(name), 0.0) + float(value)
    return RunCost(
        total=total, items=items, by_evaluator=by_evaluator, max_cost=run.max_cost, budget_paused=paused
    )


def run_waits_for_cap(run: Run) -> bool:
    """Paused by its spending cap with nothing out: only a person raising the cap will move it on.

    While a batch is in flight, or finished with its logs not read yet, the pause may lift by itself
    (its cost becomes known and may fit); a command that waits must not give up then.
    """
    if not (run.backoff_kind == BackoffKind.BUDGET and not run.is_finished):
        return False
    out = RemoteBatch.objects.filter(run=run).filter(
        Q(status__in=[RemoteBatch.Status.SUBMITTING, RemoteBatch.Status.RUNNING])
        | Q(logs_fetched_at__isnull=True, items__status=Item.Status.COMPLETED)
    )
    return not out.exists()
