"""The calibration set: one record per reviewed (item, evaluator), the review that counts as the expected
answer, the judge's verdict at the run's own threshold, CSV cells that stay text, pages of items."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.utils import timezone

from evals.models import Example, Item, Review, Run
from evals.services import calibration_set
from evals.services.calibration_set import (
    COLUMNS,
    CalibrationSetError,
    calibration_runs,
    calibration_set_filename,
    calibration_set_size,
    calibration_set_stream,
    judge_lookup,
    reviewed_evaluators,
)
from evals.services.reviews import review_save
from tests.factories import build_run, make_judge

pytestmark = pytest.mark.django_db


def person(name: str) -> AbstractBaseUser:
    return get_user_model().objects.create_user(username=name, password="a-long-test-password")


def review(
    run: Run, position: int, evaluator: str, who: AbstractBaseUser, label: str, **kwargs: Any
) -> Review:
    item = Item.objects.get(run=run, position=position - 1)
    saved, _ = review_save(item=item, evaluator=evaluator, reviewer=who, label=label, **kwargs)
    return saved


def jsonl(runs: list[Run], evaluator: str | None = None) -> list[dict[str, Any]]:
    text = "".join(calibration_set_stream(runs=runs, fmt="jsonl", evaluator=evaluator))
    return [json.loads(line) for line in text.splitlines()]


def csv_rows(runs: list[Run], evaluator: str | None = None) -> list[list[str]]:
    text = "".join(calibration_set_stream(runs=runs, fmt="csv", evaluator=evaluator))
    return list(csv.reader(io.StringIO(text, newline="")))


def with_keys(run: Run, key: Callable[[int], str]) -> None:
    """Give the run's rows keys, as a key column mapped at upload does."""
    for example in Example.objects.filter(dataset=run.dataset):
        example.input_key = f"k:{key(example.position)}"
        example.save(update_fields=["input_key"])


@pytest.fixture
def run() -> Run:
    # Politeness passes at 0.7 in this run (learned from the judge), Accuracy at the default 0.5.
    run = build_run(
        {"Politeness": [0.7, 0.69, 0.9, 0.2], "Accuracy": [0.4, 0.8, None, 0.6]},
        thresholds={"Politeness": 0.7},
        name="Support bot, March",
        example_fields=lambda position: {
            "contexts": ["The password page is under Settings."] if position == 0 else [],
            "expected_output": "Settings > Security" if position == 0 else "",
            "system_prompt": "Be brief." if position == 0 else "",
            "turns": [{"role": "user", "content": "hi"}] if position == 0 else None,
        },
    )
    with_keys(run, lambda position: f"row-{position + 1}")
    return run


def test_one_record_per_reviewed_score_with_the_human_verdict_as_the_expected_answer(run: Run) -> None:
    ada = person("ada")
    review(run, 1, "Politeness", ada, "fail", comment="Curt.")
    review(run, 1, "Accuracy", ada, "pass", score=0.9)
    review(run, 2, "Politeness", ada, "pass")
    review(run, 4, "Accuracy", ada, "fail", score=0.25)
    records = jsonl([run])
    # Row 3 and row 4's Politeness were never reviewed: no records. Row order, then the run's evaluator order.
    assert [(record["position"], record["evaluator"]) for record in records] == [
        (1, "Politeness"),
        (1, "Accuracy"),
        (2, "Politeness"),
        (4, "Accuracy"),
    ]
    first, second, third, fourth = records
    assert set(first) == set(COLUMNS)
    assert first == {
        "request": "How do I reset my password? (row 0)",
        "response": "Open Settings, then Security (0).",
        "contexts": ["The password page is under Settings."],
        "expected_output": "Settings > Security",
        "system_prompt": "Be brief.",
        "turns": [{"role": "user", "content": "hi"}],
        "evaluator": "Politeness",
        "expected_score": 0.0,  # a fail without a corrected score
        "human_label": "fail",
        "judge_score": 0.7,
        "judge_label": "pass",  # 0.7 reaches this run's Politeness threshold of 0.7
        "reviewer": "ada",
        "comment": "Curt.",
        "reviews": 1,
        "run": run.pk,
        "position": 1,
        "key": "row-1",
    }
    # The corrected score is the target; 0.4 is under Accuracy's default threshold of 0.5.
    assert (second["expected_score"], second["judge_score"], second["judge_label"]) == (0.9, 0.4, "fail")
    # A pass without a corrected score is 1; 0.69 is just under 0.7.
    assert (third["expected_score"], third["judge_score"], third["judge_label"]) == (1.0, 0.69, "fail")
    assert (fourth["expected_score"], fourth["judge_label"], fourth["key"]) == (0.25, "pass", "row-4")
    assert calibration_set_size(runs=[run]) == 4


