"""A run's spending cap: what it has cost, what finishing it would cost, and raising (or removing) the cap.

Team only (never mounted under /s/<token>/). GET shows the page; POST sets the cap through
`run_budget_raise`, which also lifts a budget pause and wakes the pump, then goes back to the run.
"""

from __future__ import annotations

import math
from typing import Any

from django import forms
from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import URLPattern, path
from django.views.decorators.http import require_http_methods

from dashboard.http import HtmxHttpRequest
from evals.models import Run
from evals.money import format_cost
from evals.selectors.costs import run_cost
from evals.services.costs import CostError, cost_per_item_estimate, run_budget_raise

# The suggested cap leaves this much room over the estimate to finish: the estimate is an average.
HEADROOM = 1.1
REMOVE = "remove"


class BudgetForm(forms.Form):
    max_cost = forms.FloatField(
        label="Cap",
        required=False,
        min_value=0.0,
        error_messages={
            "invalid": "Cap: enter an amount in dollars, such as 5 or 12.50.",
            "min_value": "Cap: enter an amount above $0.",
        },
        help_text="In the judge's currency. Nothing new is sent once what is spent, plus what the "
        "batches in flight will cost, would pass it.",
        widget=forms.NumberInput(attrs={"step": "any", "min": "0", "inputmode": "decimal"}),
    )

    def clean_max_cost(self) -> float:
        value = self.cleaned_data.get("max_cost")
        if value is None:
            raise forms.ValidationError("Cap: enter an amount, or remove the cap.")
        if value <= 0:
            raise forms.ValidationError("Cap: enter an amount above $0.")
        return float(value)


def budget_plan(run: Run) -> dict[str, Any]:
    """What the run has cost, the cost per item expected for the rest, and what finishing would cost."""
    cost = run_cost(run)
    estimate, basis = cost_per_item_estimate(run)
    # Items still to be judged, and judged items whose cost is not read yet: both will be billed.
    uncosted = max(run.completed_count + run.pending_count - cost.items, 0)
    to_finish = cost.total + uncosted * estimate if estimate is not None else None
    suggested = None
    if to_finish is not None:
        suggested = math.ceil(max(to_finish * HEADROOM, cost.total + 0.01) * 100) / 100
    elif run.max_cost is not None:
        suggested = math.ceil(run.max_cost * 2 * 100) / 100
    names = list(run.evaluators) + sorted(name for name in cost.by_evaluator if name not in run.evaluators)
    return {
        "cost": cost,
        "evaluator_costs": [
            {
                "name": name,
                "total": format_cost(cost.by_evaluator[name]),
                "per_item": format_cost(cost.evaluator_per_item(name)),
            }
            for name in names
            if name in cost.by_evaluator
        ],
        "estimate": estimate,
        "estimate_label": format_cost(estimate),
        "basis": basis,
        "uncosted": uncosted,
        "to_finish": to_finish,
        "to_finish_label": format_cost(to_finish),
        "suggested": suggested,
    }


def _page(request: HtmxHttpRequest, run: Run, form: BudgetForm, *, status: int = 200) -> HttpResponse:
    context = {
        "run": run,
        "form": form,
        "plan": budget_plan(run),
        "errors": [error for errors in form.errors.values() for error in errors],
    }
    return render(request, "dashboard/run_budget.html", context, status=status)


@require_http_methods(["GET", "POST"])
def run_budget(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """GET: the spending and the form. POST: set the cap (`max_cost`), or remove it (`action=remove`)."""
    run = get_object_or_404(Run.objects.select_related("dataset", "judge"), pk=pk)
    if request.method == "GET":
        plan = budget_plan(run)
        return _page(request, run, BudgetForm(initial={"max_cost": plan["suggested"]}))
    form = BudgetForm(request.POST)
    if run.is_finished:
        form.add_error(
            None, f"{run} has finished ({run.get_status_display().lower()}): a cap no longer applies."
        )
        return _page(request, run, form, status=400)
    max_cost: float | None = None
    # Removing the cap ignores whatever the amount field holds.
    if request.POST.get("action") != REMOVE:
        if not form.is_valid():
            return _page(request, run, form, status=400)
        max_cost = form.cleaned_data["max_cost"]
    was_paused = run_cost(run).budget_paused
    try:
        run_budget_raise(run=run, max_cost=max_cost)
    except CostError as error:
        form.add_error("max_cost", getattr(error, "message", None) or str(error))
        return _page(request, run, form, status=400)
    done = "Cap removed" if max_cost is None else f"Cap set to {format_cost(max_cost)}"
    messages.success(request, f"{done}: sending resumes." if was_paused else f"{done}.")
    return redirect("run_detail", pk=run.pk)


urlpatterns: list[URLPattern] = [
    path("runs/<int:pk>/budget/", run_budget, name="run_budget"),
]
