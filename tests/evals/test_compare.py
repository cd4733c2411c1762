"""Comparing two runs, against differences and intervals worked out by hand (written out below), and
end to end: two uploads of answers to the same questions, judged by the offline judge, paired by input."""

from __future__ import annotations

import csv
import json
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from evals.models import Example, Judge, Run
from evals.selectors.compare import CompareError, change_of, comparison_as_dict, runs_compare
from evals.selectors.compare_items import runs_compare_items, word_diff
from evals.selectors.export import export_stream
from evals.selectors.results import ResultsQuery
from evals.services.datasets import dataset_import_file
from evals.services.runs import run_create
from tests.conftest import SUPPORT_JUDGE
from tests.factories import build_run, make_judge, pump_until_finished

pytestmark = pytest.mark.django_db


def keyed_run(scores: dict[str, Sequence[float | None]], keys: Sequence[str], **options: Any) -> Run:
    """build_run over a new dataset whose rows were uploaded with a key column holding `keys`."""
    run = build_run(scores, **options)
    for position, key in enumerate(keys):
        Example.objects.filter(dataset=run.dataset, position=position).update(
            input_key=Example.make_input_key(
                key=key, request="", contexts=[], expected_output="", turns=None, system_prompt=""
            )
        )
    return run


def learn_thresholds(run: Run, thresholds: dict[str, float]) -> None:
    run.thresholds = thresholds
    run.thresholds_learned_at = timezone.now()
    run.save(update_fields=["thresholds", "thresholds_learned_at"])


def test_a_paired_comparison_worked_by_hand() -> None:
    a = build_run({"Politeness": [0.2, 0.5, 0.9, 0.4]}, name="before")
    judge = a.judge
    b = build_run({"Politeness": [0.6, 0.3, 0.9, 0.8]}, dataset=a.dataset, judge=judge, name="after")
    comparison = runs_compare(a=a, b=b)
    assert comparison.paired_by == "position"
    assert (comparison.pairs, comparison.only_a, comparison.only_b) == (4, 0, 0)
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
    assert not row.significant and row.direction == "same" and row.verdict == "no significant difference"
    assert (row.improved, row.regressed, row.unchanged) == (2, 1, 1)
    # Threshold 0.5: neither run has learned the judge's yet. A passes 0.5 and 0.9; B 0.6, 0.9 and 0.8.
    assert (row.threshold_a, row.threshold_source_a) == (0.5, "pending")
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
    assert row.significant and row.direction == "better" and not row.regression
    assert (row.improved, row.regressed, row.unchanged) == (5, 0, 0)
    # And the other way round it is significantly worse: a regression, its interval wholly below 0.
    reverse = runs_compare(a=b, b=a)
    assert reverse.evaluators[0].direction == "worse" and reverse.regression


def test_runs_over_different_datasets_pair_by_input_not_by_response() -> None:
    requests_a = ["alpha", "bravo", "charlie", "delta", "echo"]
    # B has four of A's questions, in another order, each with a new answer, and one A does not have.
    requests_b = ["delta", "foxtrot", "bravo", "alpha", "charlie"]
    a = build_run({"Politeness": [0.9, 0.8, 0.7, 0.6, 0.5]}, requests=requests_a, responses=["v1"] * 5)
    b = build_run({"Politeness": [0.1, 0.2, 0.8, 0.9, 0.7]}, requests=requests_b, responses=["v2"] * 5)
    comparison = runs_compare(a=a, b=b)
    assert comparison.paired_by == "input"
    assert (comparison.pairs, comparison.only_a, comparison.only_b) == (4, 1, 1)
    assert any("4 pairs by input, 1 only in A, 1 only in B" in w for w in comparison.warnings)
    # The runs also came from two judges, which the comparison must say.
    assert any("different judges" in w for w in comparison.warnings)
    row = comparison.evaluators[0]
    # Pairs (A, B): alpha (0.9, 0.9), bravo (0.8, 0.8), charlie (0.7, 0.7), delta (0.6, 0.1).
    assert row.n == 4
    assert row.difference.mean == pytest.approx(-0.125)
    assert (row.improved, row.regressed, row.unchanged) == (0, 1, 3)
    assert [(d.position, d.score_a, d.score_b) for d in row.drops] == [(3, 0.6, 0.1)]


