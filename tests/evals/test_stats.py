"""Run statistics against numbers worked out by hand (written out below), and the run builder the
results tests share: a completed run made directly with bulk_create, no judge involved."""

from __future__ import annotations

import pytest
from django.http import QueryDict

from evals.models import Item
from evals.selectors.stats import run_statistics, thresholds_from_params
from evals.services.intervals import incomplete_beta, mean_interval, mean_interval_of, t_quantile
from tests.factories import build_run


@pytest.mark.parametrize(
    ("df", "expected"),
    [
        # Two-sided 95% critical values as printed in any t table.
        (1, 12.7062),
        (2, 4.3027),
        (3, 3.1824),
        (4, 2.7764),
        (9, 2.2622),
        (29, 2.0452),
        (100, 1.9840),
        (1000, 1.9623),
        (100_000, 1.9600),
    ],
)
def test_t_quantile_matches_the_printed_table(df: int, expected: float) -> None:
    assert t_quantile(0.975, df) == pytest.approx(expected, abs=5e-5)


def test_t_quantile_is_symmetric_and_the_incomplete_beta_has_known_values() -> None:
    assert t_quantile(0.025, 4) == pytest.approx(-2.7764451, abs=1e-6)
    assert t_quantile(0.5, 7) == 0.0
    # I_x(1, 1) = x; I_x(2, 1) = x²; I_0.5(a, a) = 1/2.
    assert incomplete_beta(0.3, 1, 1) == pytest.approx(0.3)
    assert incomplete_beta(0.3, 2, 1) == pytest.approx(0.09)
    assert incomplete_beta(0.5, 7.5, 7.5) == pytest.approx(0.5)


def test_mean_interval_worked_by_hand() -> None:
    # 0.2, 0.4, 0.6, 0.8, 1.0: mean 0.6; squared deviations .16 + .04 + 0 + .04 + .16 = .4;
    # variance .4 / 4 = .1; s = .316228; s/√5 = √.02 = .141421; t(0.975, 4) = 2.776445;
    # half width 2.776445 × .141421 = .392649: from .207351 to .992649.
    interval = mean_interval_of([0.2, 0.4, 0.6, 0.8, 1.0])
    assert interval.n == 5
    assert interval.mean == pytest.approx(0.6)
    assert interval.sd == pytest.approx(0.316228, abs=1e-6)
    assert interval.low == pytest.approx(0.207351, abs=1e-6)
    assert interval.high == pytest.approx(0.992649, abs=1e-6)
    assert interval.excludes_zero


def test_mean_interval_needs_two_values_and_survives_equal_ones() -> None:
    assert mean_interval(0, 0.0, 0.0).mean is None
    one = mean_interval(1, 0.7, 0.49)
    assert one.mean == pytest.approx(0.7) and one.low is None and one.high is None
    # Five equal values: the variance is 0 (not a hair below it, which would fail the square root).
    same = mean_interval_of([0.1] * 5)
    assert same.sd == 0.0 and same.low == pytest.approx(0.1) and same.high == pytest.approx(0.1)


# --- A run's statistics ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_run_statistics_worked_by_hand() -> None:
    run = build_run(
        {
            # Row 5 failed: no score at all.
            "Politeness": [0.2, 0.4, 0.6, 0.8, 1.0, None],
            # Even n: the median is the mean of the two middle values, (0.3 + 0.5) / 2 = 0.4.
            "Concision": [0.1, 0.3, 0.5, 0.9, None, None],
        }
    )
    stats = {entry.name: entry for entry in run_statistics(run=run).evaluators}
    polite = stats["Politeness"]
    assert polite.n == 5 and polite.unscored == 1
    assert polite.mean == pytest.approx(0.6)
    assert polite.interval.low == pytest.approx(0.207351, abs=1e-6)
    assert polite.interval.high == pytest.approx(0.992649, abs=1e-6)
    assert polite.median == pytest.approx(0.6)
    assert (polite.minimum, polite.maximum) == (0.2, 1.0)
    # Not learned from the judge yet: 0.5 until then, and said to be pending. 0.6, 0.8 and 1.0 pass.
    assert (polite.threshold, polite.threshold_source) == (0.5, "pending")
    assert polite.passed == 3 and polite.pass_rate == pytest.approx(0.6)
    # Bins of 0.1; 0.6 belongs to [0.6, 0.7) (not the bin below), 1.0 to the last bin.
    assert [b.count for b in polite.bins] == [0, 0, 1, 0, 1, 0, 1, 0, 1, 1]

    concise = stats["Concision"]
    assert concise.n == 4 and concise.unscored == 2
    assert concise.mean == pytest.approx(0.45)
    assert concise.median == pytest.approx(0.4)
    assert concise.passed == 2  # 0.5 and 0.9
    assert [b.count for b in concise.bins] == [0, 1, 0, 1, 0, 1, 0, 0, 0, 1]


