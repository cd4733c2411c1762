"""Human review and calibration through the API: review a score, list reviews, read how far the judge
agrees with its reviewers, and export the reviewed items as a calibration set.

Reviews are saved by `evals.services.reviews.review_save` (the review page's service): the reviewer is
the token's user, and posting again replaces that user's review. The report is
`evals.services.calibration.calibration_report`, the calibration page's numbers; the export is
`evals.services.calibration_set`, the same file as `manage.py export_reviews`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from django.db.models import F, OuterRef, QuerySet, Subquery
from django.http import HttpRequest, StreamingHttpResponse
from ninja import Field, Query, Router, Schema, Status
from pydantic import ConfigDict

from dashboard.api.core import Limit, Problem, Text, download, errors, keyset_page, run_or_404, streamed
from evals.models import Item, Review, Run, Score
from evals.selectors.export import CONTENT_TYPES
from evals.services.calibration import CalibrationReport, EvaluatorCalibration, calibration_report
from evals.services.calibration_set import (
    calibration_runs,
    calibration_set_filename,
    calibration_set_stream,
    reviewed_evaluators,
)
from evals.services.intervals import Interval
from evals.services.reviews import MAX_COMMENT_LENGTH, ReviewError, review_save

router = Router()

# Item.position is a 32-bit column (PositiveIntegerField): a larger number names no item.
POSITION_MAX = 2**31


# --- Shapes -------------------------------------------------------------------------------------------


class ReviewIn(Schema):
    # A misspelt field ("lable") is a 422, not a review saved without it.
    model_config = ConfigDict(extra="forbid")

    position: int = Field(
        ge=1,
        le=POSITION_MAX,
        description="The item's row number, from 1: the `position` of GET /runs/{id}/items/.",
    )
    evaluator: Text = Field(
        min_length=1, max_length=512, description="The evaluator whose score is reviewed."
    )
    label: Literal["pass", "fail"] = Field(description="The reviewer's verdict on the judge's score.")
    score: float | None = Field(
        None,
        ge=0,
        le=1,
        allow_inf_nan=False,
        description="The score the reviewer would have given, on the judge's scale (0 to 1).",
    )
    comment: Text = Field("", max_length=MAX_COMMENT_LENGTH)


class ReviewOut(Schema):
    id: int
    run: int
    item: int
    position: int = Field(description="The item's row number, from 1, as the pages and GET items show it.")
    evaluator: str
    label: str = Field(description='"pass" or "fail".')
    score: float | None = Field(description="The reviewer's corrected score, or null.")
    comment: str
    reviewer: str = Field(description="The reviewer's user name.")
    judge_score: float | None
    judge_label: str | None = Field(
        description='The judge\'s verdict at the run\'s threshold: "pass", "fail" (null without a score).'
    )
    created_at: datetime
    updated_at: datetime


class ReviewPage(Schema):
    items: list[ReviewOut]
    next_cursor: str | None


class ReviewFilters(Schema):
    evaluator: str | None = Field(None, max_length=512, description="Reviews of this evaluator only.")
    reviewer: str | None = Field(None, max_length=150, description="Reviews by this user name only.")


class CalibrationSetFilters(Schema):
    pooled: bool = Field(False, description="The reviewed items of every run of this run's judge.")
    evaluator: str | None = Field(None, max_length=512, description="This evaluator's records only.")


class ConfusionOut(Schema):
    """Reviews counted by the judge's verdict (score against the run's threshold) and the reviewer's."""

    judge_pass_human_pass: int
    judge_pass_human_fail: int
    judge_fail_human_pass: int
    judge_fail_human_fail: int


class EvaluatorCalibrationOut(Schema):
    name: str
    reviewed: int = Field(description="Items with at least one review of this evaluator.")
    reviews: int = Field(description="Reviews: an item reviewed by two people counts twice.")
    reviewers: int
    accuracy: float | None = Field(
        description="Share of reviews where the judge's verdict is the reviewer's."
    )
    accuracy_ci_low: float | None = Field(description="95% bootstrap interval, resampling items.")
    accuracy_ci_high: float | None
    kappa: float | None = Field(description="Cohen's kappa, judge against reviewers; null when undefined.")
    kappa_ci_low: float | None
    kappa_ci_high: float | None
    confusion: ConfusionOut
    corrected: int = Field(description="Reviews with a corrected score.")
    mae: float | None = Field(
        description="Mean absolute error of the judge's score against corrected scores."
    )
    mae_ci_low: float | None
    mae_ci_high: float | None
    spearman: float | None = Field(description="Spearman's rho, judge's score against corrected scores.")
    spearman_ci_low: float | None
    spearman_ci_high: float | None
    reviewer_items: int = Field(description="Items reviewed by two or more people.")
    reviewer_kappa: float | None = Field(
        description="Agreement between reviewers (Fleiss' kappa) over items with 2+ reviews."
    )
    reviewer_kappa_ci_low: float | None
    reviewer_kappa_ci_high: float | None
    note: str = Field(description='Why a number is missing, e.g. "every review says pass".')