def test_a_key_column_pairs_rows_whose_question_was_reworded() -> None:
    a = keyed_run({"Politeness": [0.2, 0.4, 0.6]}, ["c-1", "c-2", "c-3"], requests=["Hi?", "Bye?", "Help?"])
    b = keyed_run(
        {"Politeness": [0.9, 0.4, 0.1]}, ["c-3", "c-1", "c-2"], requests=["Help!", "Hi there?", "Bye now?"]
    )
    comparison = runs_compare(a=a, b=b)
    assert (comparison.pairs, comparison.only_a, comparison.only_b) == (3, 0, 0)
    row = comparison.evaluators[0]
    # c-1: 0.2 -> 0.4, c-2: 0.4 -> 0.1, c-3: 0.6 -> 0.9.
    assert (row.improved, row.regressed, row.unchanged) == (2, 1, 0)
    assert row.difference.mean == pytest.approx((0.2 - 0.3 + 0.3) / 3)
    # The same rows without a key column: every question changed, so nothing pairs, and it says why.
    plain_a = build_run({"Politeness": [0.2, 0.4, 0.6]}, requests=["Hi?", "Bye?", "Help?"])
    plain_b = build_run({"Politeness": [0.9, 0.4, 0.1]}, requests=["Help!", "Hi there?", "Bye now?"])
    unpaired = runs_compare(a=plain_a, b=plain_b)
    assert (unpaired.pairs, unpaired.only_a, unpaired.only_b) == (0, 3, 3)
    assert any("upload both with a key column" in w for w in unpaired.warnings)


def test_keys_pair_in_code_point_order_whatever_the_database_collation() -> None:
    # Under a locale collation "B" sorts after "a" and "Ä" before "a-b": a merge that compares keys in
    # Python over such an order skips pairs as soon as one side has a key the other lacks.
    shared = ["a-b", "ab", "a b", "B", "a", "Ä", "a_b", "10", "9", "b", "Zulu", "zulu"]
    keys_a = [*shared, "A-only", "c"]
    keys_b = ["C", *reversed(shared), "b-only", "Å"]
    a = keyed_run({"Politeness": [0.5] * len(keys_a)}, keys_a)
    b = keyed_run({"Politeness": [0.5] * len(keys_b)}, keys_b)
    comparison = runs_compare(a=a, b=b)
    assert (comparison.pairs, comparison.only_a, comparison.only_b) == (12, 2, 3)


def test_duplicated_keys_pair_in_order_and_are_reported() -> None:
    a = build_run({"Politeness": [0.1, 0.5, 0.2]}, requests=["alpha", "bravo", "alpha"], responses=["x"] * 3)
    # "alpha" appears twice in A (rows 0 and 2) and three times in B (rows 0, 2 and 3).
    b = build_run(
        {"Politeness": [0.9, 0.5, 0.2, 0.7]},
        requests=["alpha", "bravo", "alpha", "alpha"],
        responses=["y"] * 4,
    )
    comparison = runs_compare(a=a, b=b)
    assert (comparison.pairs, comparison.only_a, comparison.only_b) == (3, 0, 1)
    assert (comparison.duplicated_keys_a, comparison.duplicated_keys_b) == (1, 1)
    assert any(
        "appear more than once (1 in A, 1 in B" in w and "1st with the 1st" in w for w in comparison.warnings
    )
    assert comparison_as_dict(comparison)["duplicated_keys"] == {"a": 1, "b": 1}
    row = comparison.evaluators[0]
    # Pairs: alpha #1 (0.1, 0.9), alpha #2 (0.2, 0.2), bravo (0.5, 0.5); B's third alpha (0.7) is left over.
    assert row.n == 3
    assert (row.improved, row.regressed, row.unchanged) == (1, 0, 2)
    assert (row.mean_a, row.mean_b) == (pytest.approx(0.8 / 3), pytest.approx(1.6 / 3))


