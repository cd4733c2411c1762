"""Two runs compared: is run B better than run A, evaluator by evaluator, and item by item.

Comparing is for teammates only: a share link reaches exactly one run. `?corrected=1` compares both runs
with human corrections (reviewed scores as the reviewers said); the toggle shows once either run has reviews.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.db.models import Q
from django.http import HttpResponse
from django.shortcuts import render
from django.urls import path, reverse
from django.views.decorators.http import require_GET

from dashboard.http import HtmxHttpRequest, row_number
from evals.models import Review, Run
from evals.selectors.compare import CHANGES, CompareError, RunComparison, runs_compare, shared_evaluators
from evals.selectors.compare_items import runs_compare_items
from evals.selectors.stats import thresholds_from_params

RECENT_RUNS = 50
CHANGE_LABELS = {"": "All pairs", "improved": "Improved", "regressed": "Regressed", "unchanged": "Unchanged"}
CHANGE_NOUNS = {
    "": "pairs",
    "improved": "improved pairs",
    "regressed": "regressed pairs",
    "unchanged": "unchanged pairs",
}
SORT_LABELS = {"position": "Row order", "change": "Largest change first"}


def _run_param(value: str | None) -> Run | None:
    pk = row_number((value or "").strip())
    if pk is None:
        return None
    return Run.objects.select_related("dataset", "judge", "created_by").filter(pk=pk).first()


def _runs(request: HtmxHttpRequest) -> tuple[Run | None, Run | None, list[str]]:
    raw_a, raw_b = request.GET.get("a", "").strip(), request.GET.get("b", "").strip()
    a, b = _run_param(raw_a), _run_param(raw_b)
    problems = []
    for label, raw, run in (("A", raw_a, a), ("B", raw_b, b)):
        if raw and run is None:
            problems.append(f'There is no run "{raw[:40]}" to use as {label}.')
    return a, b, problems


def _overrides(request: HtmxHttpRequest, a: Run, b: Run) -> dict[str, float]:
    return thresholds_from_params(request.GET, shared_evaluators(a, b))


def _corrected(request: HtmxHttpRequest) -> bool:
    return request.GET.get("corrected") == "1"


def _comparison_url(
    name: str, comparison: RunComparison, corrected: bool | None = None, /, **params: str
) -> str:
    """A page of this comparison (the summary or the items), keeping its threshold overrides and
    corrections (`corrected` True or False switches them)."""
    query: dict[str, Any] = {"a": comparison.a.pk, "b": comparison.b.pk}
    query.update({f"threshold.{name}": repr(value) for name, value in comparison.overrides.items()})
    query.update({key: value for key, value in params.items() if value})
    if comparison.corrected if corrected is None else corrected:
        query["corrected"] = "1"
    return f"{reverse(name)}?{urlencode(query)}"


def _corrections(
    comparison: RunComparison, name: str, *, evaluator: str = "", change: str = "", sort: str = ""
) -> dict[str, Any]:
    """The judge / with human corrections toggle of a comparison page: the reviews of both runs, two links."""
    reviews = Review.objects.filter(run_id__in={comparison.a.pk, comparison.b.pk}).count()
    urls = {
        key: _comparison_url(name, comparison, corrected, evaluator=evaluator, change=change, sort=sort)
        for key, corrected in (("judge_url", False), ("corrected_url", True))
    }
    return {"show": comparison.corrected or reviews > 0, "reviews": reviews, **urls}


def _items_url(comparison: RunComparison, **params: str) -> str:
    return _comparison_url("run_compare_items", comparison, **params)


@require_GET
def run_compare(request: HtmxHttpRequest) -> HttpResponse:
    a, b, problems = _runs(request)
    search = request.GET.get("q", "").strip()[:200]
    runs = Run.objects.select_related("dataset", "judge").order_by("-created_at", "-id")
    if search:
        condition = (
            Q(name__icontains=search) | Q(dataset__name__icontains=search) | Q(judge__name__icontains=search)
        )
        pk = row_number(search)
        if pk is not None:
            condition |= Q(pk=pk)
        runs = runs.filter(condition)
    choices = list(runs[:RECENT_RUNS])
    for chosen in (a, b):
        if chosen is not None and chosen not in choices:
            choices.append(chosen)
    context: dict[str, Any] = {
        "a": a,
        "b": b,
        "choices": choices,
        "search": search,
        "problems": problems,
        "comparison": None,
    }
    if a is not None and b is not None:
        corrected = _corrected(request)
        comparison = runs_compare(a=a, b=b, thresholds=_overrides(request, a, b), corrected=corrected)
        context["comparison"] = comparison
        context["comparison_sides"] = [("A", a), ("B", b)]
        context["swap_url"] = f"{reverse('run_compare')}?a={b.pk}&b={a.pk}" + (
            "&corrected=1" if corrected else ""
        )
        context["own_thresholds_url"] = f"?a={a.pk}&b={b.pk}" + ("&corrected=1" if corrected else "")
        context["corrections"] = _corrections(comparison, "run_compare")
        context["item_links"] = {
            row.name: {
                change: _items_url(comparison, evaluator=row.name, change=change) for change in ("", *CHANGES)
            }
            for row in comparison.evaluators
        }
        context["threshold_all"] = request.GET.get("threshold", "")
    return render(request, "dashboard/run_compare.html", context)


@require_GET
def run_compare_items(request: HtmxHttpRequest) -> HttpResponse:
    """The pairs of two runs one by one: the text side by side, scores A -> B, filtered and sorted."""
    a, b, problems = _runs(request)
    context: dict[str, Any] = {"a": a, "b": b, "problems": problems, "page": None}
    if a is None or b is None:
        # An unknown run is not found; a missing one is a malformed address.
        status = 404 if problems else 400
        if not problems:
            problems.append("Choose two runs to compare first.")
        context["compare_url"] = reverse("run_compare")
        return render(request, "dashboard/run_compare_items.html", context, status=status)
    context["compare_url"] = f"{reverse('run_compare')}?a={a.pk}&b={b.pk}"
    names = shared_evaluators(a, b)
    context["evaluator_names"] = names
    if not names:
        problems.append("The two runs share no evaluator, so there is nothing to compare item by item.")
        return render(request, "dashboard/run_compare_items.html", context, status=400)
    evaluator = request.GET.get("evaluator", "") or names[0]
    change = request.GET.get("change", "")
    sort = request.GET.get("sort", "") or "position"
    try:
        page = runs_compare_items(
            a=a,
            b=b,
            evaluator=evaluator,
            change=change,
            sort=sort,
            after=request.GET.get("after", "")[:100],
            thresholds=_overrides(request, a, b),
            corrected=_corrected(request),
        )
    except CompareError as error:
        problems.append(str(error))
        context["first_url"] = f"{reverse('run_compare_items')}?a={a.pk}&b={b.pk}"
        return render(request, "dashboard/run_compare_items.html", context, status=400)
    comparison, row = page.comparison, page.evaluator
    counts = {"": row.n, "improved": row.improved, "regressed": row.regressed, "unchanged": row.unchanged}
    context.update(
        {
            "page": page,
            "comparison": comparison,
            "row": row,
            "compare_url": _comparison_url("run_compare", comparison),
            "change_tabs": [
                (
                    label,
                    counts[key],
                    _items_url(comparison, evaluator=row.name, change=key, sort=sort),
                    key == change,
                )
                for key, label in CHANGE_LABELS.items()
            ],
            "sort_links": [
                (label, _items_url(comparison, evaluator=row.name, change=change, sort=key), key == sort)
                for key, label in SORT_LABELS.items()
            ],
            "first_url": _items_url(comparison, evaluator=row.name, change=change, sort=sort),
            "next_url": _items_url(
                comparison, evaluator=row.name, change=change, sort=sort, after=page.next_cursor
            )
            if page.next_cursor
            else "",
            "change_noun": CHANGE_NOUNS[change],
            "sort": sort,
            "change": change,
            "corrections": _corrections(
                comparison, "run_compare_items", evaluator=row.name, change=change, sort=sort
            ),
        }
    )
    return render(request, "dashboard/run_compare_items.html", context)


urlpatterns = [
    path("runs/compare/", run_compare, name="run_compare"),
    path("runs/compare/items/", run_compare_items, name="run_compare_items"),
]