class CalibrationOut(Schema):
    run: int
    pooled: bool
    runs: list[int] = Field(description="The runs whose reviews are counted (this run alone unless pooled).")
    evaluators: list[EvaluatorCalibrationOut]


# --- Helpers ------------------------------------------------------------------------------------------


def _judge_score() -> Subquery:
    score = Score.objects.filter(item_id=OuterRef("item_id"), evaluator_name=OuterRef("evaluator_name"))
    return Subquery(score.values("score")[:1])


def _review_out(run: Run, review: Review) -> dict[str, Any]:
    judge_score = review.judge_score  # type: ignore[attr-defined]
    passed = run.passes(review.evaluator_name, judge_score)
    return {
        "id": review.pk,
        "run": review.run_id,
        "item": review.item_id,
        "position": review.position + 1,  # type: ignore[attr-defined]
        "evaluator": review.evaluator_name,
        "label": review.label,
        "score": review.score,
        "comment": review.comment,
        "reviewer": review.reviewer_name,
        "judge_score": judge_score,
        "judge_label": None if passed is None else ("pass" if passed else "fail"),
        "created_at": review.created_at,
        "updated_at": review.updated_at,
    }


def _reviews(run: Run) -> QuerySet[Review]:
    return Review.objects.filter(run=run).annotate(position=F("item__position"), judge_score=_judge_score())


def _interval(prefix: str, interval: Interval | None) -> dict[str, float | None]:
    if interval is None:
        return {prefix: None, f"{prefix}_ci_low": None, f"{prefix}_ci_high": None}
    return {prefix: interval.estimate, f"{prefix}_ci_low": interval.low, f"{prefix}_ci_high": interval.high}


def _evaluator_calibration(found: EvaluatorCalibration) -> dict[str, Any]:
    confusion = found.confusion
    return {
        "name": found.name,
        "reviewed": found.reviewed,
        "reviews": found.reviews,
        "reviewers": found.reviewers,
        **_interval("accuracy", found.accuracy),
        **_interval("kappa", found.kappa),
        "confusion": {
            "judge_pass_human_pass": confusion.judge_pass_human_pass,
            "judge_pass_human_fail": confusion.judge_pass_human_fail,
            "judge_fail_human_pass": confusion.judge_fail_human_pass,
            "judge_fail_human_fail": confusion.judge_fail_human_fail,
        },
        "corrected": found.corrected,
        **_interval("mae", found.mae),
        **_interval("spearman", found.spearman),
        "reviewer_items": found.inter_items,
        **_interval("reviewer_kappa", found.inter_kappa),
        "note": found.note,
    }


def calibration_out(report: CalibrationReport) -> dict[str, Any]:
    return {
        "run": report.run.pk,
        "pooled": report.pooled,
        "runs": list(report.run_ids),
        "evaluators": [_evaluator_calibration(found) for found in report.evaluators],
    }


# --- Reviews ------------------------------------------------------------------------------------------


@router.get(
    "/runs/{int:run_id}/reviews/",
    response={200: ReviewPage, **errors(404, 422)},
    summary="List a run's reviews",
)
def list_reviews(
    request: HttpRequest,
    run_id: int,
    filters: Query[ReviewFilters],
    limit: Limit | None = None,
    cursor: str | None = None,
) -> dict[str, Any]:
    """Every reviewer's reviews of the run's scores, newest first, with the judge's score and verdict."""
    run = run_or_404(run_id, "judge")
    reviews = _reviews(run)
    if filters.evaluator is not None:
        reviews = reviews.filter(evaluator_name=filters.evaluator)
    if filters.reviewer is not None:
        reviews = reviews.filter(reviewer_name=filters.reviewer)
    rows, next_cursor = keyset_page(reviews, cursor=cursor, limit=limit)
    return {"items": [_review_out(run, review) for review in rows], "next_cursor": next_cursor}


