"""Looking into a run's results: statistics, one item in full, an export.

Statistics, item and export are read-only run views written once as `view(request, access)` and
mounted for teammates (/runs/<pk>/...) and for share links (/s/<token>/...). Fetching an execution
log writes to the database and calls the judge API, so it is for teammates only, and so is comparing
two runs (a share link reaches exactly one run).

Human corrections (`?corrected=1`) are for teammates: statistics and exports read reviewed scores as the
reviewers said. A share link reads the judge's figures; its export carries each review's label and
score, never who wrote it or what they wrote, and its item page says how a score was reviewed, not by whom.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.http import Http404, HttpResponse, HttpResponseBadRequest, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import redirect, render
from django.urls import path, reverse
from django.utils.http import content_disposition_header
from django.views.decorators.http import require_GET, require_POST

from dashboard.access import RunAccess, shared, team
from dashboard.charts import histogram, interval_bar
from dashboard.http import HtmxHttpRequest
from evals.models import Item, Review
from evals.selectors.export import CONTENT_TYPES, FORMATS, export_filename, export_stream
from evals.selectors.results import ResultsQuery, result_item, results_neighbours
from evals.selectors.runs import run_chain
from evals.selectors.stats import run_statistics, thresholds_from_params
from evals.services.item_logs import ItemLogError, item_log_fetch


def _corrected(request: HtmxHttpRequest, access: RunAccess) -> bool:
    """`?corrected=1`: reviewed scores as the reviewers said. Teammates only (see the module's docstring)."""
    return request.GET.get("corrected") == "1" and not access.read_only


def _with_corrected(params: dict[str, str], corrected: bool) -> dict[str, str]:
    return {**params, "corrected": "1"} if corrected else params


def _toggle_urls(request: HtmxHttpRequest) -> dict[str, str]:
    """This page as the judge gave it, and with human corrections: every other parameter stays."""
    judge = request.GET.copy()
    judge.pop("corrected", None)
    corrected = judge.copy()
    corrected["corrected"] = "1"
    return {"judge": "?" + judge.urlencode(), "corrected": "?" + corrected.urlencode()}


# --- Statistics --------------------------------------------------------------------------------------


@require_GET
def run_stats(request: HtmxHttpRequest, access: RunAccess) -> HttpResponse:
    run = access.run
    has_retries = run.retries.exists()
    latest = has_retries and access.results_query(request.GET).latest
    thresholds = thresholds_from_params(request.GET, run.evaluators)
    asked_slice = request.GET.get("slice", "").strip()
    columns = list(run.dataset.metadata_columns)
    slice_column = asked_slice if asked_slice in columns else None
    corrected = _corrected(request, access)
    statistics = run_statistics(
        run=run, latest=latest, thresholds=thresholds, slice_column=slice_column, corrected=corrected
    )
    cards = [
        {
            "stats": stats,
            "histogram": histogram(stats),
            "ci": interval_bar(stats),
            "hid": f"hist-{index}",
            # The run's own threshold, shown beside an override from the address.
            "own": dict(zip(("threshold", "source"), run.threshold_for(stats.name), strict=True)),
        }
        for index, stats in enumerate(statistics.evaluators, start=1)
    ]
    # The same page at the run's own thresholds: the slice, the view and the corrections stay.
    kept = {"view": "latest"} if latest else {}
    if slice_column:
        kept["slice"] = slice_column
    kept = _with_corrected(kept, corrected)
    sliced = {"slice": slice_column} if slice_column else {}
    export = access.url("export")
    return render(
        request,
        "dashboard/run_stats.html",
        {
            "access": access,
            "run": run,
            "statistics": statistics,
            "cards": cards,
            "columns": columns,
            "slice_column": slice_column,
            "bad_slice": asked_slice if asked_slice and slice_column is None else "",
            "url_thresholds": thresholds,
            "threshold_all": request.GET.get("threshold", ""),
            "own_thresholds_url": "?" + urlencode(kept),
            "reset_url": "?" + urlencode(_with_corrected({"view": "latest"} if latest else {}, corrected)),
            "view_urls": {
                "run": "?" + urlencode(_with_corrected(sliced, corrected)),
                "latest": "?" + urlencode(_with_corrected({"view": "latest", **sliced}, corrected)),
            },
            "export_urls": {
                fmt: f"{export}?"
                + urlencode(
                    _with_corrected({"format": fmt, **({"view": "latest"} if latest else {})}, corrected)
                )
                for fmt in FORMATS
            },
            "corrected": corrected,
            # The toggle, for teammates, once someone has reviewed a score in view (or corrections are on).
            "show_corrections": not access.read_only and (corrected or statistics.reviews > 0),
            "toggle": _toggle_urls(request),
            "overrides": [
                card
                for card, stats in zip(cards, statistics.evaluators, strict=True)
                if stats.threshold_source == "override"
            ],
            "latest": latest,
            "has_retries": has_retries,
            "links": {
                "detail": access.url("detail"),
                "stats": access.url("stats"),
                "export": export,
            },
        },
    )


# --- One item ----------------------------------------------------------------------------------------


def _item(access: RunAccess, item_pk: int, *, latest: bool) -> Item:
    """An item of the run (or, in the latest-verdict view, of one of its retries); anything else is 404."""
    runs = run_chain(access.run) if latest else [access.run.pk]
    item = result_item(pk=item_pk, run_ids=runs, visibility=access.visibility)
    if item is None:
        raise Http404("No such item in this run.")
    return item


def _item_query(request: HtmxHttpRequest, access: RunAccess) -> ResultsQuery:
    """The results view the item was opened from: its URL carries it, or it is the table's default view."""
    return access.results_query(request.GET)


def item_context(
    access: RunAccess,
    item: Item,
    *,
    latest: bool,
    log_error: str = "",
    query: ResultsQuery | None = None,
) -> dict[str, Any]:
    run = access.run
    if query is None:
        query = ResultsQuery(latest=latest, visibility=access.visibility)
    order = {name: index for index, name in enumerate(item.run.evaluators)}
    scores = sorted(
        item.scores.all(),
        key=lambda score: (order.get(score.evaluator_name, len(order)), score.evaluator_name),
    )
    detail = item.log_detail if isinstance(item.log_detail, dict) else None
    reviews = _item_reviews(access, item)
    verdicts = []
    for score in scores:
        # Pass or fail at the run's thresholds, as the statistics count it; no mark until they are learned.
        threshold, source = run.threshold_for(score.evaluator_name)
        pending = source == "pending"
        own = reviews.get(score.evaluator_name, [])
        verdicts.append(
            {
                "score": score,
                "threshold": None if pending else threshold,
                "passed": None if pending else run.passes(score.evaluator_name, score.score),
                # Newest first: the first is the review that counts (the most recently changed one).
                "reviews": own,
                "human": own[0] if own else None,
            }
        )
    missing = [name for name in item.run.evaluators if name not in {score.evaluator_name for score in scores}]
    # Previous and next walk the view the item was opened from, in its order and with its filters.
    previous_pk, next_pk = results_neighbours(run, query, item)
    suffix = query.link_query(run)

    def item_link(pk: int | None) -> str | None:
        return access.url("item", pk) + suffix if pk is not None else None

    example = item.example
    return {
        "access": access,
        "run": run,
        "item": item,
        "example": example,
        "verdicts": verdicts,
        "missing": missing,
        "detail": detail,
        "log_error": log_error,
        "latest": latest,
        "is_retry_item": item.run_id != run.pk,
        "can_fetch": not access.read_only and bool(item.execution_log_id),
        "review_url": _review_url(access, item),
        "log_url": reverse("run_item_log", args=[run.pk, item.pk]) + suffix if not access.read_only else None,
        "previous_url": item_link(previous_pk),
        "next_url": item_link(next_pk),
        "links": {
            "detail": access.url("detail") + suffix,
            "stats": access.url("stats"),
        },
        "empty_inputs": [
            label
            for label, value in (
                ("expected output", example.expected_output),
                ("system prompt", example.system_prompt),
                ("conversation turns", example.turns),
            )
            if not value
        ],
    }


def _item_reviews(access: RunAccess, item: Item) -> dict[str, list[dict[str, Any]]]:
    """{evaluator: the item's reviews of its score, newest first}: the first is the review that counts
    (as `evals.services.reviews.human_review` orders them). A share link gets the label, the corrected
    score and how many reviewed it; never who, when or what they wrote."""
    found: dict[str, list[dict[str, Any]]] = {}
    for review in Review.objects.filter(item=item).order_by("-updated_at", "-id"):
        found.setdefault(review.evaluator_name, []).append(
            {"label": review.label, "passed": review.passed, "score": review.score}
            if access.read_only
            else {
                "label": review.label,
                "passed": review.passed,
                "score": review.score,
                "reviewer": review.reviewer_name,
                "comment": review.comment,
                "updated_at": review.updated_at,
                "edited": review.updated_at != review.created_at,
            }
        )
    return found


def _review_url(access: RunAccess, item: Item) -> str | None:
    """Review mode opened at this item (in its own run), for teammates only."""
    if access.read_only:
        return None
    return reverse("run_review", args=[item.run_id]) + f"?item={item.pk}"


@require_GET
def run_item(request: HtmxHttpRequest, access: RunAccess, item_pk: int) -> HttpResponse:
    query = _item_query(request, access)
    item = _item(access, item_pk, latest=query.latest)
    return render(
        request, "dashboard/item_detail.html", item_context(access, item, latest=query.latest, query=query)
    )


@require_POST
def run_item_log(request: HtmxHttpRequest, access: RunAccess, item_pk: int) -> HttpResponse:
    """Fetch the item's execution log from the judge API and keep its cost, model, latency and thresholds."""
    query = _item_query(request, access)
    item = _item(access, item_pk, latest=query.latest)
    error = ""
    try:
        item = item_log_fetch(item=item)
    except ItemLogError as exc:
        error = exc.message
    if request.htmx:
        context = item_context(access, item, latest=query.latest, log_error=error, query=query)
        # The verdicts are swapped in out of band too (a second fragment of this one reply); their
        # pass/fail marks come from the run's own thresholds, which no fetched log changes.
        context["oob"] = True
        return render(request, "dashboard/item_detail.html#item-log", context)
    if error:
        messages.error(request, error)
    else:
        messages.success(request, "Fetched cost, model and latency from the execution log.")
    url = reverse("run_item", args=[access.run.pk, item.pk])
    return redirect(url + (f"?{request.GET.urlencode()}" if request.GET else ""))


# --- Export ------------------------------------------------------------------------------------------


@require_GET
def run_export(request: HtmxHttpRequest, access: RunAccess) -> HttpResponseBase:
    """The run, or the results view its parameters describe, as CSV or JSON Lines, streamed.

    Through a share link the export holds what the link shows: no hidden columns, no internal ids, no
    reviewers' names or comments. `?corrected=1` (teammates): each score with human corrections too.
    """
    fmt = request.GET.get("format", "csv") or "csv"
    if fmt not in FORMATS:
        return HttpResponseBadRequest(f'Unknown format "{fmt}": use ?format=csv or ?format=jsonl.')
    params = request.GET.copy()
    # Without a sort of its own an export is in row order (the page's default is worst score first).
    if not params.get("sort"):
        params["sort"] = "position"
    query = access.results_query(params)
    corrected = _corrected(request, access)
    response = StreamingHttpResponse(
        export_stream(access.run, query, fmt=fmt, corrected=corrected), content_type=CONTENT_TYPES[fmt]
    )
    response["Content-Disposition"] = content_disposition_header(
        True, export_filename(access.run, fmt, query=query, corrected=corrected)
    )
    return response


urlpatterns = [
    path("runs/<int:pk>/stats/", team(run_stats), name="run_stats"),
    path("s/<str:token>/stats/", shared(run_stats), name="shared_run_stats"),
    path("runs/<int:pk>/items/<int:item_pk>/", team(run_item), name="run_item"),
    path("s/<str:token>/items/<int:item_pk>/", shared(run_item), name="shared_run_item"),
    path("runs/<int:pk>/items/<int:item_pk>/log/", team(run_item_log), name="run_item_log"),
    path("runs/<int:pk>/export/", team(run_export), name="run_export"),
    path("s/<str:token>/export/", shared(run_export), name="shared_run_export"),
]
