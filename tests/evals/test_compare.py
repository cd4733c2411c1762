"""Comparing two runs, against differences and intervals worked out by hand (written out below)."""

from __future__ import annotations

import pytest

from evals.services.compare import runs_compare
from tests.evals.test_stats import build_run, make_judge

pytestmark = pytest.mark.django_db


def test_a_paired_comparison_worked_by_hand() -> None:
    a = build_run({"Politeness": [0.2, 0.5, 0.9, 0.4]}, name="before")
    judge = a.judge
    b = build_run({"Politeness": [0.6, 0.3, 0.9, 0.8]}, dataset=a.dataset, judge=judge, name="after")
    comparison = runs_compare(a=a, b=b)
    assert comparison.matched_by == "example"
    assert (comparison.matched_a, comparison.only_a, comparison.only_b) == (4, 0, 0)
    assert comparison.warnings == []
    row = comparison.evaluators[0]
    # d = B - A = 0.4, -0.2, 0, 0.4: mean 0.15; deviations .25, -.35, -.15, .25; squares sum to .27;
    # s² = .27 / 3 = .09, s = .3; s/√4 = .15; t(0.975, 3) = 3.182446; half width .477367.
    assert row.n == 4
    assert (row.mean_a, row.mean_b) == (pytest.approx(0.5), pytest.approx(0.65))
    assert row.difference.mean == pytest.approx(0.15)
    assert row.difference.sd == pytest.approx(0.3)
    assert row.difference.low == pytest.approx(-0.327367, abs=1e-6)
    assert row.difference.high == pytest.approx(0.627367, abs=1e-6)
    assert not row.significant and row.direction == "same"
    assert (row.improved, row.regressed, row.unchanged) == (2, 1, 1)
    # Threshold 0.5 (no log told Docket the judge's): A passes 0.5 and 0.9; B passes 0.6, 0.9 and 0.8.
    assert (row.threshold, row.threshold_source) == (0.5, "default")
    assert (row.passed_a, row.passed_b, row.pass_to_fail, row.fail_to_pass) == (2, 3, 1, 2)
    [drop] = row.drops
    assert drop.position == 1
    assert (drop.score_a, drop.score_b) == (0.5, 0.3)
    assert drop.justification_a == "Politeness: 0.5" and drop.justification_b == "Politeness: 0.3"
    assert drop.item_b == b.items.get(position=1).pk


def test_a_consistent_improvement_is_significant() -> None:
    a = build_run({"Politeness": [0.1, 0.2, 0.3, 0.4, 0.5]})
    b = build_run({"Politeness": [0.3, 0.5, 0.5, 0.7, 0.7]}, dataset=a.dataset, judge=a.judge)
    row = runs_compare(a=a, b=b).evaluators[0]
    # d = .2, .3, .2, .3, .2: mean .24; squared deviations 3 × .0016 + 2 × .0036 = .012; s² = .003;
    # s/√5 = .024495; t(0.975, 4) = 2.776445; half width .068008: from .171992 to .308008.
    assert row.difference.mean == pytest.approx(0.24)
    assert row.difference.low == pytest.approx(0.171992, abs=1e-6)
    assert row.difference.high == pytest.approx(0.308008, abs=1e-6)
    assert row.significant and row.direction == "better"
    assert (row.improved, row.regressed, row.unchanged) == (5, 0, 0)
    # And the other way round it is significantly worse.
    assert runs_compare(a=b, b=a).evaluators[0].direction == "worse"