def test_fewer_than_two_pairs_says_not_enough_paired_items() -> None:
    a = build_run({"Politeness": [0.1, 0.5]}, requests=["alpha", "bravo"])
    b = build_run({"Politeness": [0.9, 0.5]}, requests=["alpha", "charlie"])
    row = runs_compare(a=a, b=b).evaluators[0]
    assert row.n == 1 and row.improved == 1
    assert row.direction == "insufficient" and row.verdict == "not enough paired items"
    assert not row.regression
    # None at all: the same.
    c = build_run({"Politeness": [0.3]}, requests=["delta"])
    empty = runs_compare(a=a, b=c).evaluators[0]
    assert empty.n == 0 and empty.verdict == "not enough paired items"


def test_an_evaluator_without_a_score_on_either_side_leaves_that_pair_out_of_its_figures() -> None:
    a = build_run({"Politeness": [0.1, None, 0.5], "Safety": [1.0, 1.0, 1.0]})
    b = build_run(
        {"Politeness": [0.3, 0.9, None], "Safety": [1.0, 0.0, 1.0]}, dataset=a.dataset, judge=a.judge
    )
    comparison = runs_compare(a=a, b=b)
    assert comparison.pairs == 3
    politeness, safety = comparison.evaluators
    assert (politeness.n, politeness.unscored, politeness.improved) == (1, 2, 1)
    assert (safety.n, safety.unscored, safety.regressed, safety.unchanged) == (3, 0, 1, 2)


def test_each_run_passes_items_at_its_own_threshold_and_a_difference_is_warned_about() -> None:
    a = build_run({"Politeness": [0.6, 0.75, 0.9]})
    b = build_run({"Politeness": [0.6, 0.75, 0.9]}, dataset=a.dataset, judge=a.judge)
    learn_thresholds(a, {"Politeness": 0.5})
    learn_thresholds(b, {"Politeness": 0.8})
    row = runs_compare(a=a, b=b).evaluators[0]
    assert (row.threshold_a, row.threshold_source_a, row.threshold_b, row.threshold_source_b) == (
        0.5,
        "judge",
        0.8,
        "judge",
    )
    # Every score is the same, yet two items pass in A only: the bar moved, and the page says so.
    assert (row.passed_a, row.passed_b, row.pass_to_fail, row.unchanged) == (3, 1, 2, 3)
    warnings = " ".join(runs_compare(a=a, b=b).warnings)
    assert "Politeness 0.5 in A (the judge's), 0.8 in B (the judge's)" in warnings
    # An override applies to both sides and is shown as one; the warning goes.
    overridden = runs_compare(a=a, b=b, thresholds={"Politeness": 0.7})
    row = overridden.evaluators[0]
    assert (row.threshold_a, row.threshold_source_a, row.threshold_b, row.threshold_source_b) == (
        0.7,
        "override",
        0.7,
        "override",
    )
    assert (row.passed_a, row.passed_b) == (2, 2)
    assert not any("different thresholds" in w for w in overridden.warnings)
    assert overridden.overrides == {"Politeness": 0.7}


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
    assert row.threshold_source == "override"
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


# --- Item by item -----------------------------------------------------------------------------------


