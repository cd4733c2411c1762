"""Runs through the API: start one, watch it, read its statistics, cancel, retry, delete (items.py: its
items and exports).

Each endpoint resolves the run, calls the service or selector the pages call, and shapes the answer,
so the API's numbers are the run page's and the statistics page's: computed in one place. One unit a
little over 450 lines: the run endpoints and the run document they all answer with.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from django.http import HttpRequest
from django.urls import reverse
from ninja import Field, Query, Router, Schema, Status
from pydantic import ConfigDict

from dashboard.api.core import (
    Limit,
    Problem,
    RowId,
    Text,
    absolute_url,
    errors,
    keyset_page,
    run_or_404,
)
from evals.client import JudgeError
from evals.models import MAX_BATCH_SIZE, BackoffKind, Dataset, Judge, Run
from evals.selectors.costs import run_cost
from evals.selectors.stats import EvaluatorStats, run_statistics
from evals.services.costs import CostError, run_budget_raise
from evals.services.judges import JudgeLookupError, judge_find
from evals.services.retention import run_delete
from evals.services.retry import run_retry, run_retry_plan
from evals.services.run_options import RunError, validate_tags
from evals.services.runs import run_cancel, run_create

router = Router()


Threshold = Annotated[float, Field(strict=True, allow_inf_nan=False)]
PositiveCost = Annotated[float, Field(gt=0, allow_inf_nan=False)]
# Run.Status's values, spelled out for the schema (a test holds them to the model's choices).
RunStatus = Literal["queued", "running", "completed", "partial", "failed", "cancelled"]


# --- Shapes -------------------------------------------------------------------------------------------


class JudgeRef(Schema):
    id: int
    name: str


class Counts(Schema):
    total: int
    completed: int
    failed: int
    cancelled: int
    pending: int


class EvaluatorOut(Schema):
    """One evaluator's numbers, as the statistics page shows them (evals.selectors.stats)."""

    name: str
    n: int
    mean: float | None
    ci_low: float | None = Field(description="95% Student-t interval of the mean; null below 2 scores.")
    ci_high: float | None
    pass_rate: float | None = Field(
        description="Share of scores at or above `threshold`; null without scores."
    )
    threshold: float
    threshold_source: str = Field(
        description='"override" (chosen when the run started), "judge" (learned from the judge\'s log), '
        '"default" (0.5: the judge named none) or "pending" (0.5 until learned).'
    )


class RunOut(Schema):
    id: int
    name: str
    status: str
    finished: bool
    url: str
    dataset_id: int
    judge: JudgeRef
    tags: list[str]
    batch_size: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    retry_of: int | None
    backoff_reason: str
    last_error: str
    counts: Counts
    evaluator_names: list[str]
    evaluators: list[EvaluatorOut] = Field(description="Per evaluator statistics; empty in lists.")
    evaluator_ids: list[str] = Field(
        description="The evaluator set the run sends (remote evaluator ids); empty: the whole judge."
    )
    project_id: str = Field(
        description='The judge API project of its batches and logs; "": the judge\'s own.'
    )
    cost_total: float = Field(
        description="What the run has cost so far, in the judge's currency, from its execution logs."
    )
    cost_items: int = Field(description="Items whose cost is known (`cost_total` covers these).")
    cost_per_item: float | None = Field(
        description="`cost_total` / `cost_items`; null until a cost is known."
    )
    cost_by_evaluator: dict[str, float] = Field(description="What each evaluator has cost so far.")
    max_cost: float | None = Field(description="The spending cap; null: none.")
    budget_paused: bool = Field(
        description="Nothing new is sent: the cap is reached. POST /runs/{id}/budget/ raises or removes it."
    )


class RunPage(Schema):
    items: list[RunOut]
    next_cursor: str | None


class RunStatusOut(Schema):
    id: int
    status: str
    finished: bool
    counts: Counts
    backoff_reason: str
    budget_paused: bool = Field(description="Nothing new is sent until the spending cap is raised.")
    cost_total: float = Field(description="What the items costed so far cost, in the judge's currency.")


class RetryPlanOut(Schema):
    to_send: int
    failed: int
    cancelled: int
    excluded: int = Field(description="Rows a retry cannot fix (rejected by the judge, or missing an input).")