def test_where_several_people_reviewed_a_score_the_most_recently_changed_review_counts(run: Run) -> None:
    ada, bob, cy = person("ada"), person("bob"), person("cy")
    first = review(run, 1, "Politeness", ada, "fail", comment="too curt")
    review(run, 1, "Politeness", bob, "pass", score=0.8)
    review(run, 1, "Politeness", cy, "pass")
    now = timezone.now()
    # Ada changes her mind last: hers counts, though Bob's and Cy's reviews were made after hers.
    Review.objects.filter(reviewer__username="bob").update(updated_at=now - timedelta(minutes=2))
    Review.objects.filter(reviewer__username="cy").update(updated_at=now - timedelta(minutes=1))
    Review.objects.filter(pk=first.pk).update(updated_at=now, label="pass", score=0.75)
    (record,) = jsonl([run])
    assert (record["reviewer"], record["human_label"], record["expected_score"]) == ("ada", "pass", 0.75)
    assert record["comment"] == "too curt" and record["reviews"] == 3
    Review.objects.filter(reviewer__username="cy").update(updated_at=now + timedelta(minutes=1))
    (record,) = jsonl([run])
    assert (record["reviewer"], record["expected_score"], record["reviews"]) == ("cy", 1.0, 3)
    assert calibration_set_size(runs=[run]) == 1


def test_the_evaluator_filter_keeps_only_that_evaluator_s_records(run: Run) -> None:
    ada = person("ada")
    review(run, 1, "Politeness", ada, "fail")
    review(run, 1, "Accuracy", ada, "pass")
    review(run, 2, "Accuracy", ada, "fail")
    assert [(r["position"], r["evaluator"]) for r in jsonl([run], "Accuracy")] == [
        (1, "Accuracy"),
        (2, "Accuracy"),
    ]
    assert [(r["position"], r["evaluator"]) for r in jsonl([run], "Politeness")] == [(1, "Politeness")]
    assert jsonl([run], "Tone") == []
    assert calibration_set_size(runs=[run], evaluator="Accuracy") == 2


def test_csv_has_the_columns_in_order_and_text_cells_never_run_as_formulas() -> None:
    run = build_run(
        {"Politeness": [0.3]},
        requests=['=HYPERLINK("http://evil")'],
        responses=["-1 is the answer"],
        example_fields=lambda position: {"contexts": ["@a", "b"]},
    )
    with_keys(run, lambda position: "+k")
    review(run, 1, "Politeness", person("ada"), "fail", comment="=2+2\nsecond line")
    header, row = csv_rows([run])
    assert tuple(header) == COLUMNS
    cell = dict(zip(header, row, strict=True))
    assert cell["request"] == '\'=HYPERLINK("http://evil")'
    assert cell["response"] == "'-1 is the answer"
    assert json.loads(cell["contexts"]) == ["@a", "b"]  # a JSON list: starts with "[", nothing to neutralise
    assert cell["comment"] == "'=2+2\nsecond line"
    assert cell["key"] == "'+k"
    assert (cell["judge_score"], cell["judge_label"], cell["expected_score"]) == ("0.3", "fail", "0.0")
    assert (cell["turns"], cell["system_prompt"], cell["position"], cell["run"]) == ("", "", "1", str(run.pk))


