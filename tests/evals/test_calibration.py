"""The calibration report against worked examples: Cohen's kappa and its bootstrap interval, Fleiss'
kappa on a textbook table and on reviews with a varying number of reviewers, Spearman's rho with ties,
thresholds per run, pooling over the runs of one judge, and the item lists behind the matrix."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import connection
from django.test.utils import CaptureQueriesContext

from evals.models import Review
from evals.services.agreement import (
    Confusion,
    accuracy,
    average_ranks,
    cohen_kappa,
    fleiss_kappa,
    kappa_reading,
    spearman,
)
from evals.services.calibration import CalibrationError, calibration_cell_items, calibration_report
from evals.services.reviews import review_save
from tests.factories import (
    NAME,
    WORKED_LABELS,
    build_run,
    items_of,
    make_judge,
    review_all,
    worked_example_run,
)

pytestmark = pytest.mark.django_db


def person(username: str) -> AbstractBaseUser:
    return get_user_model().objects.create_user(username=username, password="a-long-test-password")


# --- The statistics on plain numbers --------------------------------------------------------------------


def test_cohen_kappa_of_the_worked_table() -> None:
    table = Confusion(
        judge_pass_human_pass=20, judge_pass_human_fail=5, judge_fail_human_pass=10, judge_fail_human_fail=15
    )
    # po = (20 + 15) / 50 = 0.70. Judge passes 25 of 50, reviewers pass 30 of 50:
    # pe = 0.5 * 0.6 + 0.5 * 0.4 = 0.50. kappa = (0.70 - 0.50) / (1 - 0.50) = 0.40.
    assert accuracy(table) == pytest.approx(0.70)
    assert cohen_kappa(table) == pytest.approx(0.40)


def test_cohen_kappa_is_negative_below_chance_and_undefined_when_chance_is_certain() -> None:
    # Always disagreeing, with balanced marginals: po = 0, pe = 0.5 * 0.5 + 0.5 * 0.5 = 0.5, kappa = -1.
    assert cohen_kappa(Confusion(0, 5, 5, 0)) == pytest.approx(-1.0)
    # Everyone says pass: pe = 1 * 1 + 0 * 0 = 1, so (po - pe) / (1 - pe) is 0 / 0.
    assert cohen_kappa(Confusion(7, 0, 0, 0)) is None
    assert cohen_kappa(Confusion(0, 0, 0, 7)) is None
    # The judge always passes, reviewers always fail: pe = 1 * 0 + 0 * 1 = 0, kappa = (0 - 0) / 1 = 0.
    assert cohen_kappa(Confusion(0, 7, 0, 0)) == pytest.approx(0.0)
    assert cohen_kappa(Confusion()) is None


def test_fleiss_kappa_of_the_textbook_table() -> None:
    # Fleiss (1971) as worked on Wikipedia's "Fleiss' kappa" page: 10 subjects, 14 raters, 5 categories.
    table = [
        [0, 0, 0, 0, 14],
        [0, 2, 6, 4, 2],
        [0, 0, 3, 5, 6],
        [0, 3, 9, 2, 0],
        [2, 2, 8, 1, 1],
        [7, 7, 0, 0, 0],
        [3, 2, 6, 3, 0],
        [2, 5, 3, 2, 2],
        [6, 5, 2, 1, 0],
        [0, 2, 2, 3, 7],
    ]
    # p_j = 20/140, 28/140, 39/140, 21/140, 32/140 = 0.143, 0.200, 0.279, 0.150, 0.229: P_e = 0.2128.
    # P_i = 1.000, 0.253, 0.308, 0.440, 0.330, 0.462, 0.242, 0.176, 0.286, 0.286: P̄ = 0.3780.
    # kappa = (0.3780 - 0.2128) / (1 - 0.2128) = 0.210.
    assert fleiss_kappa(table) == pytest.approx(0.210, abs=5e-4)


def test_fleiss_kappa_needs_two_items_and_some_disagreement_somewhere() -> None:
    assert fleiss_kappa([(2, 1)]) is None
    # Every rating in one category: P_e = 1.
    assert fleiss_kappa([(2, 0), (3, 0)]) is None
    # Items rated once say nothing about agreement and are left out.
    assert fleiss_kappa([(1, 0), (0, 1), (2, 0)]) is None


def test_average_ranks_share_the_mean_rank_of_a_tie() -> None:
    # 0.1 is first; the three 0.4s span ranks 2, 3 and 4 and get (2 + 3 + 4) / 3 = 3 each.
    assert average_ranks([0.4, 0.1, 0.4, 0.4]) == [3.0, 1.0, 3.0, 3.0]


def test_spearman_with_ties_by_hand() -> None:
    pairs = [(0.1, 0.2), (0.4, 0.2), (0.4, 0.6), (0.8, 0.5), (0.9, 1.0)]
    # Ranks of x: 1, 2.5, 2.5, 4, 5. Ranks of y: 1.5, 1.5, 4, 3, 5. Both have mean 3.
    # Deviations x: -2, -0.5, -0.5, 1, 2; y: -1.5, -1.5, 1, 0, 2.
    # Σdxdy = 3 + 0.75 - 0.5 + 0 + 4 = 7.25; Σdx² = 9.5; Σdy² = 9.5. rho = 7.25 / 9.5 = 29/38 = 0.7632.
    assert spearman(pairs) == pytest.approx(29 / 38)
    assert spearman(pairs[:2]) is None
    assert spearman([(0.1, 0.5), (0.2, 0.5), (0.3, 0.5)]) is None


@pytest.mark.parametrize(
    ("kappa", "words"),
    [
        (-0.1, "poor: worse than chance"),
        (0.1, "slight"),
        (0.4, "fair"),
        (0.4000000001, "fair"),
        (0.41, "moderate"),
        (0.7, "substantial"),
        (0.81, "almost perfect"),
        (None, ""),
    ],
)
def test_kappa_reading_uses_landis_and_koch(kappa: float | None, words: str) -> None:
    assert kappa_reading(kappa) == words


# --- The report -----------------------------------------------------------------------------------------


def test_report_gives_the_worked_kappa_with_a_bootstrap_interval_near_the_asymptotic_one() -> None:
    run = worked_example_run()
    review_all(run, WORKED_LABELS, reviewer=person("ada"))
    (helpfulness,) = calibration_report(run=run).evaluators
    assert helpfulness.name == NAME
    assert (helpfulness.reviewed, helpfulness.reviews, helpfulness.reviewers) == (50, 50, 1)
    assert helpfulness.confusion == Confusion(20, 5, 10, 15)
    assert helpfulness.accuracy.estimate == pytest.approx(0.70)
    assert helpfulness.kappa.estimate == pytest.approx(0.40)
    assert helpfulness.kappa_reading == "fair"
    # Asymptotic: 1.96 · sqrt(po(1 - po) / (n(1 - pe)²)) = 1.96 · sqrt(0.21 / (50 · 0.25)) = 0.254,
    # so about 0.146 to 0.654. The bootstrap's percentiles come within 0.06 of it.
    assert helpfulness.kappa.low == pytest.approx(0.40 - 0.254, abs=0.06)
    assert helpfulness.kappa.high == pytest.approx(0.40 + 0.254, abs=0.06)
    # Accuracy: 1.96 · sqrt(0.7 · 0.3 / 50) = 0.127, so about 0.573 to 0.827.
    assert helpfulness.accuracy.low == pytest.approx(0.70 - 0.127, abs=0.05)
    assert helpfulness.accuracy.high == pytest.approx(0.70 + 0.127, abs=0.05)
    assert helpfulness.corrected == 0
    assert helpfulness.mae is None and helpfulness.spearman is None
    assert helpfulness.inter_kappa is None and helpfulness.inter_items == 0
    assert helpfulness.note == ""
    assert helpfulness.thresholds == (0.5,)


def test_kappa_is_undefined_and_says_why_when_everyone_says_pass() -> None:
    run = build_run({NAME: [0.9, 0.8, 0.7]}, thresholds={NAME: 0.5})
    review_all(run, ["pass", "pass", "pass"], reviewer=person("ada"))
    (helpfulness,) = calibration_report(run=run).evaluators
    assert helpfulness.accuracy.estimate == pytest.approx(1.0)
    assert helpfulness.kappa.estimate is None
    assert "every judge verdict and every review is pass" in helpfulness.note.lower()
    assert helpfulness.kappa_reading == ""


def test_an_evaluator_nobody_reviewed_is_listed_with_nothing_to_say() -> None:
    run = build_run({NAME: [0.9, 0.2], "Safety": [0.9, 0.9]}, thresholds={NAME: 0.5, "Safety": 0.5})
    review_all(run, ["pass", "fail"], reviewer=person("ada"))
    helpfulness, safety = calibration_report(run=run).evaluators
    assert helpfulness.reviews == 2
    assert (safety.name, safety.reviewed, safety.reviews) == ("Safety", 0, 0)
    assert safety.accuracy.estimate is None and safety.kappa.estimate is None
    assert safety.note == ""


def test_reviews_of_one_item_by_several_people_count_as_pairs_and_fleiss_kappa_between_them() -> None:
    run = build_run({NAME: [0.9, 0.9, 0.1, 0.9, 0.9]}, thresholds={NAME: 0.5})
    ada, bob, cy = person("ada"), person("bob"), person("cy")
    review_all(run, ["pass", "pass", "fail", "pass", "pass"], reviewer=ada)
    review_all(run, ["pass", "fail", "fail", "pass", None], reviewer=bob)
    review_all(run, ["pass", None, None, "fail", None], reviewer=cy)
    (helpfulness,) = calibration_report(run=run).evaluators
    # Items: (pass, pass, pass) (pass, fail) (fail, fail) (pass, pass, fail) (pass): 11 reviews of 5 items.
    assert (helpfulness.reviewed, helpfulness.reviews, helpfulness.reviewers) == (5, 11, 3)
    # Judge: pass, pass, fail, pass, pass. Pairs: pp = 3 + 1 + 2 + 1 = 7, pf = 1 + 1 = 2, ff = 2.
    assert helpfulness.confusion == Confusion(7, 2, 0, 2)
    # Fleiss over the 4 items with 2+ reviews, counts (pass, fail): (3,0) (1,1) (0,2) (2,1).
    # P_i = 6/6 = 1, 0/2 = 0, 2/2 = 1, 2/6 = 1/3; P̄ = (7/3) / 4 = 7/12.
    # p_pass = 6/10, p_fail = 4/10: P_e = 0.36 + 0.16 = 0.52 = 13/25.
    # kappa = (7/12 - 13/25) / (12/25) = (19/300) · (25/12) = 19/144 = 0.1319.
    assert helpfulness.inter_items == 4
    assert helpfulness.inter_kappa is not None
    assert helpfulness.inter_kappa.estimate == pytest.approx(19 / 144)
    assert helpfulness.inter_kappa.low is not None and helpfulness.inter_kappa.high is not None
    assert helpfulness.inter_kappa.low <= 19 / 144 <= helpfulness.inter_kappa.high


def test_a_reviewer_whose_account_was_deleted_still_counts_by_name() -> None:
    run = build_run({NAME: [0.9, 0.2]}, thresholds={NAME: 0.5})
    ada, bob = person("ada"), person("bob")
    review_all(run, ["pass", "fail"], reviewer=ada)
    review_all(run, ["fail", "fail"], reviewer=bob)
    bob.delete()
    assert Review.objects.filter(reviewer__isnull=True, reviewer_name="bob").count() == 2
    (helpfulness,) = calibration_report(run=run).evaluators
    assert (helpfulness.reviews, helpfulness.reviewers, helpfulness.inter_items) == (4, 2, 2)


def test_corrected_scores_give_mae_and_spearman_with_ties() -> None:
    run = build_run({NAME: [0.1, 0.4, 0.4, 0.8, 0.9, 0.6]}, thresholds={NAME: 0.5})
    review_all(
        run,
        ["fail", "fail", "pass", "pass", "pass", "pass"],
        reviewer=person("ada"),
        scores=[0.2, 0.2, 0.6, 0.5, 1.0, None],
    )
    (helpfulness,) = calibration_report(run=run).evaluators
    assert helpfulness.reviews == 6
    assert helpfulness.corrected == 5
    # |0.2 - 0.1| + |0.2 - 0.4| + |0.6 - 0.4| + |0.5 - 0.8| + |1.0 - 0.9| = 0.1 + 0.2 + 0.2 + 0.3 + 0.1
    # = 0.9, over 5: MAE = 0.18. The sixth review gave no score and is not counted.
    assert helpfulness.mae is not None
    assert helpfulness.mae.estimate == pytest.approx(0.18)
    assert helpfulness.mae.low is not None and helpfulness.mae.high is not None
    assert 0.1 <= helpfulness.mae.low <= 0.18 <= helpfulness.mae.high <= 0.3
    # The pairs of test_spearman_with_ties_by_hand: 29/38.
    assert helpfulness.spearman is not None
    assert helpfulness.spearman.estimate == pytest.approx(29 / 38)


def test_spearman_needs_three_corrected_scores() -> None:
    run = build_run({NAME: [0.1, 0.4, 0.9]}, thresholds={NAME: 0.5})
    review_all(run, ["fail", "fail", "pass"], reviewer=person("ada"), scores=[0.2, 0.3, None])
    (helpfulness,) = calibration_report(run=run).evaluators
    assert helpfulness.corrected == 2
    assert helpfulness.mae is not None and helpfulness.mae.estimate == pytest.approx(0.1)
    assert helpfulness.spearman is None


def test_each_review_is_judged_at_its_own_runs_threshold() -> None:
    judge = make_judge(evaluators=[NAME])
    lenient = build_run({NAME: [0.7, 0.65]}, judge=judge, thresholds={NAME: 0.5})
    strict = build_run({NAME: [0.7, 0.65]}, judge=judge, thresholds={NAME: 0.7})
    ada = person("ada")
    review_all(lenient, ["pass", "pass"], reviewer=ada)
    review_all(strict, ["pass", "pass"], reviewer=ada)
    # At 0.5 both scores pass. At 0.7, 0.7 passes (score >= threshold) and 0.65 fails.
    (at_half,) = calibration_report(run=lenient).evaluators
    assert at_half.confusion == Confusion(2, 0, 0, 0)
    (at_seven,) = calibration_report(run=strict).evaluators
    assert at_seven.confusion == Confusion(1, 0, 1, 0)
    assert at_seven.thresholds == (0.7,)
    (pooled,) = calibration_report(run=strict, pooled=True).evaluators
    assert pooled.confusion == Confusion(3, 0, 1, 0)
    assert pooled.thresholds == (0.5, 0.7)


def test_an_overridden_threshold_is_the_one_reviews_are_judged_at() -> None:
    run = build_run({NAME: [0.6]}, thresholds={NAME: 0.5})
    run.threshold_overrides = {NAME: 0.8}
    run.save(update_fields=["threshold_overrides"])
    review_all(run, ["pass"], reviewer=person("ada"))
    (helpfulness,) = calibration_report(run=run).evaluators
    assert helpfulness.confusion == Confusion(0, 0, 1, 0)


def test_pooling_reads_every_run_of_the_same_judge_and_no_other() -> None:
    judge = make_judge("Support judge", evaluators=[NAME, "Safety"])
    first = build_run({NAME: [0.9, 0.1]}, judge=judge, thresholds={NAME: 0.5})
    second = build_run({NAME: [0.9, 0.9], "Safety": [0.8, 0.2]}, judge=judge, thresholds={NAME: 0.5})
    unreviewed = build_run({NAME: [0.9]}, judge=judge, thresholds={NAME: 0.5})
    other_judge = build_run({NAME: [0.9, 0.9]}, thresholds={NAME: 0.5})
    ada = person("ada")
    review_all(first, ["pass", "fail"], reviewer=ada)
    review_all(second, ["fail", "fail"], reviewer=ada)
    review_all(second, ["pass", "fail"], reviewer=ada, evaluator="Safety")
    review_all(other_judge, ["fail", "fail"], reviewer=ada)

    alone = calibration_report(run=first)
    assert alone.run_ids == [first.pk]
    assert [e.name for e in alone.evaluators] == [NAME]
    assert alone.evaluators[0].confusion == Confusion(1, 0, 0, 1)

    pooled = calibration_report(run=first, pooled=True)
    # The unreviewed run adds nothing and is not counted; the other judge's run is not read.
    assert pooled.pooled is True
    assert pooled.run_ids == [first.pk, second.pk]
    assert unreviewed.pk not in pooled.run_ids and other_judge.pk not in pooled.run_ids
    # This run's evaluators first, then the ones only the other run has.
    helpfulness, safety = pooled.evaluators
    assert helpfulness.name == NAME and safety.name == "Safety"
    # first: (pass, pass) (fail, fail); second: (pass, fail) (pass, fail).
    assert helpfulness.confusion == Confusion(1, 2, 0, 1)
    assert helpfulness.reviewed == 4
    assert safety.confusion == Confusion(1, 0, 0, 1)
    # Pooled from the unreviewed run, it is listed too: the report is for it.
    assert calibration_report(run=unreviewed, pooled=True).run_ids == [first.pk, second.pk, unreviewed.pk]


def test_the_report_reads_reviews_and_their_scores_not_the_whole_run() -> None:
    run = build_run({NAME: [0.9, 0.2] * 1_000}, thresholds={NAME: 0.5})
    review_all(run, ["pass", "pass", "fail"], reviewer=person("ada"))
    with CaptureQueriesContext(connection) as queries:
        (helpfulness,) = calibration_report(run=run, pooled=True).evaluators
    assert helpfulness.reviews == 3
    assert len(queries) <= 3
    # Scores are read only through the reviews (a subquery per review), never scanned for the run.
    for query in queries.captured_queries:
        sql = query["sql"].lower()
        assert (
            not sql.startswith('select "evals_score"')
            and 'from "evals_score" where "evals_score"."run_id"' not in sql
        )


# --- The items behind a cell ----------------------------------------------------------------------------


def test_cell_items_list_each_item_once_with_its_reviewers_in_row_order() -> None:
    run = build_run({NAME: [0.9, 0.9, 0.1, 0.9]}, thresholds={NAME: 0.5})
    ada, bob = person("ada"), person("bob")
    review_save(
        item=items_of(run)[3], evaluator=NAME, reviewer=ada, label="fail", comment="Made up a refund policy."
    )
    review_save(item=items_of(run)[0], evaluator=NAME, reviewer=ada, label="fail", comment="Rude.")
    review_save(item=items_of(run)[0], evaluator=NAME, reviewer=bob, label="fail")
    review_save(item=items_of(run)[1], evaluator=NAME, reviewer=ada, label="pass")
    review_save(item=items_of(run)[2], evaluator=NAME, reviewer=ada, label="fail")

    rows, total = calibration_cell_items(run=run, pooled=False, evaluator=NAME, cell="judge_pass_human_fail")
    assert total == 2
    first, second = rows
    assert (first.run_id, first.item_id, first.position) == (run.pk, items_of(run)[0].pk, 1)
    assert first.judge_score == pytest.approx(0.9) and first.threshold == 0.5 and first.human_label == "fail"
    assert [(r.reviewer, r.comment) for r in first.reviews] == [("ada", "Rude."), ("bob", "")]
    assert first.reviewer_names == "ada, bob"
    assert (second.position, second.reviews[0].comment) == (4, "Made up a refund policy.")

    rows, total = calibration_cell_items(run=run, pooled=False, evaluator=NAME, cell="judge_fail_human_fail")
    assert (total, [row.position for row in rows]) == (1, [3])
    rows, total = calibration_cell_items(run=run, pooled=False, evaluator=NAME, cell="judge_fail_human_pass")
    assert (rows, total) == ([], 0)
    rows, total = calibration_cell_items(
        run=run, pooled=False, evaluator=NAME, cell="judge_pass_human_fail", limit=1
    )
    assert ([row.position for row in rows], total) == ([1], 2)


def test_cell_items_pooled_name_each_items_own_run() -> None:
    judge = make_judge(evaluators=[NAME])
    first = build_run({NAME: [0.1]}, judge=judge, thresholds={NAME: 0.5})
    second = build_run({NAME: [0.9, 0.2]}, judge=judge, thresholds={NAME: 0.5})
    ada = person("ada")
    review_all(first, ["pass"], reviewer=ada)
    review_all(second, [None, "pass"], reviewer=ada)
    rows, total = calibration_cell_items(run=first, pooled=True, evaluator=NAME, cell="judge_fail_human_pass")
    assert total == 2
    assert [(row.run_id, row.position) for row in rows] == [(first.pk, 1), (second.pk, 2)]
    rows, total = calibration_cell_items(
        run=first, pooled=False, evaluator=NAME, cell="judge_fail_human_pass"
    )
    assert [(row.run_id, row.position) for row in rows] == [(first.pk, 1)]


def test_cell_items_refuse_an_unknown_cell_or_evaluator() -> None:
    run = build_run({NAME: [0.9]}, thresholds={NAME: 0.5})
    with pytest.raises(CalibrationError) as bad_cell:
        calibration_cell_items(run=run, pooled=False, evaluator=NAME, cell="both_wrong")
    assert bad_cell.value.field == "cell"
    with pytest.raises(CalibrationError) as bad_evaluator:
        calibration_cell_items(run=run, pooled=False, evaluator="Nope", cell="judge_pass_human_pass")
    assert bad_evaluator.value.field == "evaluator"
    # A known evaluator with no reviews is an empty list, not an error.
    assert calibration_cell_items(run=run, pooled=False, evaluator=NAME, cell="judge_pass_human_pass") == (
        [],
        0,
    )
