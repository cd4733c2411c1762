"""Runs: start one, watch it live, cancel it, retry its failures, delete it, list them all."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import Sum
from django.http import HttpResponse, QueryDict
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from dashboard.access import RunAccess, shared, team
from dashboard.forms import RunFilterForm, RunForm
from dashboard.http import HtmxHttpRequest, row_number
from evals.models import MAX_BATCH_SIZE, BackoffKind, Dataset, Item, RemoteBatch, Run
from evals.selectors.costs import run_cost
from evals.selectors.results import (
    ResultsQuery,
    items_with_details,
    metadata_values,
    results_count_shown,
    results_page,
)
from evals.selectors.runs import run_chain, run_root
from evals.services.retention import run_delete, run_deletion_plan
from evals.services.retry import RetryPlan, run_retry, run_retry_plan
from evals.services.run_options import UNSET, RunError, run_preflight
from evals.services.runs import run_cancel, run_create

# The session key that makes the run page show "Run started" in its live header until the run ends.
STARTED_KEY = "docket_run_started"
# What cancelling does, as the button asks before it and the page says after it.
CANCEL_EFFECT = "Items not yet sent are cancelled; batches already sent are still collected."


@require_GET
def home(request: HtmxHttpRequest) -> HttpResponse:
    return redirect("run_list")


@require_GET
def run_list(request: HtmxHttpRequest) -> HttpResponse:
    form = RunFilterForm(request.GET or None)
    runs = Run.objects.select_related("dataset", "judge", "created_by")
    if form.is_valid():
        if status := form.cleaned_data["status"]:
            runs = runs.filter(status=status)
        if judge := form.cleaned_data["judge"]:
            runs = runs.filter(judge=judge)
        if dataset := form.cleaned_data["dataset"]:
            runs = runs.filter(dataset=dataset)
        if tag := form.cleaned_data["tag"].strip():
            runs = runs.tagged(tag)
    page = Paginator(runs, 30).get_page(request.GET.get("page"))
    filtered = any(request.GET.get(key) for key in ("status", "judge", "tag", "dataset"))
    return render(request, "dashboard/run_list.html", {"form": form, "page": page, "filtered": filtered})


@require_http_methods(["GET", "POST"])
def run_create_view(request: HtmxHttpRequest) -> HttpResponse:
    source = request.POST if request.method == "POST" else request.GET
    initial: dict[str, Any] = {key: source.get(key) for key in RUN_FORM_KEYS if source.get(key) is not None}
    if "evaluators" in source:
        initial["evaluators"] = source.getlist("evaluators")
    form = RunForm(request.POST or None, initial=initial)
    chosen = _choices_so_far(form, source)
    dataset, judge = chosen.get("dataset"), chosen.get("judge")
    preflight = None
    if dataset and judge:
        preflight = run_preflight(
            dataset=dataset,
            judge=judge,
            batch_size=chosen.get("batch_size") or MAX_BATCH_SIZE,
            evaluator_ids=chosen.get("evaluators"),
            # Unsent: the default cap; emptied or not a positive number: none (the form names the problem).
            max_cost=chosen.get("max_cost") if "max_cost" in source else settings.DOCKET_DEFAULT_MAX_COST,
        )
    error = ""
    refused = False
    if request.method == "POST" and form.is_valid():
        try:
            run = run_create(
                dataset=form.cleaned_data["dataset"],
                judge=form.cleaned_data["judge"],
                created_by=request.user,
                name=form.cleaned_data["name"],
                tags=form.cleaned_data["tags"],
                judge_version_id=form.cleaned_data["judge_version_id"],
                batch_size=form.cleaned_data["batch_size"],
                evaluator_ids=form.cleaned_data["evaluators"],
                # A field the form did not send gets the default; an emptied one means none.
                project_id=form.cleaned_data["project_id"] if "project_id" in request.POST else None,
                max_cost=form.cleaned_data["max_cost"] if "max_cost" in request.POST else UNSET,
            )
        except RunError as exc:
            refused = True
            field = RUN_ERROR_FIELDS.get(exc.field)
            if field:
                form.add_error(field, str(exc))
            else:
                error = str(exc)
        else:
            request.session[STARTED_KEY] = run.pk
            return redirect("run_detail", pk=run.pk)
    template = "dashboard/run_create.html"
    if request.htmx and request.method == "GET":
        template += "#preflight"
    no_datasets = not Dataset.objects.filter(status=Dataset.Status.READY).exists()
    return render(
        request,
        template,
        {
            "form": form,
            "preflight": preflight,
            "error": error,
            "no_datasets": no_datasets,
            # The cost hint and the checkboxes sit elsewhere in the form than the summary, so the
            # summary's reply carries them out of band.
            "oob": bool(request.htmx),
            # The checkboxes are swapped only when they belong to another judge: swapping them on every
            # change would take the focus from the box just ticked.
            "swap_evaluators": bool(request.htmx)
            and source.get("evaluators_for", "") != str(judge.pk if judge else ""),
        },
        # A refused start is a 400; a form with a field to fix is shown again, as before issue 14.
        status=400 if error or refused else 200,
    )


# The form's fields a GET (the summary's refresh, or the no-JS "Update the summary") carries over.
RUN_FORM_KEYS = (
    "dataset",
    "judge",
    "name",
    "tags",
    "judge_version_id",
    "batch_size",
    "project_id",
    "max_cost",
    "evaluators_for",
)
# RunError.field -> the form field it is about.
RUN_ERROR_FIELDS = {"evaluator_ids": "evaluators", "project_id": "project_id", "max_cost": "max_cost"}


def _choices_so_far(form: RunForm, source: QueryDict) -> dict[str, Any]:
    """The fields valid so far, as RunForm cleans them: what the summary is about.

    A submitted form has them; the summary's refresh (a GET) shows an unbound form, so a bound copy
    reads them, and its errors are never shown: a half-filled form is not a mistake yet.
    """
    parsed = form if form.is_bound else RunForm(source)
    parsed.is_valid()
    return parsed.cleaned_data


# --- The run page and its live endpoint ----------------------------------------------------------------

LIVE_ROWS_MAX = 200


def attach_scores(run: Run, items: list[Item]) -> None:
    """Give each item `cells`: one (evaluator, score or None) per column of the run, in order."""
    for item in items:
        by_name = {score.evaluator_name: score for score in item.scores.all()}
        item.cells = [(name, by_name.get(name)) for name in run.evaluators]  # type: ignore[attr-defined]


def retry_plan_for(access: RunAccess) -> RetryPlan | None:
    """The retry the header offers, for a finished run of a chain with failed or cancelled rows."""
    run = access.run
    if access.read_only or not run.is_finished:
        return None
    chain = run_chain(run_root(run))
    totals = Run.objects.filter(pk__in=chain).aggregate(
        failed=Sum("failed_count"), cancelled=Sum("cancelled_count")
    )
    if not (totals["failed"] or totals["cancelled"]):
        return None
    return run_retry_plan(run=run, shown=0)


def started_notice(run: Run) -> str:
    batches = math.ceil(run.total_count / run.batch_size) if run.batch_size else 0
    what = "Retry started" if run.retry_of_id else "Run started"
    return (
        f"{what}: {run.total_count:,} item{'s' if run.total_count != 1 else ''} in {batches:,} remote "
        f"batch{'es' if batches != 1 else ''}. Scores appear below as they arrive."
    )


def live_context(
    access: RunAccess, *, row_ids: list[int], started: bool = False, query: ResultsQuery | None = None
) -> dict[str, Any]:
    run = access.run
    now = timezone.now()
    elapsed = ((run.finished_at or now) - run.started_at).total_seconds() if run.started_at else 0.0
    # Cancelled items were never sent: they count neither toward progress nor toward the pace.
    judged = run.completed_count + run.failed_count
    to_judge = max(run.total_count - run.cancelled_count, 0)
    rate = judged / elapsed if elapsed > 0 and judged else None
    # After a cancel, what is still pending is in batches already sent: the ETA covers only those.
    # A run paused by its spending cap sends nothing until someone raises it: no time left to promise.
    paused = run.backoff_kind == BackoffKind.BUDGET
    eta = run.pending_count / rate if rate and not run.is_finished and not paused else None
    started = started and not run.is_finished and not access.read_only
    backoff_seconds = (run.backoff_until - now).total_seconds() if run.backoff_until else None
    processing = run.items.filter(status=Item.Status.PROCESSING).count() if not run.is_finished else 0
    troubled = list(
        RemoteBatch.objects.filter(run=run)
        .unfinished()
        .exclude(last_error="")
        .order_by("position")
        .values("position", "attempts", "last_error", "status", "next_action_at")[:5]
    )
    for batch in troubled:
        # The judge's messages may quote a row's text and name its ids: a share link sees them masked.
        batch["last_error"] = access.visibility.message(batch["last_error"])

    def width(count: int) -> float:
        return round(100 * count / run.total_count, 2) if run.total_count else 0.0

    return {
        "access": access,
        "run": run,
        # What the run cost so far and its cap: the header's cost line.
        "cost": run_cost(run),
        "rate": rate,
        "eta": eta,
        "elapsed": elapsed,
        "processing": processing,
        "pending_only": max(run.pending_count - processing, 0),
        "widths": {
            "completed": width(run.completed_count),
            "failed": width(run.failed_count),
            "cancelled": width(run.cancelled_count),
            "processing": width(processing),
        },
        "backoff_seconds": backoff_seconds if backoff_seconds and backoff_seconds > 0 else None,
        "troubled": troubled,
        "live_url": f"{access.url('live')}?cursor={run.change_seq}&rows={','.join(map(str, row_ids))}"
        + ("&started=1" if started else "")
        # The page's results view, so that live rows link to items in the page's order.
        + (f"&{urlencode(query.to_params())}" if query else ""),
        "item_query": query.link_query(run) if query else "",
        "judged": judged,
        "to_judge": to_judge,
        "retry_plan": retry_plan_for(access),
        "started_notice": started_notice(run) if started else "",
        "cancel_question": f"Stop sending this run? {CANCEL_EFFECT}",
    }


@require_GET
def run_detail(request: HtmxHttpRequest, access: RunAccess) -> HttpResponse:
    """The run: its live header, and its items as a results table that sorts and filters in the URL."""
    run = access.run
    retries = [access.visibility.redact_run(retry) for retry in run.retries.order_by("created_at")]
    query = access.results_query(request.GET)
    if query.latest and not retries:
        query = replace(query, latest=False)
    page = results_page(run, query, cursor=request.GET.get("after") or None)
    attach_scores(run, page.rows)
    match_count, match_count_more = results_count_shown(run, query) if query.is_filtered else (None, False)
    # Shown once, after the redirect from starting the run; the live header keeps it until the run ends.
    started = not access.read_only and request.session.pop(STARTED_KEY, None) == run.pk
    # Rows of the run itself update live; rows merged from retries belong to other runs.
    context = live_context(
        access,
        row_ids=[] if query.latest else [item.pk for item in page.rows],
        started=started,
        query=query,
    )
    context.update(
        {
            "rows": page.rows,
            "next_cursor": page.next_cursor,
            "is_first_page": not request.GET.get("after"),
            "retries": retries,
            "query": query,
            "statuses": Item.Status.choices,
            "metadata_columns": run.dataset.metadata_columns,
            "metadata_values": metadata_values(run) if run.dataset.metadata_columns else {},
            # "37 of 5,000 items match": the pages of a filtered view, counted together; counted up to a
            # limit, since an exact count of a common word reads the whole run ("10,000+ ... match").
            "match_count": match_count,
            "match_count_more": match_count_more,
        }
    )
    return render(request, "dashboard/run_detail.html", context)


@require_GET
def run_live(request: HtmxHttpRequest, access: RunAccess) -> HttpResponse:
    """What changed since the page's cursor: the header, and the visible rows that changed (out of band).

    An endpoint of its own rather than run_detail#live-header: a poll carries the cursor and the rows
    on the page and wants a 204 when nothing changed, which a render of the page cannot give cheaply.

    204 when nothing changed, so a quiet run costs one indexed lookup per poll. The size of the reply
    depends on what changed, not on the size of the run.
    """
    run = access.run
    cursor = row_number(request.GET.get("cursor"))
    if cursor is None:
        cursor = -1
    row_ids = [pk for part in request.GET.get("rows", "").split(",") if (pk := row_number(part)) is not None][
        :LIVE_ROWS_MAX
    ]
    if cursor == run.change_seq and not (run.backoff_until and run.backoff_until > timezone.now()):
        return HttpResponse(status=204)
    changed = items_with_details(run.items.filter(pk__in=row_ids, change_seq__gt=cursor), access.visibility)
    attach_scores(run, changed)
    query = access.results_query(request.GET)
    context = live_context(access, row_ids=row_ids, started=request.GET.get("started") == "1", query=query)
    context["changed"] = changed
    context["query"] = query
    return render(request, "dashboard/run_live.html", context)


@require_POST
def run_cancel_view(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    run = get_object_or_404(Run, pk=pk)
    try:
        run = run_cancel(run=run)
    except RunError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Cancelled. {CANCEL_EFFECT}")
    return redirect("run_detail", pk=run.pk)


@require_http_methods(["GET", "POST"])
def run_retry_view(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """GET: what a retry would send and skip. POST: start it, or return to the one already under way."""
    run = get_object_or_404(Run.objects.select_related("dataset", "judge"), pk=pk)
    if request.method == "POST":
        try:
            retry, created = run_retry(run=run, created_by=request.user)
        except RunError as exc:
            messages.error(request, str(exc))
            return redirect("run_detail", pk=run.pk)
        if created:
            request.session[STARTED_KEY] = retry.pk
        else:
            messages.info(request, f"{retry} is already retrying these items: nothing new was sent.")
        return redirect("run_detail", pk=retry.pk)
    plan = run_retry_plan(run=run)
    return render(request, "dashboard/run_retry.html", {"run": run, "plan": plan})


# --- Delete -------------------------------------------------------------------------------------------


def _chosen_runs(request: HtmxHttpRequest, pk: int | None) -> list[Run]:
    if pk is not None:
        return [get_object_or_404(Run, pk=pk)]
    source = request.POST if request.method == "POST" else request.GET
    ids = [pk for value in source.getlist("run") if (pk := row_number(value)) is not None]
    return list(Run.objects.filter(pk__in=ids))


@require_http_methods(["GET", "POST"])
def run_delete_view(request: HtmxHttpRequest, pk: int | None = None) -> HttpResponse:
    """GET: what goes (the runs with their retries, and how many rows). POST: delete them."""
    runs = _chosen_runs(request, pk)
    if not runs:
        messages.error(request, "Choose at least one run to delete (tick it in the list).")
        return redirect("run_list")
    if request.method == "POST":
        deleted = run_delete(runs=runs, by=request.user.get_username())
        count = len(deleted.runs)
        messages.success(
            request,
            f"Deleted {count} run{'s' if count != 1 else ''}: {deleted.items:,} items, "
            f"{deleted.scores:,} scores and {deleted.share_links:,} share links.",
        )
        return redirect("run_list")
    plan = run_deletion_plan(runs=runs)
    selected = {run.pk for run in runs}
    return render(
        request,
        "dashboard/run_delete.html",
        {
            "plan": plan,
            "retries_added": [run for run in plan.runs if run.pk not in selected],
            "single": pk,
        },
    )


urlpatterns = [
    path("", home, name="home"),
    path("runs/", run_list, name="run_list"),
    path("runs/new/", run_create_view, name="run_create"),
    path("runs/<int:pk>/", team(run_detail), name="run_detail"),
    path("runs/<int:pk>/live/", team(run_live), name="run_live"),
    path("s/<str:token>/", shared(run_detail), name="shared_run_detail"),
    path("s/<str:token>/live/", shared(run_live, record_use=False), name="shared_run_live"),
    path("runs/<int:pk>/cancel/", run_cancel_view, name="run_cancel"),
    path("runs/<int:pk>/retry/", run_retry_view, name="run_retry"),
    path("runs/<int:pk>/delete/", run_delete_view, name="run_delete"),
    path("runs/delete/", run_delete_view, name="run_delete_many"),
]