@router.post(
    "/runs/{int:run_id}/reviews/",
    response={200: ReviewOut, 201: ReviewOut, **errors(403, 404, 422)},
    summary="Review an item's score",
)
def save_review(request: HttpRequest, run_id: int, payload: ReviewIn) -> Status[dict[str, Any]]:
    """The token's user reviews one evaluator's score of the item at `position`.

    201 with the new review; 200 with the review replaced, when this user had already reviewed that
    score (each person has one review per score; other people's reviews are left alone). 404 when the
    run has no item at `position`; 422 naming the field for an evaluator the run does not have, an
    item that evaluator did not score, or a score outside 0 to 1.
    """
    run = run_or_404(run_id, "judge")
    item = Item.objects.filter(run=run, position=payload.position - 1).first()
    if item is None:
        message = f"Run {run.pk} has no item at position {payload.position}."
        raise Problem(404, message, errors=[{"field": "position", "message": message}])
    item.run = run
    try:
        review, created = review_save(
            item=item,
            evaluator=payload.evaluator,
            reviewer=request.user,
            label=payload.label,
            score=payload.score,
            comment=payload.comment,
        )
    except ReviewError as exc:
        raise Problem.invalid(exc.field, exc.message, detail=f"{exc.field}: {exc.message}") from exc
    saved = _reviews(run).get(pk=review.pk)
    return Status(201 if created else 200, _review_out(run, saved))


# --- Calibration --------------------------------------------------------------------------------------


@router.get(
    "/runs/{int:run_id}/calibration/",
    response={200: CalibrationOut, **errors(404, 422)},
    summary="How far the judge agrees with its reviewers",
)
def get_calibration(request: HttpRequest, run_id: int, pooled: bool = False) -> dict[str, Any]:
    """Per evaluator: the judge's verdict (its score against the run's threshold) against the reviewers',
    as accuracy and Cohen's kappa with 95% bootstrap intervals, the 2x2 confusion matrix, and against
    corrected scores the mean absolute error and Spearman's rho.

    `pooled=true` counts the reviews of every run of this run's judge (`runs` lists them).
    """
    return calibration_out(calibration_report(run=run_or_404(run_id, "judge"), pooled=pooled))


# --- The calibration set ------------------------------------------------------------------------------


def _export(run_id: int, fmt: str, filters: CalibrationSetFilters) -> StreamingHttpResponse:
    run, pooled, evaluator = run_or_404(run_id, "judge"), filters.pooled, filters.evaluator
    runs = calibration_runs(run=run, pooled=pooled)
    if evaluator is not None and evaluator not in reviewed_evaluators(runs):
        known = ", ".join(reviewed_evaluators(runs)) or "none"
        message = f'No run here has an evaluator "{evaluator[:100]}"; its evaluators: {known}.'
        raise Problem.invalid("evaluator", message)
    return download(
        calibration_set_stream(runs=runs, fmt=fmt, evaluator=evaluator),
        content_type=CONTENT_TYPES[fmt],
        filename=calibration_set_filename(run=run, pooled=pooled, fmt=fmt, evaluator=evaluator),
    )


CALIBRATION_SET = (
    "One record per reviewed (item, evaluator), streamed: the example's inputs, `evaluator`, "
    "`expected_score` (the reviewer's corrected score, else 1 for pass and 0 for fail), `human_label`, "
    "`judge_score`, `judge_label`, `reviewer`, `comment`, `reviews`, `run`, `position`, `key`. Where "
    "several people reviewed a score, the most recently changed review counts."
)


@router.get(
    "/runs/{int:run_id}/reviews/export.csv",
    response=errors(404, 422),
    openapi_extra=streamed("text/csv", CALIBRATION_SET),
    summary="Export the reviewed items as CSV",
)
def export_reviews_csv(
    request: HttpRequest,
    run_id: int,
    filters: Query[CalibrationSetFilters],
) -> StreamingHttpResponse:
    """The calibration set: this run's reviewed items, or with `pooled=true` those of every run of its judge."""
    return _export(run_id, "csv", filters)


@router.get(
    "/runs/{int:run_id}/reviews/export.jsonl",
    response=errors(404, 422),
    openapi_extra=streamed("application/x-ndjson", CALIBRATION_SET),
    summary="Export the reviewed items as JSON Lines",
)
def export_reviews_jsonl(
    request: HttpRequest,
    run_id: int,
    filters: Query[CalibrationSetFilters],
) -> StreamingHttpResponse:
    """The calibration set: this run's reviewed items, or with `pooled=true` those of every run of its judge."""
    return _export(run_id, "jsonl", filters)