@pytest.mark.django_db
def test_the_threshold_is_the_runs_own_and_a_url_threshold_overrides_it() -> None:
    run = build_run(
        {"Politeness": [0.2, 0.4, 0.6, 0.8, 1.0], "Concision": [0.5, 0.5, 0.5, 0.5, 0.5]},
        thresholds={"Politeness": 0.7},
    )
    stats = {entry.name: entry for entry in run_statistics(run=run).evaluators}
    assert (stats["Politeness"].threshold, stats["Politeness"].threshold_source) == (0.7, "judge")
    assert stats["Politeness"].passed == 2  # 0.8 and 1.0
    # Learned, and the judge's log named no threshold for Concision: the default, said so.
    assert (stats["Concision"].threshold, stats["Concision"].threshold_source) == (0.5, "default")
    assert stats["Concision"].passed == 5  # 0.5 >= 0.5

    # The URL overrides: one evaluator's own parameter over the general one; junk is ignored.
    params = QueryDict("threshold=0.55&threshold.Politeness=0.9&threshold.Nobody=0.1")
    chosen = thresholds_from_params(params, run.evaluators)
    assert chosen == {"Politeness": 0.9, "Concision": 0.55}
    stats = {entry.name: entry for entry in run_statistics(run=run, thresholds=chosen).evaluators}
    assert (stats["Politeness"].passed, stats["Politeness"].threshold_source) == (1, "override")
    assert (stats["Concision"].passed, stats["Concision"].threshold_source) == (0, "override")
    assert thresholds_from_params(QueryDict("threshold=abc&threshold.Politeness=nan"), run.evaluators) == {}


@pytest.mark.django_db
def test_an_execution_log_kept_on_an_item_moves_no_threshold() -> None:
    """The issue's complaint: pass rates moved when someone fetched a log on the item page."""
    learned = build_run({"Politeness": [0.2, 0.4, 0.6, 0.8, 1.0]}, thresholds={})
    pending = build_run({"Politeness": [0.2, 0.4, 0.6, 0.8, 1.0]})
    before = [run_statistics(run=run).evaluators[0] for run in (learned, pending)]
    for run in (learned, pending):
        Item.objects.filter(run=run, position=3).update(
            log_detail={"cost": 0.01, "model": "m", "thresholds": {"Politeness": 0.7}}
        )
    after = [run_statistics(run=run).evaluators[0] for run in (learned, pending)]
    assert [(s.threshold, s.threshold_source, s.passed) for s in before] == [
        (0.5, "default", 3),
        (0.5, "pending", 3),
    ]
    assert after == before


@pytest.mark.django_db
def test_slices_of_a_metadata_column_come_worst_first() -> None:
    topics = ["billing", "billing", "shipping", "shipping", "shipping", "login"]
    run = build_run(
        {"Politeness": [0.9, 0.7, 0.2, 0.4, 0.6, 1.0]},
        metadata=lambda position: {"topic": topics[position], "tier": "gold"},
    )
    stats = run_statistics(run=run, slice_column="topic").evaluators[0]
    # shipping: (0.2 + 0.4 + 0.6) / 3 = 0.4, one of three passes; billing 0.8, both pass; login 1.0.
    assert [(row.value, row.n) for row in stats.slices] == [("shipping", 3), ("billing", 2), ("login", 1)]
    assert [row.mean for row in stats.slices] == pytest.approx([0.4, 0.8, 1.0])
    assert [row.passed for row in stats.slices] == [1, 2, 1]
    assert stats.slice_values == 3
    # A column the dataset does not have is not a slice (and not an SQL error).
    assert run_statistics(run=run, slice_column="nope").slice_column is None


@pytest.mark.django_db
def test_the_latest_view_counts_the_retry_verdicts() -> None:
    first = build_run({"Politeness": [0.2, None, 0.6]})
    # The retry scores row 1, which failed the first time.
    retry = build_run(
        {"Politeness": [0.9]}, dataset=first.dataset, judge=first.judge, retry_of=first, positions=[1]
    )
    assert retry.retry_of == first
    own = run_statistics(run=first).evaluators[0]
    assert own.n == 2 and own.mean == pytest.approx(0.4)
    latest = run_statistics(run=first, latest=True)
    assert latest.items == 3
    merged = latest.evaluators[0]
    # 0.2, 0.9, 0.6: mean 0.566667, median 0.6.
    assert merged.n == 3 and merged.unscored == 0
    assert merged.mean == pytest.approx(1.7 / 3)
    assert merged.median == pytest.approx(0.6)


@pytest.mark.django_db
def test_a_run_without_scores_has_empty_statistics() -> None:
    run = build_run({"Politeness": [None, None]})
    stats = run_statistics(run=run).evaluators[0]
    assert stats.n == 0 and stats.mean is None and stats.median is None and stats.pass_rate is None
    assert stats.unscored == 2 and sum(b.count for b in stats.bins) == 0