class RetryOut(Schema):
    created: bool
    to_send: int
    run: RunOut


class DeletedOut(Schema):
    runs: list[int]
    items: int
    scores: int
    share_links: int


class RunIn(Schema):
    # A misspelt field ("treshold") is a 422, not a silently ignored wish.
    model_config = ConfigDict(extra="forbid")

    dataset_id: RowId
    judge: Text = Field(min_length=1, max_length=512, description="Judge id, remote id or name.")
    name: Text = Field("", max_length=200)
    tags: list[Text] = Field(default_factory=list, max_length=100)
    batch_size: int = Field(MAX_BATCH_SIZE, ge=1, le=MAX_BATCH_SIZE)
    thresholds: dict[Text, Threshold] = Field(
        default_factory=dict, description="Pass thresholds by evaluator name; they override the judge's."
    )
    evaluator_ids: Annotated[list[Text], Field(max_length=100)] | None = Field(
        None,
        description="An evaluator set instead of the whole judge: the judge's evaluators, by id or name.",
    )
    project_id: Text | None = Field(
        None, max_length=64, description="The judge API project; default: the server's SCORABLE_PROJECT_ID."
    )
    max_cost: PositiveCost | None = Field(
        None, description="A spending cap in the judge's currency; null: none. Default: the server's."
    )


class BudgetIn(Schema):
    model_config = ConfigDict(extra="forbid")

    max_cost: PositiveCost | None = Field(description="The new cap; null removes it.")


class RunFilters(Schema):
    status: RunStatus | None = None
    judge: RowId | None = Field(None, description="The judge's id (`judge.id` of a run).")
    dataset_id: RowId | None = None
    tag: str | None = Field(None, max_length=200, description="Runs carrying this tag (any case).")


# --- Helpers ------------------------------------------------------------------------------------------


def _counts(run: Run) -> dict[str, int]:
    return {
        "total": run.total_count,
        "completed": run.completed_count,
        "failed": run.failed_count,
        "cancelled": run.cancelled_count,
        "pending": run.pending_count,
    }


def _evaluator(stats: EvaluatorStats) -> dict[str, Any]:
    return {
        "name": stats.name,
        "n": stats.n,
        "mean": stats.mean,
        "ci_low": stats.interval.low,
        "ci_high": stats.interval.high,
        "pass_rate": stats.pass_rate,
        "threshold": stats.threshold,
        "threshold_source": stats.threshold_source,
    }


def run_out(request: HttpRequest, run: Run, *, statistics: bool = True) -> dict[str, Any]:
    """The Run document; `statistics=False` for lists, which would otherwise aggregate every run's scores."""
    evaluators = run_statistics(run=run).evaluators if statistics else []
    cost = run_cost(run)
    return {
        "id": run.pk,
        "name": run.name,
        "status": run.status,
        "finished": run.is_finished,
        "url": absolute_url(request, reverse("run_detail", args=[run.pk])),
        "dataset_id": run.dataset_id,
        "judge": {"id": run.judge_id, "name": run.judge.name},
        "tags": list(run.tags),
        "batch_size": run.batch_size,
        "created_at": run.created_at,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "retry_of": run.retry_of_id,
        "backoff_reason": run.backoff_reason,
        "last_error": run.last_error,
        "counts": _counts(run),
        "evaluator_names": list(run.evaluators),
        "evaluators": [_evaluator(stats) for stats in evaluators],
        "evaluator_ids": [str(value) for value in run.evaluator_ids or []],
        "project_id": run.project_id,
        "cost_total": cost.total,
        "cost_items": cost.items,
        "cost_per_item": cost.per_item,
        "cost_by_evaluator": cost.by_evaluator,
        "max_cost": run.max_cost,
        "budget_paused": cost.budget_paused,
    }


def _ready_dataset(dataset_id: int) -> Dataset:
    dataset = Dataset.objects.filter(pk=dataset_id).first()
    if dataset is None:
        raise Problem.invalid("dataset_id", f"There is no dataset {dataset_id}.")
    if dataset.status != Dataset.Status.READY:
        raise Problem.invalid(
            "dataset_id",
            f'Dataset "{dataset.name}" is not ready yet ({dataset.get_status_display().lower()}).',
        )
    return dataset


