"""Judges: the judge API's judges as Docket last stored them. Pages read only what is stored; the
judge API is asked when someone presses a sync button, and by the watchdog in the background
(evals.services.judges.judges_refresh_due)."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path
from django.views.decorators.http import require_GET, require_POST

from dashboard.http import HtmxHttpRequest
from evals.client import JudgeError
from evals.models import Judge, Run
from evals.money import format_cost
from evals.services.costs import cost_per_item_estimate
from evals.services.judges import judge_refresh, judges_for_current_api, judges_sync
from evals.services.run_options import custom_inputs, judge_inputs


@require_GET
def judge_list(request: HtmxHttpRequest) -> HttpResponse:
    judges = judges_for_current_api()
    listed = judges.filter(is_listed=True)
    last_synced = max((judge.synced_at for judge in listed), default=None)
    return render(
        request,
        "dashboard/judge_list.html",
        {"judges": listed, "never_synced": not judges.exists(), "last_synced": last_synced},
    )


@require_POST
def judge_sync(request: HtmxHttpRequest) -> HttpResponse:
    try:
        result = judges_sync()
    except JudgeError as exc:
        messages.error(request, f"Could not sync judges. {exc.message}")
    else:
        note = f" {result.unlisted} no longer listed." if result.unlisted else ""
        messages.success(request, f"Synced {result.total} judge{'s' if result.total != 1 else ''}.{note}")
    return redirect("judge_list")


@require_GET
def judge_detail(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    judge = get_object_or_404(judges_for_current_api(), pk=pk)
    # An unsaved run of the whole judge: the estimate reads its judge's recent runs, as the run form does.
    cost_per_item, cost_basis = cost_per_item_estimate(Run(judge=judge, evaluators=judge.evaluator_names))
    return render(
        request,
        "dashboard/judge_detail.html",
        {
            "judge": judge,
            "runs": judge.runs.select_related("dataset")[:10],
            "inputs": judge_inputs(judge),
            "custom_inputs": custom_inputs(judge),
            "cost_per_item": cost_per_item,
            "cost_basis": cost_basis,
            "cost_per_item_text": format_cost(cost_per_item),
        },
    )


@require_POST
def judge_refresh_view(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """Read one judge in full from the judge API (its current version appears only there)."""
    judge: Judge = get_object_or_404(judges_for_current_api(), pk=pk)
    try:
        judge_refresh(judge=judge)
    except JudgeError as exc:
        messages.error(request, f"Could not sync {judge.name}; showing the last synced copy. {exc.message}")
    else:
        messages.success(request, f"Synced {judge.name}.")
    return redirect("judge_detail", pk=judge.pk)


urlpatterns = [
    path("judges/", judge_list, name="judge_list"),
    path("judges/sync/", judge_sync, name="judge_sync"),
    path("judges/<int:pk>/", judge_detail, name="judge_detail"),
    path("judges/<int:pk>/sync/", judge_refresh_view, name="judge_refresh"),
]
