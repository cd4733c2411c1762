"""The geometry of the statistics page's charts, drawn as SVG on the server (no chart library, no
JavaScript): pure functions from an evaluator's statistics to coordinates the template places."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from evals.selectors.stats import EvaluatorStats


@dataclass(frozen=True)
class Histogram:
    bars: list[dict[str, Any]]
    ticks: list[dict[str, Any]]
    threshold_x: float
    threshold_label_x: float
    threshold_anchor: str
    description: str
    width: int = 360
    height: int = 168
    base_y: float = 132.0


PLOT_LEFT, PLOT_RIGHT, PLOT_TOP, PLOT_BOTTOM = 12.0, 348.0, 30.0, 132.0


def histogram(stats: EvaluatorStats) -> Histogram:
    span = PLOT_RIGHT - PLOT_LEFT
    slot = span / len(stats.bins)
    peak = stats.peak or 1
    bars = []
    for index, bin_ in enumerate(stats.bins):
        height = (PLOT_BOTTOM - PLOT_TOP) * bin_.count / peak
        # A bin with a few scores in a 100,000-item run still shows as a sliver.
        if bin_.count and height < 1.5:
            height = 1.5
        step = min(int(bin_.middle * 5) + 1, 5)
        bars.append(
            {
                "x": round(PLOT_LEFT + index * slot + 2, 2),
                "y": round(PLOT_BOTTOM - height, 2),
                "width": round(slot - 4, 2),
                "height": round(height, 2),
                "count": bin_.count,
                "label": bin_.label,
                "label_x": round(PLOT_LEFT + (index + 0.5) * slot, 2),
                "label_y": round(PLOT_BOTTOM - height - 4, 2),
                "step": step,
                "share": bin_.count / stats.n if stats.n else 0.0,
            }
        )
    ticks = [
        {"x": round(PLOT_LEFT + span * value, 2), "label": f"{value:g}"}
        for value in (0, 0.2, 0.4, 0.6, 0.8, 1.0)
    ]
    threshold = min(max(stats.threshold, 0.0), 1.0)
    counts = "; ".join(f"{bar['label']}: {bar['count']:,}" for bar in bars)
    description = (
        f"{stats.n:,} scores of {stats.name} in {len(bars)} bins of width 0.1. {counts}. "
        f"Pass threshold {stats.threshold:g}."
    )
    threshold_x = round(PLOT_LEFT + span * threshold, 2)
    # The label sits right of the line, or left of it near the right edge.
    right_side = threshold_x < PLOT_RIGHT - 70
    return Histogram(
        bars=bars,
        ticks=ticks,
        threshold_x=threshold_x,
        threshold_label_x=threshold_x + 3 if right_side else threshold_x - 3,
        threshold_anchor="start" if right_side else "end",
        description=description,
    )


def interval_bar(stats: EvaluatorStats) -> dict[str, str]:
    """Where the confidence interval and the mean sit on a 0-1 scale, as CSS percentages."""

    def percent(value: float) -> str:
        return f"{min(max(value, 0.0), 1.0) * 100:.2f}"

    low, high, mean = stats.interval.low, stats.interval.high, stats.interval.mean
    if low is None or high is None or mean is None:
        return {}
    left = min(max(low, 0.0), 1.0)
    return {
        "left": percent(low),
        "width": f"{max(min(max(high, 0.0), 1.0) - left, 0.004) * 100:.2f}",
        "mean": percent(mean),
    }