def _judge(wanted: str) -> Judge:
    """The judge `wanted` names, as `run_eval --judge` finds it (asking the judge API once if need be)."""
    try:
        return judge_find(wanted)
    except JudgeLookupError as exc:
        raise Problem.invalid("judge", str(exc)) from exc
    except JudgeError as exc:
        # A refused key or a rejected request will not mend by itself; a throttle or an outage may.
        headers = {"Retry-After": str(max(int(exc.retry_after), 1))} if exc.retry_after else {}
        raise Problem(
            502 if exc.permanent else 503,
            f"The judge API could not be reached to look up the judge: {exc.message}",
            headers=headers,
        ) from exc


def _check_thresholds(judge: Judge, thresholds: dict[str, float]) -> None:
    unknown = [name for name in thresholds if name not in judge.evaluator_names]
    if unknown:
        names = ", ".join(f'"{name}"' for name in unknown)
        known = ", ".join(judge.evaluator_names) or "none"
        raise Problem(
            422,
            f"{judge.name} has no evaluator {names}; its evaluators: {known}.",
            errors=[
                {"field": f"thresholds.{name}", "message": f'{judge.name} has no evaluator "{name}".'}
                for name in unknown
            ],
        )


# --- Runs ---------------------------------------------------------------------------------------------


@router.get("/runs/", response={200: RunPage, **errors(422)}, summary="List runs, newest first")
def list_runs(
    request: HttpRequest, filters: Query[RunFilters], limit: Limit | None = None, cursor: str | None = None
) -> dict[str, Any]:
    """Filtered as on the runs page. `evaluators` is empty here: read one run for its statistics."""
    runs = Run.objects.select_related("judge")
    if filters.status:
        runs = runs.filter(status=filters.status)
    if filters.judge:
        runs = runs.filter(judge_id=filters.judge)
    if filters.dataset_id:
        runs = runs.filter(dataset_id=filters.dataset_id)
    if tag := (filters.tag or "").strip():
        runs = runs.tagged(tag)
    rows, next_cursor = keyset_page(runs, cursor=cursor, limit=limit)
    return {"items": [run_out(request, run, statistics=False) for run in rows], "next_cursor": next_cursor}


@router.post(
    "/runs/",
    response={201: RunOut, **errors(403, 422, 502, 503)},
    summary="Start a run of a dataset with a judge",
)
def create_run(request: HttpRequest, payload: RunIn) -> Status[dict[str, Any]]:
    """Unknown dataset or judge, unknown evaluators in `thresholds`, bad tags: 422 naming the field.

    The judge is looked up like `run_eval --judge`; when no judge matches, the judge API is asked once.
    """
    dataset = _ready_dataset(payload.dataset_id)
    judge = _judge(payload.judge)
    _check_thresholds(judge, payload.thresholds)
    try:
        tags = validate_tags(payload.tags)
    except RunError as exc:
        raise Problem.invalid("tags", str(exc)) from exc
    # Only what the request gave: run_create's own defaults (the settings) stand for the rest.
    options: dict[str, Any] = {}
    if payload.evaluator_ids is not None:
        # By id or by name; none, or every one, is the whole judge (run_create decides, as for the form).
        options["evaluator_ids"] = payload.evaluator_ids
    if payload.project_id is not None:
        options["project_id"] = payload.project_id.strip()
    if "max_cost" in payload.model_fields_set:
        options["max_cost"] = payload.max_cost
    try:
        run = run_create(
            dataset=dataset,
            judge=judge,
            created_by=request.user,
            name=payload.name,
            tags=tags,
            batch_size=payload.batch_size,
            threshold_overrides=payload.thresholds,
            **options,
        )
    except RunError as exc:
        field = getattr(exc, "field", None)
        raise Problem(
            422, str(exc), errors=[{"field": field, "message": str(exc)}] if field else None
        ) from exc
    return Status(201, run_out(request, run))