def test_runs_over_different_datasets_pair_by_content_and_say_what_did_not_match() -> None:
    requests_a = ["alpha", "bravo", "charlie", "delta", "echo"]
    # B has four of A's rows, in another order, and one row A does not have.
    requests_b = ["delta", "foxtrot", "bravo", "alpha", "charlie"]
    a = build_run({"Politeness": [0.9, 0.8, 0.7, 0.6, 0.5]}, requests=requests_a, responses=["same"] * 5)
    b = build_run({"Politeness": [0.1, 0.2, 0.8, 0.9, 0.7]}, requests=requests_b, responses=["same"] * 5)
    comparison = runs_compare(a=a, b=b)
    assert comparison.matched_by == "content"
    assert (comparison.matched_a, comparison.matched_b, comparison.only_a, comparison.only_b) == (4, 4, 1, 1)
    assert any(
        "4 items of A matched by content hash, 1 only in A, 1 only in B" in w for w in comparison.warnings
    )
    # The runs also came from two judges, which the comparison must say.
    assert any("different judges" in w for w in comparison.warnings)
    row = comparison.evaluators[0]
    # Pairs (A, B): alpha (0.9, 0.9), bravo (0.8, 0.8), charlie (0.7, 0.7), delta (0.6, 0.1).
    assert row.n == 4
    assert row.difference.mean == pytest.approx(-0.125)
    assert (row.improved, row.regressed, row.unchanged) == (0, 1, 3)
    assert [(d.position, d.score_a, d.score_b) for d in row.drops] == [(3, 0.6, 0.1)]


def test_a_different_judge_version_and_evaluator_set_are_warned_about() -> None:
    judge = make_judge("Support", version="v1", evaluators=["Politeness", "Concision"])
    a = build_run({"Politeness": [0.5, 0.6], "Concision": [0.5, 0.5]}, judge=judge)
    b = build_run({"Politeness": [0.5, 0.6], "Safety": [1.0, 1.0]}, dataset=a.dataset, judge=judge)
    # The same judge, pinned at a newer version when B started.
    b.judge_version_id = "v2"
    b.save(update_fields=["judge_version_id"])
    comparison = runs_compare(a=a, b=b)
    text = " ".join(comparison.warnings)
    assert "different versions of Support (v1 and v2)" in text
    assert "only in A: Concision" in text and "only in B: Safety" in text
    assert [row.name for row in comparison.evaluators] == ["Politeness"]


def test_pass_to_fail_items_come_largest_drop_first_with_both_justifications() -> None:
    a = build_run({"Politeness": [0.9, 0.6, 1.0, 0.8, 0.2]})
    b = build_run(
        {"Politeness": [0.4, 0.3, 0.2, 0.85, 0.1]},
        dataset=a.dataset,
        judge=a.judge,
        justification=lambda name, position, score: f"B says row {position} scored {score}",
    )
    row = runs_compare(a=a, b=b, thresholds={"Politeness": 0.5}).evaluators[0]
    assert row.threshold_source == "url"
    # Drops: row 2 by 0.8, row 0 by 0.5, row 1 by 0.3; row 3 still passes; row 4 never passed.
    assert [(d.position, round(d.drop, 6)) for d in row.drops] == [(2, 0.8), (0, 0.5), (1, 0.3)]
    assert row.drops[0].justification_a == "Politeness: 1.0"
    assert row.drops[0].justification_b == "B says row 2 scored 0.2"


def test_comparing_a_run_with_itself_shows_no_difference() -> None:
    run = build_run({"Politeness": [0.2, 0.4, 0.9]})
    comparison = runs_compare(a=run, b=run)
    row = comparison.evaluators[0]
    assert row.difference.mean == 0 and row.difference.sd == 0 and not row.significant
    assert row.unchanged == 3
    assert "same run" in comparison.warnings[0]


def test_a_row_uploaded_twice_pairs_with_its_first_occurrence() -> None:
    a = build_run({"Politeness": [0.5, 0.5]}, requests=["alpha", "bravo"], responses=["same"] * 2)
    # "alpha" appears twice in B (rows 0 and 2); A's alpha pairs with row 0 only.
    b = build_run(
        {"Politeness": [0.9, 0.1, 0.2]}, requests=["alpha", "bravo", "alpha"], responses=["same"] * 3
    )
    comparison = runs_compare(a=a, b=b)
    assert (comparison.matched_a, comparison.matched_b) == (2, 3)
    row = comparison.evaluators[0]
    # Pairs: alpha (0.5, 0.9), bravo (0.5, 0.1): d = 0.4, -0.4.
    assert row.n == 2 and row.difference.mean == pytest.approx(0.0)
    assert (row.improved, row.regressed) == (1, 1)
    [drop] = row.drops
    assert (drop.position, drop.score_b, drop.item_b) == (1, 0.1, b.items.get(position=1).pk)