def test_a_run_without_reviews_gives_a_header_only_csv_and_an_empty_jsonl(run: Run) -> None:
    assert csv_rows([run]) == [list(COLUMNS)]
    assert jsonl([run]) == []


def test_records_come_a_page_of_items_at_a_time_in_row_order_across_pages(
    run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(calibration_set, "ITEMS_PER_PAGE", 2)
    big = build_run({"Politeness": [0.1 * i for i in range(7)]})
    ada = person("ada")
    for position in (7, 1, 4, 2, 6):
        review(big, position, "Politeness", ada, "pass")
    chunks = list(calibration_set_stream(runs=[big], fmt="jsonl"))
    # Five reviewed items, two a page: pages of 2, 2 and 1 records.
    assert [chunk.count("\n") for chunk in chunks] == [2, 2, 1]
    records = [json.loads(line) for chunk in chunks for line in chunk.splitlines()]
    assert [record["position"] for record in records] == [1, 2, 4, 6, 7]


def test_an_unknown_format_is_refused_before_anything_is_read(run: Run) -> None:
    with pytest.raises(CalibrationSetError, match='Unknown format "xlsx"'):
        calibration_set_stream(runs=[run], fmt="xlsx")


def test_pooling_takes_the_reviewed_runs_of_the_same_judge_only(run: Run) -> None:
    ada = person("ada")
    same_judge = build_run({"Politeness": [0.2, 0.9]}, judge=run.judge)
    unreviewed = build_run({"Politeness": [0.5]}, judge=run.judge)
    other_judge = build_run({"Politeness": [0.6]})
    for reviewed in (same_judge, other_judge):
        review(reviewed, 1, "Politeness", ada, "pass")
    review(run, 2, "Accuracy", ada, "pass")
    pooled = calibration_runs(run=run, pooled=True)
    assert [each.pk for each in pooled] == [run.pk, same_judge.pk]
    assert unreviewed not in pooled and other_judge not in pooled
    assert calibration_runs(run=run, pooled=False) == [run]
    # A run without reviews of its own is in its own pooled set, with the reviewed ones.
    assert [each.pk for each in calibration_runs(run=unreviewed, pooled=True)] == [
        run.pk,
        same_judge.pk,
        unreviewed.pk,
    ]
    records = jsonl(pooled)
    assert [(record["run"], record["position"], record["evaluator"]) for record in records] == [
        (run.pk, 2, "Accuracy"),
        (same_judge.pk, 1, "Politeness"),
    ]
    # Each record is judged at its own run's threshold: 0.2 fails at the default 0.5.
    assert records[1]["judge_label"] == "fail"
    assert reviewed_evaluators(pooled) == ["Politeness", "Accuracy"]


def test_judges_are_found_by_id_remote_id_or_name_and_ambiguity_is_refused() -> None:
    support = make_judge("Support judge")
    assert judge_lookup(str(support.pk)) == support
    assert judge_lookup(support.remote_id) == support
    assert judge_lookup("  support JUDGE ") == support
    with pytest.raises(CalibrationSetError, match='No judge is called "Nobody"'):
        judge_lookup("Nobody")
    twin = make_judge("Support judge", version="v2")
    with pytest.raises(CalibrationSetError, match=rf"names 2 judges \(ids {support.pk}, {twin.pk}\)"):
        judge_lookup("support judge")


def test_file_names_say_which_run_or_judge_and_stay_ascii(run: Run) -> None:
    assert calibration_set_filename(run=run, pooled=False, fmt="csv") == (
        f"docket-run-{run.pk}-support-bot-march-calibration-set.csv"
    )
    run.judge.name = "Ünïcode judge"
    assert calibration_set_filename(run=run, pooled=True, fmt="jsonl", evaluator="Politeness") == (
        f"docket-judge-{run.judge_id}-unicode-judge-politeness-calibration-set.jsonl"
    )
