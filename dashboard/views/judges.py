from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path
from django.views.decorators.http import require_POST

from evals.client import JudgeError
from evals.models import Judge, Run
from evals.services.judges import judge_refresh, judges_for_current_api, judges_sync
from evals.services.runs import custom_inputs, format_money, judge_inputs


def judge_list(request: HttpRequest) -> HttpResponse:
    judges = judges_for_current_api()
    sync_error = ""
    if not judges.exists():
        # First visit against this judge API: fetch what it offers before showing an empty page.
        try:
            judges_sync()
        except JudgeError as exc:
            sync_error = exc.message
    judges = judges_for_current_api().filter(is_listed=True)
    last_synced = max((judge.synced_at for judge in judges), default=None)
    return render(
        request,
        "dashboard/judge_list.html",
        {"judges": judges, "sync_error": sync_error, "last_synced": last_synced},
    )


@require_POST
def judge_sync(request: HttpRequest) -> HttpResponse:
    try:
        result = judges_sync()
    except JudgeError as exc:
        messages.error(request, f"Could not sync judges. {exc.message}")
    else:
        note = f" {result.unlisted} no longer listed." if result.unlisted else ""
        messages.success(request, f"Synced {result.total} judge{'s' if result.total != 1 else ''}.{note}")
    return redirect("judge_list")


def judge_detail(request: HttpRequest, pk: int) -> HttpResponse:
    judge = get_object_or_404(judges_for_current_api(), pk=pk)
    refresh_error = ""
    if not judge.version_id:
        try:
            judge = judge_refresh(judge=judge)
        except JudgeError as exc:
            refresh_error = exc.message
    cost_per_item, cost_basis = _cost_per_item(judge)
    return render(
        request,
        "dashboard/judge_detail.html",
        {
            "judge": judge,
            "refresh_error": refresh_error,
            "runs": judge.runs.select_related("dataset")[:10],
            "inputs": judge_inputs(judge),
            "custom_inputs": custom_inputs(judge),
            "cost_per_item": cost_per_item,
            "cost_basis": cost_basis,
            "cost_per_item_text": format_money(cost_per_item),
        },
    )


def _cost_per_item(judge: Judge) -> tuple[float | None, str]:
    """The judge's recent cost per item, as the run form estimates it."""
    try:
        from evals.services.costs import cost_per_item_estimate
    except ImportError:
        return None, ""
    # An unsaved run of the whole judge: the estimate reads its judge's recent runs.
    return cost_per_item_estimate(Run(judge=judge, evaluators=judge.evaluator_names))


urlpatterns = [
    path("judges/", judge_list, name="judge_list"),
    path("judges/sync/", judge_sync, name="judge_sync"),
    path("judges/<int:pk>/", judge_detail, name="judge_detail"),
]