def test_the_item_pages_filter_by_change_sort_by_its_size_and_page_by_keyset() -> None:
    a_scores = [0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5]
    b_scores = [0.9, 0.1, 0.5, 0.7, 0.2, 0.5, 0.6]  # d: +.4, -.4, 0, +.2, -.3, 0, +.1
    a = build_run({"Politeness": a_scores})
    b = build_run({"Politeness": b_scores}, dataset=a.dataset, judge=a.judge)
    summary = runs_compare(a=a, b=b).evaluators[0]
    counts = {}
    for change in ("improved", "regressed", "unchanged"):
        page = runs_compare_items(a=a, b=b, evaluator="Politeness", change=change)
        counts[change] = page.count
        assert {row.chosen.change for row in page.rows} == {change}
    assert counts == {
        "improved": summary.improved,
        "regressed": summary.regressed,
        "unchanged": summary.unchanged,
    }
    everything = runs_compare_items(a=a, b=b, evaluator="Politeness")
    assert everything.count == summary.n == 7
    assert [row.position_a for row in everything.rows] == list(range(7))
    # Largest change first, two a page, following the cursor to the end.
    seen: list[int] = []
    after = ""
    while True:
        page = runs_compare_items(a=a, b=b, evaluator="Politeness", sort="change", after=after, page_size=2)
        assert page.count == 7
        seen += [row.position_a for row in page.rows]
        if not page.next_cursor:
            break
        after = page.next_cursor
    assert seen == [0, 1, 4, 3, 6, 2, 5]
    regressed = runs_compare_items(a=a, b=b, evaluator="Politeness", change="regressed", sort="change")
    assert [(row.position_a, row.chosen.score_a, row.chosen.score_b) for row in regressed.rows] == [
        (1, 0.5, 0.1),
        (4, 0.5, 0.2),
    ]


def test_the_item_page_refuses_what_it_cannot_show_with_a_sentence() -> None:
    a = build_run({"Politeness": [0.5, 0.5]})
    b = build_run({"Politeness": [0.5, 0.5]}, dataset=a.dataset, judge=a.judge)
    with pytest.raises(
        CompareError, match='Both runs must have the evaluator "Nope". Shared evaluators: Politeness'
    ):
        runs_compare_items(a=a, b=b, evaluator="Nope")
    with pytest.raises(CompareError, match="Unknown change"):
        runs_compare_items(a=a, b=b, evaluator="Politeness", change="better")
    with pytest.raises(CompareError, match="page link is not valid"):
        runs_compare_items(a=a, b=b, evaluator="Politeness", sort="change", after="x_y")


def test_word_diff_marks_changed_words_and_keeps_text_as_text() -> None:
    old, new, diffed = word_diff("Open  Settings, then Security.\n", "Open Settings, then <b>Privacy</b>.\n")
    assert diffed
    assert old == [("same", "Open  Settings, then "), ("del", "Security."), ("same", "\n")]
    assert new == [("same", "Open Settings, then "), ("ins", "<b>Privacy</b>."), ("same", "\n")]
    assert "".join(text for _, text in old) == "Open  Settings, then Security.\n"
    same, _, _ = word_diff("  same words", "same words")
    assert same == [("same", "  same words")]
    long, _, diffed = word_diff("word " * 5_000, "other")
    assert not diffed and long == [("same", "word " * 5_000)]


def test_change_is_measured_with_float_noise_ignored() -> None:
    assert change_of(0.3 - 0.1 - 0.2) == "unchanged"
    assert (change_of(0.01), change_of(-0.01)) == ("improved", "regressed")


# --- End to end: two uploads, the offline judge, the exports ------------------------------------------

QUESTIONS = 40


def answer(n: int, version: int) -> str:
    """v1 and v2 answers to question n: some get better, some worse, some stay the same."""
    base = f"Open Orders, choose order {n} and edit the delivery address."
    kind = n % 5
    polite, rude = f"Thanks for asking! {base}", f"Obviously {base} Read the manual."
    if kind == 0:
        return polite if version == 1 else rude
    if kind == 1:
        return rude if version == 1 else polite
    if kind == 2:
        return f"{base} Or write to jane.doe{n}@example.com." if version == 1 else base
    if kind == 3:
        return base if version == 1 else "I can't help with that, sorry."
    return base


