"""A dataset family's history: each evaluator's mean per run over time, release after release.

For teammates only (a share link reaches exactly one run, and a family spans several). The chart is SVG
drawn on the server, like the statistics page's histograms: no chart library, no JavaScript.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.http import HttpResponse
from django.shortcuts import render
from django.urls import path, reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.views.decorators.http import require_GET

from dashboard.access import RunAccess, team
from dashboard.http import HtmxHttpRequest
from evals.models import Run
from evals.services.history import FAMILY_SHARE_PERCENT, EvaluatorTrend, family_trend, run_family

# The chart's frame, in viewBox units: as wide as the statistics page's histograms, so that its text
# reads the same size there and on a 390 px phone.
WIDTH, HEIGHT = 360, 206
PLOT_LEFT, PLOT_RIGHT, PLOT_TOP, PLOT_BOTTOM = 30.0, 350.0, 12.0, 150.0
# Run labels under the axis: at most this many, the newest always among them.
MAX_LABELS = 5
LABEL_CHARACTERS = 10


@dataclass(frozen=True)
class TrendChart:
    """The geometry of one evaluator's trend, drawn as SVG on the server."""

    points: list[dict[str, Any]]
    # Runs of the line: consecutive scored runs are joined; a run without scores breaks the line.
    segments: list[str]
    gridlines: list[dict[str, Any]]
    labels: list[dict[str, Any]]
    description: str
    width: int = WIDTH
    height: int = HEIGHT
    left: float = PLOT_LEFT
    right: float = PLOT_RIGHT
    top: float = PLOT_TOP
    bottom: float = PLOT_BOTTOM
    tick_x: float = PLOT_LEFT - 5
    name_y: float = PLOT_BOTTOM + 15
    date_y: float = PLOT_BOTTOM + 26


def _y(value: float) -> float:
    value = min(max(value, 0.0), 1.0)
    return round(PLOT_BOTTOM - (PLOT_BOTTOM - PLOT_TOP) * value, 2)


def _short(text: str, limit: int = LABEL_CHARACTERS) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def run_labels(runs: Sequence[Run]) -> list[str]:
    """Short names for the x axis: the words that tell the runs apart.

    "support-bot v1.0 answers" and "support-bot v2.0 answers" become "v1.0" and "v2.0"; a run without a
    name is "#<id>".
    """
    named = [run.name.split() for run in runs if run.name.strip()]
    prefix = suffix = 0
    if len(named) > 1:
        shortest = min(len(words) for words in named)
        while prefix < shortest - 1 and len({tuple(words[: prefix + 1]) for words in named}) == 1:
            prefix += 1
        while (
            suffix < shortest - prefix - 1
            and len({tuple(words[len(words) - suffix - 1 :]) for words in named}) == 1
        ):
            suffix += 1
        # "release 1", "release 2" keep their first word: a bare "1" says less than the full name.
        while prefix and any(
            not any(character.isalpha() for character in "".join(words[prefix : len(words) - suffix]))
            for words in named
        ):
            prefix -= 1
    labels = []
    for run in runs:
        words = run.name.split()
        if not words:
            labels.append(f"#{run.pk}")
            continue
        kept = words[prefix : len(words) - suffix] or words
        labels.append(_short(" ".join(kept)))
    return labels


def _day(run: Run, fmt: str = "j M") -> str:
    return date_format(timezone.localtime(run.created_at), fmt)


def trend_chart(trend: EvaluatorTrend, *, runs: Sequence[Run], anchor: Run) -> TrendChart:
    """Runs evenly spaced left to right, oldest first (releases come at uneven times); scores 0 to 1 up."""
    count = len(runs)
    slot = (PLOT_RIGHT - PLOT_LEFT) / max(count, 1)
    xs = [round(PLOT_LEFT + (index + 0.5) * slot, 2) for index in range(count)]
    points = []
    segments: list[str] = []
    current: list[str] = []
    described = []
    for x, point in zip(xs, trend.points, strict=True):
        if point is None or point.mean is None:
            if len(current) > 1:
                segments.append(" ".join(current))
            current = []
            continue
        run, interval = point.run, point.interval
        y = _y(point.mean)
        current.append(f"{x},{y}")
        hover = f"{run} · {_day(run, 'j M Y')}: mean {point.mean:.3f}"
        if interval.low is not None and interval.high is not None:
            hover += f", 95% interval {interval.low:.3f} to {interval.high:.3f}"
        hover += f", n = {point.n:,}"
        points.append(
            {
                "x": x,
                "y": y,
                "low_y": _y(interval.low) if interval.low is not None else None,
                "high_y": _y(interval.high) if interval.high is not None else None,
                "cap_left": round(x - 3, 2),
                "cap_right": round(x + 3, 2),
                "hover": hover,
                "is_anchor": run.pk == anchor.pk,
            }
        )
        described.append(f"{run} {point.mean:.2f}")
    if len(current) > 1:
        segments.append(" ".join(current))
    gridlines = [
        {"y": _y(value), "label": f"{value:.1f}", "label_y": round(_y(value) + 3, 2)}
        for value in (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
    ]
    # Every step-th run is labelled, counted back from the newest so that the newest always is.
    step = max(math.ceil(count / MAX_LABELS), 1)
    names = run_labels(runs)
    labels = [
        {"x": xs[index], "name": names[index], "date": _day(run), "is_anchor": run.pk == anchor.pk}
        for index, run in enumerate(runs)
        if (count - 1 - index) % step == 0
    ]
    missing = trend.gaps
    description = (
        f"Mean score of {trend.name} per run, oldest first, on a scale of 0 to 1: "
        + ("; ".join(described) or "no scores")
        + "."
        + (
            f" {missing} run{'s' if missing != 1 else ''} without scores from {trend.name}."
            if missing
            else ""
        )
    )
    return TrendChart(
        points=points, segments=segments, gridlines=gridlines, labels=labels, description=description
    )


@require_GET
def run_history(request: HtmxHttpRequest, access: RunAccess) -> HttpResponse:
    """The run's dataset family: a chart and a table per evaluator, each run linked to its compare."""
    family = run_family(run=access.run)
    anchor = family.anchor
    trend = family_trend(runs=family.runs)
    datasets = list({run.dataset_id: run.dataset for run in family.runs}.values())
    compare = reverse("run_compare")
    sections = []
    for index, evaluator in enumerate(trend.evaluators, start=1):
        rows = []
        for run, point in zip(trend.runs, evaluator.points, strict=True):
            previous = point.previous if point is not None else None
            rows.append(
                {
                    "run": run,
                    "point": point,
                    "share": family.shares.get(run.dataset_id),
                    "compare_url": f"{compare}?a={previous.run.pk}&b={run.pk}" if previous else None,
                    "previous": previous.run if previous else None,
                    "is_anchor": run.pk == anchor.pk,
                }
            )
        sections.append(
            {
                "id": f"trend-{index}",
                "trend": evaluator,
                "chart": trend_chart(evaluator, anchor=anchor, runs=trend.runs),
                "rows": rows,
            }
        )
    return render(
        request,
        "dashboard/run_history.html",
        {
            "access": access,
            "run": access.run,
            "anchor": anchor,
            "family": family,
            "trend": trend,
            "sections": sections,
            "datasets": datasets,
            "related_datasets": len(datasets) - 1,
            "share_percent": FAMILY_SHARE_PERCENT,
        },
    )


urlpatterns = [
    path("runs/<int:pk>/history/", team(run_history), name="run_history"),
]
