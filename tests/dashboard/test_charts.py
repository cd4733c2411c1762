"""The statistics page's chart geometry: bars in proportion, thin bins still visible, the threshold line
and the confidence bar kept inside the plot."""

from __future__ import annotations

from dashboard.charts import PLOT_BOTTOM, PLOT_LEFT, PLOT_RIGHT, PLOT_TOP, histogram, interval_bar
from evals.selectors.stats import Bin, EvaluatorStats
from evals.services.intervals import MeanInterval


def stats(
    counts: list[int],
    *,
    threshold: float = 0.5,
    low: float | None = 0.4,
    high: float | None = 0.6,
    mean: float | None = 0.5,
) -> EvaluatorStats:
    bins = [Bin(low=i / 10, high=(i + 1) / 10, count=count) for i, count in enumerate(counts)]
    return EvaluatorStats(
        name="Politeness",
        interval=MeanInterval(n=sum(counts), mean=mean, sd=0.1, low=low, high=high),
        median=mean,
        minimum=0.0,
        maximum=1.0,
        threshold=threshold,
        threshold_source="judge",
        passed=0,
        unscored=0,
        bins=bins,
    )


def test_the_fullest_bin_fills_the_plot_and_the_others_are_in_proportion() -> None:
    chart = histogram(stats([0, 10, 5, 0, 0, 0, 0, 0, 0, 0]))
    heights = [bar["height"] for bar in chart.bars]
    assert heights[1] == PLOT_BOTTOM - PLOT_TOP
    assert heights[2] == (PLOT_BOTTOM - PLOT_TOP) / 2
    assert heights[0] == 0
    assert all(round(bar["y"] + bar["height"], 2) == PLOT_BOTTOM for bar in chart.bars)


def test_a_bin_with_one_score_among_many_still_shows_as_a_sliver() -> None:
    chart = histogram(stats([100_000, 1, 0, 0, 0, 0, 0, 0, 0, 0]))
    assert chart.bars[1]["height"] == 1.5
    assert chart.bars[2]["height"] == 0


def test_the_description_reads_every_bin_and_the_threshold() -> None:
    chart = histogram(stats([1, 2, 0, 0, 0, 0, 0, 0, 0, 1200], threshold=0.7))
    assert chart.description.startswith("1,203 scores of Politeness in 10 bins of width 0.1.")
    assert "0.9–1.0: 1,200" in chart.description
    assert chart.description.endswith("Pass threshold 0.7.")


def test_the_threshold_line_stays_in_the_plot_and_its_label_turns_at_the_right_edge() -> None:
    low = histogram(stats([1] * 10, threshold=-3))
    assert low.threshold_x == PLOT_LEFT
    assert (low.threshold_anchor, low.threshold_label_x) == ("start", PLOT_LEFT + 3)
    high = histogram(stats([1] * 10, threshold=2))
    assert high.threshold_x == PLOT_RIGHT
    assert (high.threshold_anchor, high.threshold_label_x) == ("end", PLOT_RIGHT - 3)


def test_the_interval_bar_is_clamped_to_the_scale_and_never_vanishes() -> None:
    assert interval_bar(stats([1] * 10, low=0.25, high=0.75, mean=0.5)) == {
        "left": "25.00",
        "width": "50.00",
        "mean": "50.00",
    }
    assert interval_bar(stats([1] * 10, low=-0.5, high=1.5, mean=0.5))["width"] == "100.00"
    assert interval_bar(stats([1] * 10, low=0.5, high=0.5, mean=0.5))["width"] == "0.40"


def test_no_interval_draws_no_bar() -> None:
    assert interval_bar(stats([1] * 10, low=None, high=None, mean=None)) == {}