@router.post(
    "/runs/{int:run_id}/budget/",
    response={200: RunOut, **errors(403, 404, 409, 422)},
    summary="Raise or remove a run's spending cap",
)
def set_budget(request: HttpRequest, run_id: int, payload: BudgetIn) -> dict[str, Any]:
    """A run paused by its cap resumes. 422 for a cap below what the run has spent; 409 once it has finished."""
    run = run_or_404(run_id, "judge")
    if run.is_finished:
        raise Problem(409, f"Run {run.pk} has finished ({run.status}): a cap no longer applies.")
    try:
        run_budget_raise(run=run, max_cost=payload.max_cost)
    except CostError as exc:
        message = getattr(exc, "message", None) or str(exc)
        raise Problem.invalid("max_cost", message) from exc
    run.refresh_from_db()
    return run_out(request, run)


@router.get(
    "/runs/{int:run_id}/", response={200: RunOut, **errors(404, 422)}, summary="A run with its statistics"
)
def get_run(request: HttpRequest, run_id: int) -> dict[str, Any]:
    """`evaluators`: n, mean, its 95% interval and the pass rate at the run's thresholds (the stats page's)."""
    return run_out(request, run_or_404(run_id, "judge"))


@router.get(
    "/runs/{int:run_id}/status/", response={200: RunStatusOut, **errors(404, 422)}, summary="Poll a run"
)
def get_run_status(request: HttpRequest, run_id: int) -> dict[str, Any]:
    """Reads the run's row only (no scores): cheap enough to poll every few seconds."""
    run = run_or_404(run_id)
    return {
        "id": run.pk,
        "status": run.status,
        "finished": run.is_finished,
        "counts": _counts(run),
        "backoff_reason": run.backoff_reason,
        "budget_paused": run.backoff_kind == BackoffKind.BUDGET and not run.is_finished,
        "cost_total": run.cost_total,
    }


@router.post(
    "/runs/{int:run_id}/cancel/",
    response={200: RunOut, **errors(403, 404, 409, 422)},
    summary="Stop sending a run",
)
def cancel_run(request: HttpRequest, run_id: int) -> dict[str, Any]:
    """Unsent items are cancelled; batches already sent are still collected. 409 once the run has finished."""
    try:
        run = run_cancel(run=run_or_404(run_id, "judge"))
    except RunError as exc:
        raise Problem(409, str(exc)) from exc
    return run_out(request, run)


@router.get(
    "/runs/{int:run_id}/retry/",
    response={200: RetryPlanOut, **errors(404, 422)},
    summary="What a retry would send",
)
def plan_retry(request: HttpRequest, run_id: int) -> dict[str, Any]:
    plan = run_retry_plan(run=run_or_404(run_id, "dataset", "judge"), shown=0)
    return {
        "to_send": plan.to_send,
        "failed": plan.failed,
        "cancelled": plan.cancelled,
        "excluded": plan.excluded_count,
    }


@router.post(
    "/runs/{int:run_id}/retry/",
    response={200: RetryOut, 201: RetryOut, **errors(403, 404, 409, 422)},
    summary="Retry the failed and cancelled rows",
)
def start_retry(request: HttpRequest, run_id: int) -> Status[dict[str, Any]]:
    """201 with the new retry; 200 with the retry already under way (nothing new is sent); 409 when
    there is nothing to retry or the run has not finished."""
    try:
        retry, created = run_retry(run=run_or_404(run_id, "dataset", "judge"), created_by=request.user)
    except RunError as exc:
        raise Problem(409, str(exc)) from exc
    body = {"created": created, "to_send": retry.total_count, "run": run_out(request, retry)}
    return Status(201 if created else 200, body)


@router.delete(
    "/runs/{int:run_id}/", response={200: DeletedOut, **errors(403, 404, 422)}, summary="Delete a run"
)
def delete_run(request: HttpRequest, run_id: int) -> dict[str, Any]:
    """The run goes with its retries (and theirs), items, scores and share links; a run in flight is cancelled first."""
    deleted = run_delete(runs=[run_or_404(run_id)], by=request.user.get_username())
    return {
        "runs": [run.pk for run in deleted.runs],
        "items": deleted.items,
        "scores": deleted.scores,
        "share_links": deleted.share_links,
    }