def write_answers(path: Path, numbers: list[int], version: int, *, with_key: bool, seed: int) -> Path:
    rows = [
        {
            "id": f"case-{n}",
            "question": f"How do I change the delivery address of order {n}?",
            "answer": answer(n, version),
        }
        for n in numbers
    ]
    random.Random(seed).shuffle(rows)
    with path.open("w", newline="", encoding="utf-8") as file:
        columns = ["id", "question", "answer"] if with_key else ["question", "answer"]
        writer = csv.DictWriter(file, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


def exported_scores(run: Run) -> dict[str, dict[str, float | None]]:
    """question -> evaluator -> score, read back from the run's JSON Lines export."""
    scores = {}
    for line in "".join(export_stream(run, ResultsQuery(), fmt="jsonl")).splitlines():
        record = json.loads(line)
        scores[record["request"]] = {name: verdict["score"] for name, verdict in record["scores"].items()}
    return scores


@pytest.mark.parametrize("with_key", [True, False], ids=["key-column", "input-hash"])
def test_two_uploads_shuffled_dropped_and_added_pair_by_input_and_agree_with_the_exports(
    judges: dict[str, Judge], tmp_path: Path, with_key: bool
) -> None:
    # v1 answers questions 0-35; v2 drops 0-3 and 20 and adds 36-39; both files are shuffled.
    v1_numbers = list(range(36))
    v2_numbers = [n for n in range(4, QUESTIONS) if n != 20]
    v1, _ = dataset_import_file(
        path=write_answers(tmp_path / "v1.csv", v1_numbers, 1, with_key=with_key, seed=1)
    )
    v2, _ = dataset_import_file(
        path=write_answers(tmp_path / "v2.csv", v2_numbers, 2, with_key=with_key, seed=2)
    )
    assert v1 is not None and v2 is not None
    if with_key:
        assert v1.mapping["id"] == "key"
        assert {example.key for example in v1.examples.all()} == {f"case-{n}" for n in v1_numbers}
    else:
        assert all(key.startswith("h:") for key in v1.examples.values_list("input_key", flat=True))
    judge = judges[SUPPORT_JUDGE]
    a = pump_until_finished(run_create(dataset=v1, judge=judge, name="v1"))
    b = pump_until_finished(run_create(dataset=v2, judge=judge, name="v2"))

    comparison = runs_compare(a=a, b=b)

    before, after = exported_scores(a), exported_scores(b)
    common = set(before) & set(after)
    assert comparison.paired_by == "input"
    assert (
        (comparison.pairs, comparison.only_a, comparison.only_b)
        == (
            len(common),
            len(set(before) - common),
            len(set(after) - common),
        )
        == (31, 5, 4)
    )
    assert comparison.duplicated_keys == 0
    changed_somewhere = False
    for row in comparison.evaluators:
        differences = [
            after[question][row.name] - before[question][row.name]  # type: ignore[operator]
            for question in common
            if before[question][row.name] is not None and after[question][row.name] is not None
        ]
        expected = {
            "improved": sum(d > 1e-9 for d in differences),
            "regressed": sum(d < -1e-9 for d in differences),
            "unchanged": sum(abs(d) <= 1e-9 for d in differences),
        }
        assert (row.n, row.improved, row.regressed, row.unchanged) == (
            len(differences),
            expected["improved"],
            expected["regressed"],
            expected["unchanged"],
        ), row.name
        assert row.difference.mean == pytest.approx(sum(differences) / len(differences))
        assert row.n + row.unscored == comparison.pairs
        changed_somewhere |= bool(row.improved and row.regressed)
        # The item view lists exactly those pairs, and counts them the same.
        regressed = runs_compare_items(a=a, b=b, evaluator=row.name, change="regressed")
        assert regressed.count == row.regressed
        assert {pair.request_a for pair in regressed.rows} == {
            question
            for question in common
            if (after[question][row.name] or 0.0) - (before[question][row.name] or 0.0) < -1e-9
        }
    # Politeness went up on some questions and down on others: the test exercises both directions.
    assert changed_somewhere
