"""The calibration report of a run: how far its judge agrees with reviewers, per evaluator, and how noisy
it is run to run. Team only: it names reviewers, so it is never mounted under a share link."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.http import HttpResponse
from django.shortcuts import render
from django.urls import path, reverse
from django.views.decorators.http import require_GET

from dashboard.access import RunAccess, team
from dashboard.http import HtmxHttpRequest
from evals.models import Run
from evals.services.calibration import (
    CELL_LABELS,
    CELLS,
    CalibrationError,
    CellItem,
    EvaluatorCalibration,
    calibration_cell_items,
    calibration_report,
)
from evals.services.intervals import Interval
from evals.services.noise import noise_report

POOLED_ON = ("1", "true", "on", "yes")
POOLED_OFF = ("", "0", "false", "off", "no")


def _number(value: float, digits: int) -> str:
    text = f"{value:.{digits}f}"
    if text.startswith("-"):
        # A typographic minus; and no "−0.00" for a value that rounds to zero.
        text = text[1:] if float(text) == 0 else "\u2212" + text[1:]
    return text


def interval_text(interval: Interval | None, digits: int = 2) -> str:
    """ "0.80 (95% CI 0.66–0.92)"; the estimate alone when there is no interval; "—" when unknown.
    With a negative bound the range reads "−0.25 to 0.31", which a dash between two minuses would not."""
    if interval is None or interval.estimate is None:
        return "\u2014"
    text = _number(interval.estimate, digits)
    if interval.low is None or interval.high is None:
        return text
    low, high = _number(interval.low, digits), _number(interval.high, digits)
    between = " to " if low.startswith("\u2212") else "\u2013"
    return f"{text} (95% CI {low}{between}{high})"


def _review_url(run_id: int, item_id: int | None = None) -> str:
    """Review mode of a run, or of one of its items."""
    url = reverse("run_review", args=[run_id])
    return f"{url}?item={item_id}" if item_id is not None else url


def _cell_link(evaluator: str, cell: str, pooled: bool) -> str:
    params = {"evaluator": evaluator, "cell": cell}
    if pooled:
        params["pooled"] = "1"
    return "?" + urlencode(params) + "#cell"


def _card(evaluator: EvaluatorCalibration, pooled: bool) -> dict[str, Any]:
    # Rows: the judge's verdict; columns: the reviewer's. The diagonal is agreement.
    matrix = []
    for judge in ("pass", "fail"):
        cells = []
        for human in ("pass", "fail"):
            cell = f"judge_{judge}_human_{human}"
            cells.append(
                {
                    "cell": cell,
                    "count": getattr(evaluator.confusion, cell),
                    "agrees": judge == human,
                    "label": CELL_LABELS[cell],
                    "url": _cell_link(evaluator.name, cell, pooled),
                }
            )
        matrix.append({"judge": judge, "cells": cells})
    return {
        "calibration": evaluator,
        "accuracy": interval_text(evaluator.accuracy),
        "kappa": interval_text(evaluator.kappa),
        "mae": interval_text(evaluator.mae, 3),
        "spearman": interval_text(evaluator.spearman),
        "inter_kappa": interval_text(evaluator.inter_kappa),
        "matrix": matrix,
        "thresholds": ", ".join(f"{value:g}" for value in evaluator.thresholds),
    }


def _cell_rows(rows: list[CellItem]) -> list[dict[str, Any]]:
    return [
        {
            "row": row,
            "item_url": reverse("run_item", args=[row.run_id, row.item_id]),
            "review_url": _review_url(row.run_id, row.item_id),
        }
        for row in rows
    ]


@require_GET
def run_calibration(request: HtmxHttpRequest, access: RunAccess) -> HttpResponse:
    run = access.run
    errors: list[str] = []
    asked_pooled = request.GET.get("pooled", "").strip().lower()
    pooled = asked_pooled in POOLED_ON
    if asked_pooled not in POOLED_ON + POOLED_OFF:
        errors.append(f'pooled: "{asked_pooled[:20]}" is neither 1 nor 0; showing this run only.')
    report = calibration_report(run=run, pooled=pooled)

    evaluator = request.GET.get("evaluator")
    cell = request.GET.get("cell")
    cell_list: dict[str, Any] | None = None
    if evaluator is not None or cell is not None:
        if not evaluator or not cell:
            missing = "evaluator" if not evaluator else "cell"
            errors.append(f"{missing}: a cell list needs both an evaluator and a cell of its matrix.")
        else:
            try:
                rows, total = calibration_cell_items(run=run, pooled=pooled, evaluator=evaluator, cell=cell)
            except CalibrationError as exc:
                errors.append(f"{exc.field}: {exc.message}")
            else:
                back = "?pooled=1" if pooled else "?"
                cell_list = {
                    "evaluator": evaluator,
                    "cell": cell,
                    "label": CELL_LABELS[cell],
                    "rows": _cell_rows(rows),
                    "total": total,
                    "reviews": sum(len(row.reviews) for row in rows),
                    "back": back,
                }

    pooled_runs = list(Run.objects.filter(pk__in=report.run_ids).only("id", "name").order_by("id"))
    response = render(
        request,
        "dashboard/run_calibration.html",
        {
            "access": access,
            "run": run,
            "report": report,
            "cards": [_card(evaluator, pooled) for evaluator in report.evaluators],
            "pooled": pooled,
            "pooled_runs": pooled_runs,
            "cell_list": cell_list,
            "cells": CELLS,
            "errors": errors,
            "review_url": _review_url(run.pk),
            "noise": noise_report(run=run),
            "noise_plan": None,
        },
    )
    if errors:
        response.status_code = 400
    return response


urlpatterns = [
    path("runs/<int:pk>/calibration/", team(run_calibration), name="run_calibration"),
]
