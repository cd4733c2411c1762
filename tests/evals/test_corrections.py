"""Results with human corrections: statistics, compare and exports read each reviewed score as the
people said (the review that counts: the most recently changed one), against examples worked by hand."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.http import QueryDict

from evals.models import Item, Review, Run
from evals.selectors.compare import comparison_as_dict, runs_compare
from evals.selectors.compare_items import runs_compare_items
from evals.selectors.export import export_filename, export_headers, export_stream
from evals.selectors.results import ResultsQuery
from evals.selectors.stats import run_statistics
from evals.selectors.visibility import Visibility
from evals.services.reviews import review_save
from tests.factories import build_run

pytestmark = pytest.mark.django_db


def person(name: str) -> AbstractBaseUser:
    user, _ = get_user_model().objects.get_or_create(username=name)
    return user


def item_at(run: Run, position: int) -> Item:
    return Item.objects.get(run=run, position=position)


def review(
    run: Run,
    position: int,
    who: AbstractBaseUser,
    label: str,
    score: float | None = None,
    comment: str = "",
) -> Review:
    saved, _ = review_save(
        item=item_at(run, position),
        evaluator="Politeness",
        reviewer=who,
        label=label,
        score=score,
        comment=comment,
    )
    return saved


def reviewed_run() -> Run:
    """Politeness 0.2, 0.4, 0.6, 0.8, 1.0 at threshold 0.5, four of them reviewed:

    row 1 (0.2): ada, pass, corrected 0.7      -> 0.7, pass  (the judge failed it: turned over)
    row 2 (0.4): ada, pass, no score           -> 0.4, pass  (turned over: the label wins)
    row 3 (0.6): not reviewed                  -> 0.6, pass
    row 4 (0.8): ada, fail, no score           -> 0.8, fail  (turned over)
    row 5 (1.0): ada fail 0.3, then bob pass   -> 1.0, pass  (bob's review is the later one and counts;
                                                   it has no score, so the judge's 1.0 stands, not 0.3)
    """
    run = build_run(
        {"Politeness": [0.2, 0.4, 0.6, 0.8, 1.0]},
        thresholds={"Politeness": 0.5},
        metadata=lambda position: {"team": "a" if position < 2 else "b"},
    )
    ada, bob = person("ada"), person("bob")
    review(run, 0, ada, "pass", 0.7, comment="Polite enough.")
    review(run, 1, ada, "pass")
    review(run, 3, ada, "fail", comment="Rude in the last line.")
    review(run, 4, ada, "fail", 0.3)
    review(run, 4, bob, "pass")
    return run


def test_corrected_statistics_worked_by_hand() -> None:
    run = reviewed_run()
    judge = run_statistics(run=run).evaluators[0]
    # The judge's: mean 0.6, median 0.6, 3 of 5 pass (0.6, 0.8, 1.0).
    assert (judge.mean, judge.median, judge.passed, judge.minimum) == (pytest.approx(0.6), 0.6, 3, 0.2)
    assert not judge.corrected
    # Counted in either mode: 4 scores reviewed, by 5 reviews, 3 verdicts turned over (rows 1, 2, 4).
    assert (judge.reviewed, judge.reviews, judge.changed) == (4, 5, 3)

    fixed = run_statistics(run=run, corrected=True, slice_column="team").evaluators[0]
    assert fixed.corrected
    # Values 0.7, 0.4, 0.6, 0.8, 1.0: mean 3.5 / 5 = 0.7; sorted 0.4 0.6 0.7 0.8 1.0: median 0.7.
    assert fixed.n == 5 and fixed.mean == pytest.approx(0.7)
    assert fixed.median == pytest.approx(0.7)
    assert (fixed.minimum, fixed.maximum) == (pytest.approx(0.4), pytest.approx(1.0))
    # Deviations 0, -0.3, -0.1, 0.1, 0.3: squares sum to 0.2; s² = 0.2 / 4 = 0.05; s/√5 = 0.1;
    # t(0.975, 4) = 2.776445: the interval is 0.7 ± 0.277645.
    assert fixed.interval.low == pytest.approx(0.7 - 0.277645, abs=1e-6)
    assert fixed.interval.high == pytest.approx(0.7 + 0.277645, abs=1e-6)
    # Passes: rows 1 and 2 (the people's pass), 3 (0.6 >= 0.5), 5 (pass); row 4 fails: 4 of 5.
    assert fixed.passed == 4 and fixed.pass_rate == pytest.approx(0.8)
    assert (fixed.reviewed, fixed.reviews, fixed.changed) == (4, 5, 3)
    # Histogram: 0.4 in 0.4-0.5, 0.6, 0.7, 0.8 in theirs, 1.0 in the last bin (the judge had 0.2 in 0.2-0.3).
    assert [b.count for b in fixed.bins] == [0, 0, 0, 0, 1, 0, 1, 1, 1, 1]
    assert [b.count for b in judge.bins] == [0, 0, 1, 0, 1, 0, 1, 0, 1, 1]
    # Slices: team a = rows 1-2 (0.7, 0.4: mean 0.55, both pass), team b = rows 3-5 (0.6, 0.8, 1.0: mean 0.8,
    # 2 pass). Worst mean first.
    assert [(row.value, row.n, row.mean, row.passed) for row in fixed.slices] == [
        ("a", 2, pytest.approx(0.55), 2),
        ("b", 3, pytest.approx(0.8), 2),
    ]


def test_the_most_recently_changed_review_counts_when_its_author_edits_it_again() -> None:
    run = reviewed_run()
    # Ada edits her review of row 5 after Bob's: hers (fail, 0.3) is now the one that counts.
    review(run, 4, person("ada"), "fail", 0.3)
    fixed = run_statistics(run=run, corrected=True).evaluators[0]
    # Values 0.7, 0.4, 0.6, 0.8, 0.3: mean 2.8 / 5 = 0.56; passes rows 1, 2, 3: 3 of 5; turned over: rows
    # 1, 2, 4 and now 5 (the judge passed 1.0).
    assert fixed.mean == pytest.approx(0.56)
    assert fixed.passed == 3 and fixed.minimum == pytest.approx(0.3)
    assert (fixed.reviewed, fixed.reviews, fixed.changed) == (4, 5, 4)


def test_an_override_threshold_judges_which_verdicts_the_reviewers_turned_over() -> None:
    run = reviewed_run()
    # At 0.9 the judge fails rows 1-4 and passes row 5; the reviewers passed rows 1, 2 and 5 and failed
    # row 4: turned over are rows 1 and 2.
    stats = run_statistics(run=run, thresholds={"Politeness": 0.9}, corrected=True).evaluators[0]
    assert stats.changed == 2
    # Passes: rows 1, 2, 5 by label; row 3 (0.6, unreviewed) fails at 0.9: 3 of 5.
    assert stats.passed == 3


def test_an_unreviewed_run_reads_the_same_either_way() -> None:
    run = build_run({"Politeness": [0.1, 0.5, 0.9]}, thresholds={"Politeness": 0.5})
    judge, fixed = (run_statistics(run=run, corrected=flag).evaluators[0] for flag in (False, True))
    assert (judge.mean, judge.median, judge.passed, judge.bins) == (
        fixed.mean,
        fixed.median,
        fixed.passed,
        fixed.bins,
    )
    assert (fixed.reviewed, fixed.reviews, fixed.changed) == (0, 0, 0)


def test_in_the_latest_verdict_view_a_review_follows_its_item() -> None:
    first = build_run({"Politeness": [0.2, 0.3]}, thresholds={"Politeness": 0.5})
    retry = build_run(
        {"Politeness": [0.9]}, dataset=first.dataset, judge=first.judge, retry_of=first, positions=[1]
    )
    ada = person("ada")
    review(first, 0, ada, "pass", 0.6)  # row 1: still first's verdict in the latest view
    review(first, 1, ada, "pass", 0.8)  # row 2: the retry judged it again, so this review is out of view
    retried = Item.objects.get(run=retry, position=1)
    review_save(item=retried, evaluator="Politeness", reviewer=ada, label="fail", score=0.4)
    latest = run_statistics(run=first, latest=True, corrected=True).evaluators[0]
    # Latest verdicts: row 1 (first, 0.2 -> 0.6 pass), row 2 (retry, 0.9 -> 0.4 fail): mean 0.5, 1 pass.
    assert latest.n == 2 and latest.mean == pytest.approx(0.5) and latest.passed == 1
    assert (latest.reviewed, latest.changed) == (2, 2)
    own = run_statistics(run=first, corrected=True).evaluators[0]
    # The run alone: 0.6 and 0.8, both passed by ada.
    assert own.mean == pytest.approx(0.7) and own.passed == 2 and own.reviewed == 2


# --- Compare -------------------------------------------------------------------------------------------


def compared_runs() -> tuple[Run, Run]:
    """A: 0.2, 0.6, 0.9, 0.4; B: 0.6, 0.3, 0.9, 0.8 (same dataset, threshold 0.5 in both). Reviews:

    A row 1 (0.2): fail, no score     -> 0.2, fail (as the judge had it)
    A row 2 (0.6): fail, no score     -> 0.6, fail (the label decides)
    A row 4 (0.4): pass, corrected 0.8 -> 0.8, pass
    B row 2 (0.3): pass, corrected 0.6 -> 0.6, pass
    B row 3 (0.9): fail, no score      -> 0.9, fail (the label decides, not the number)
    """
    a = build_run({"Politeness": [0.2, 0.6, 0.9, 0.4]}, name="before", thresholds={"Politeness": 0.5})
    b = build_run(
        {"Politeness": [0.6, 0.3, 0.9, 0.8]},
        dataset=a.dataset,
        judge=a.judge,
        name="after",
        thresholds={"Politeness": 0.5},
    )
    ada = person("ada")
    review(a, 0, ada, "fail")
    review(a, 1, ada, "fail")
    review(a, 3, ada, "pass", 0.8)
    review(b, 1, ada, "pass", 0.6)
    review(b, 2, ada, "fail", comment="Wrong refund policy.")
    return a, b


def test_a_comparison_with_human_corrections_worked_by_hand() -> None:
    a, b = compared_runs()
    judge = runs_compare(a=a, b=b).evaluators[0]
    # The judge's: d = 0.4, -0.3, 0, 0.4; mean 0.125; 2 improved, 1 regressed; row 2 passed in A, fails in B.
    assert judge.difference.mean == pytest.approx(0.125)
    assert (judge.improved, judge.regressed, judge.pass_to_fail, judge.fail_to_pass) == (2, 1, 1, 2)
    assert judge.verdict == "no significant difference"

    comparison = runs_compare(a=a, b=b, corrected=True)
    row = comparison.evaluators[0]
    assert comparison.corrected and row.corrected
    # Corrected: A 0.2, 0.6, 0.9, 0.8; B 0.6, 0.6, 0.9, 0.8; d = 0.4, 0, 0, 0: mean 0.1.
    # Deviations 0.3, -0.1, -0.1, -0.1: squares 0.12; s² = 0.04; s/√4 = 0.1; t(0.975, 3) = 3.182446.
    assert (row.mean_a, row.mean_b) == (pytest.approx(0.625), pytest.approx(0.725))
    assert row.difference.mean == pytest.approx(0.1)
    assert row.difference.low == pytest.approx(0.1 - 0.318245, abs=1e-6)
    assert row.difference.high == pytest.approx(0.1 + 0.318245, abs=1e-6)
    assert (row.improved, row.regressed, row.unchanged) == (1, 0, 3)
    # Passes: A rows 3, 4 (rows 1 and 2 failed by label); B rows 1, 2, 4 (row 3 failed by label).
    assert (row.passed_a, row.passed_b) == (2, 3)
    # Row 3 passed in A (0.9) and fails in B by the reviewer's label; rows 1 and 2 went from fail to pass.
    assert (row.pass_to_fail, row.fail_to_pass) == (1, 2)
    assert [drop.position for drop in row.drops] == [2]
    assert (row.reviewed_a, row.reviewed_b) == (3, 2)
    assert row.verdict == "no significant difference, with human corrections"
    as_dict = comparison_as_dict(comparison)
    assert as_dict["corrected"] is True
    assert as_dict["evaluators"][0]["verdict"] == "no significant difference, with human corrections"


def test_compare_item_by_item_with_corrections_shows_the_corrected_scores_and_labels() -> None:
    a, b = compared_runs()
    page = runs_compare_items(a=a, b=b, evaluator="Politeness", corrected=True)
    chosen = [(pair.position_a, pair.chosen.score_a, pair.chosen.score_b) for pair in page.rows]
    assert chosen == [(0, 0.2, 0.6), (1, 0.6, 0.6), (2, 0.9, 0.9), (3, 0.8, 0.8)]
    labels = [(pair.chosen.label_a, pair.chosen.label_b) for pair in page.rows]
    assert labels == [("fail", None), ("fail", "pass"), (None, "fail"), ("pass", None)]
    # The judge's own score, where a reviewer corrected it: B row 2 (0.3) and A row 4 (0.4).
    judged = [(pair.chosen.judge_a, pair.chosen.judge_b) for pair in page.rows]
    assert judged == [(None, None), (None, 0.3), (None, None), (0.4, None)]
    # Filtered by change: with corrections only row 1 improved, and nothing regressed.
    improved = runs_compare_items(a=a, b=b, evaluator="Politeness", change="improved", corrected=True)
    assert [pair.position_a for pair in improved.rows] == [0]
    regressed = runs_compare_items(a=a, b=b, evaluator="Politeness", change="regressed", corrected=True)
    assert regressed.count == 0
    judge_regressed = runs_compare_items(a=a, b=b, evaluator="Politeness", change="regressed")
    assert [pair.position_a for pair in judge_regressed.rows] == [1]
    assert judge_regressed.rows[0].chosen.label_a is None


# --- Exports -------------------------------------------------------------------------------------------


def whole_run(run: Run, visibility: Visibility | None = None) -> ResultsQuery:
    query = ResultsQuery.from_params(QueryDict("sort=position"), run=run)
    if visibility is not None:
        query = ResultsQuery.from_params(QueryDict("sort=position"), run=run, visibility=visibility)
    return query


def csv_rows(run: Run, query: ResultsQuery, *, corrected: bool = False) -> list[dict[str, str]]:
    text = "".join(export_stream(run, query, fmt="csv", corrected=corrected))
    return list(csv.DictReader(io.StringIO(text, newline="")))


def jsonl_records(run: Run, query: ResultsQuery, *, corrected: bool = False) -> list[dict[str, Any]]:
    text = "".join(export_stream(run, query, fmt="jsonl", corrected=corrected))
    return [json.loads(line) for line in text.splitlines()]


REVIEW_HEADERS = [
    "Politeness score",
    "Politeness justification",
    "Politeness human label",
    "Politeness human score",
    "Politeness reviewer",
    "Politeness review comment",
]


def test_a_csv_export_carries_the_review_that_counts() -> None:
    run = reviewed_run()
    rows = csv_rows(run, whole_run(run))
    assert list(rows[0])[-6:] == REVIEW_HEADERS
    assert export_headers(run, reviews=True)[-6:] == REVIEW_HEADERS
    picked = [
        (
            row["Politeness human label"],
            row["Politeness human score"],
            row["Politeness reviewer"],
            row["Politeness review comment"],
        )
        for row in rows
    ]
    assert picked == [
        ("pass", "0.7", "ada", "Polite enough."),
        ("pass", "", "ada", ""),
        ("", "", "", ""),  # row 3: not reviewed
        ("fail", "", "ada", "Rude in the last line."),
        ("pass", "", "bob", ""),  # bob's is the later review of row 5
    ]
    # The judge's scores stay as they were.
    assert [row["Politeness score"] for row in rows] == ["0.2", "0.4", "0.6", "0.8", "1.0"]


def test_an_unreviewed_run_exports_exactly_as_before() -> None:
    run = build_run({"Politeness": [0.5, 0.25]})
    header = next(csv.reader(io.StringIO("".join(export_stream(run, whole_run(run), fmt="csv")))))
    assert header[-2:] == ["Politeness score", "Politeness justification"]
    assert header == export_headers(run)
    record = jsonl_records(run, whole_run(run))[0]
    assert record["scores"] == {"Politeness": {"score": 0.5, "justification": "Politeness: 0.5"}}


def test_a_jsonl_export_carries_a_review_object_per_score() -> None:
    run = reviewed_run()
    records = jsonl_records(run, whole_run(run))
    reviews = [record["scores"]["Politeness"]["review"] for record in records]
    assert reviews[0] == {
        "label": "pass",
        "score": 0.7,
        "reviewer": "ada",
        "comment": "Polite enough.",
        "reviews": 1,
    }
    assert reviews[2] is None
    assert reviews[4] == {"label": "pass", "score": None, "reviewer": "bob", "comment": "", "reviews": 2}
    assert "corrected_score" not in records[0]["scores"]["Politeness"]


def test_a_corrected_export_says_so_and_holds_the_corrected_values() -> None:
    run = reviewed_run()
    rows = csv_rows(run, whole_run(run), corrected=True)
    # Corrected: row 1 0.7 (ada's score), row 5 1.0 (bob's review, the one that counts, gave no score).
    assert [row["Politeness corrected score"] for row in rows] == ["0.7", "0.4", "0.6", "0.8", "1.0"]
    records = jsonl_records(run, whole_run(run), corrected=True)
    assert [r["scores"]["Politeness"]["corrected_score"] for r in records] == [0.7, 0.4, 0.6, 0.8, 1.0]
    assert export_filename(run, "csv", corrected=True).endswith("-corrected.csv")
    assert "corrected" not in export_filename(run, "csv")


def test_a_share_link_export_keeps_the_label_but_not_who_reviewed_or_what_they_wrote() -> None:
    run = reviewed_run()
    link = Visibility(texts=True, justifications=True, internal_ids=False)
    rows = csv_rows(run, whole_run(run, link))
    assert "Politeness human label" in rows[0] and "Politeness human score" in rows[0]
    assert "Politeness reviewer" not in rows[0] and "Politeness review comment" not in rows[0]
    assert [row["Politeness human label"] for row in rows] == ["pass", "pass", "", "fail", "pass"]
    text = "".join(export_stream(run, whole_run(run, link), fmt="jsonl"))
    for secret in ('"ada"', '"bob"', '"reviewer"', "Polite enough", "Rude in the last line"):
        assert secret not in text
    first = json.loads(text.splitlines()[0])
    assert first["scores"]["Politeness"]["review"] == {"label": "pass", "score": 0.7, "reviews": 1}


def test_a_review_comment_is_text_a_spreadsheet_will_not_run() -> None:
    run = build_run({"Politeness": [0.4]})
    review(run, 0, person("ada"), "fail", comment='=HYPERLINK("http://evil","x")')
    (row,) = csv_rows(run, whole_run(run))
    assert row["Politeness review comment"] == '\'=HYPERLINK("http://evil","x")'
