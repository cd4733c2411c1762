"""Exports: every column, formulas neutralised in text cells only, filters honoured.

That an export streams in flat memory as a run grows is measured by bench/results.py, not asserted here."""

from __future__ import annotations

import csv
import io
import json

import pytest
from django.http import QueryDict

from evals.models import Example, Run
from evals.selectors.export import export_filename, export_headers, export_stream, neutralise
from evals.selectors.results import ResultsQuery
from tests.factories import build_run


def whole_run(run: Run) -> ResultsQuery:
    return ResultsQuery.from_params(QueryDict("sort=position"), run=run)


def read_csv(run: Run, query: ResultsQuery | None = None) -> list[list[str]]:
    text = "".join(export_stream(run, query or whole_run(run), fmt="csv"))
    return list(csv.reader(io.StringIO(text, newline="")))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('=HYPERLINK("http://evil","x")', '\'=HYPERLINK("http://evil","x")'),
        ("+1+2", "'+1+2"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1:A9)", "'@SUM(A1:A9)"),
        ("\t=1", "'\t=1"),
        ("\r=1", "'\r=1"),
        ("-0.5", "'-0.5"),  # text that looks like a number is still text
        ("a=b", "a=b"),
        ("plain answer", "plain answer"),
        ("", ""),
    ],
)
def test_neutralise_prefixes_text_that_a_spreadsheet_would_run(text: str, expected: str) -> None:
    assert neutralise(text) == expected


@pytest.mark.django_db
def test_csv_has_every_column_and_neutralises_only_text_cells() -> None:
    run = build_run(
        {"Politeness": [-0.5, 0.25], "Concision": [1.0, None]},
        name="Nightly: release/2.3",
        requests=["=cmd|' /C calc'!A0", "How do I reset it?"],
        responses=["-2+3", "@me see Settings"],
        metadata=lambda position: {"team": ["+billing", "support"][position], "weight": [-0.5, 3][position]},
        justification=lambda name, position, score: f'=HYPERLINK("x") {name} {position}',
        example_fields=lambda position: {
            "contexts": ["doc one", "=doc two"],
            "expected_output": "\tTab first",
        },
    )
    rows = read_csv(run)
    header, first, second = rows
    assert header == [
        "position",
        "key",
        "request",
        "response",
        "contexts",
        "expected_output",
        "turns",
        "system_prompt",
        "status",
        "error",
        "execution_log_id",
        "team",
        "weight",
        "Politeness score",
        "Politeness justification",
        "Concision score",
        "Concision justification",
    ]
    record = dict(zip(header, first, strict=True))
    assert record["position"] == "1"
    assert record["key"] == "", "rows paired by a hash of their inputs have no key"
    assert record["request"] == "'=cmd|' /C calc'!A0"
    assert record["response"] == "'-2+3"
    assert json.loads(record["contexts"]) == ["doc one", "=doc two"]  # a JSON list, starting with "["
    assert record["expected_output"] == "'\tTab first"
    assert record["team"] == "'+billing"
    # Numbers stay numbers a spreadsheet can add up: a score and a numeric metadata value of -0.5.
    assert record["Politeness score"] == "-0.5"
    assert record["weight"] == "-0.5"
    assert record["Politeness justification"] == '\'=HYPERLINK("x") Politeness 0'
    assert record["status"] == "completed" and record["execution_log_id"].startswith("log-")
    other = dict(zip(header, second, strict=True))
    assert other["response"] == "'@me see Settings"
    assert other["Concision score"] == "" and other["Concision justification"] == ""
    assert other["weight"] == "3"


@pytest.mark.django_db
def test_jsonl_keeps_structure_and_text_as_it_is() -> None:
    run = build_run(
        {"Politeness": [0.5, None]},
        requests=["=1+1", "second"],
        metadata=lambda position: {"team": "a"},
    )
    lines = "".join(export_stream(run, whole_run(run), fmt="jsonl")).splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert first["request"] == "=1+1"  # JSON is data: nothing to neutralise
    assert first["scores"] == {"Politeness": {"score": 0.5, "justification": "Politeness: 0.5"}}
    assert first["metadata"] == {"team": "a"} and first["contexts"] == []
    assert second["status"] == "failed" and second["error"] == "The judge could not score this row."
    assert second["scores"]["Politeness"]["score"] is None


@pytest.mark.django_db
def test_an_export_follows_the_views_filters_and_order() -> None:
    run = build_run({"Politeness": [0.9, 0.1, None, 0.5, 0.3]})
    failed = read_csv(run, ResultsQuery.from_params(QueryDict("status=failed"), run=run))
    assert [row[0] for row in failed[1:]] == ["3"]
    worst_first = read_csv(run, ResultsQuery.from_params(QueryDict("sort=score:Politeness"), run=run))
    # By score, lowest first, then the unscored row.
    assert [row[0] for row in worst_first[1:]] == ["2", "5", "4", "1", "3"]
    ranged = read_csv(
        run, ResultsQuery.from_params(QueryDict("min.Politeness=0.3&max.Politeness=0.6"), run=run)
    )
    assert sorted(row[0] for row in ranged[1:]) == ["4", "5"]


@pytest.mark.django_db
def test_file_names_are_safe_ascii() -> None:
    run = build_run({"Politeness": [0.5]}, name='Nightly "release" ../../etc/passwd ünïcode')
    name = export_filename(run, "csv")
    assert name == f"docket-run-{run.pk}-nightly-release-etcpasswd-unicode.csv"
    assert export_headers(run)[-2:] == ["Politeness score", "Politeness justification"]


@pytest.mark.django_db
def test_exports_carry_the_rows_key_so_two_uploads_join_as_compare_pairs_them() -> None:
    run = build_run({"Politeness": [0.5, 0.75]})
    Example.objects.filter(dataset=run.dataset, position=0).update(input_key="k:case-17")
    Example.objects.filter(dataset=run.dataset, position=1).update(input_key="k:=HYPERLINK()")
    header, first, second = read_csv(run)
    assert [dict(zip(header, row, strict=True))["key"] for row in (first, second)] == [
        "case-17",
        "'=HYPERLINK()",
    ]
    records = [
        json.loads(line) for line in "".join(export_stream(run, whole_run(run), fmt="jsonl")).splitlines()
    ]
    assert [record["key"] for record in records] == ["case-17", "=HYPERLINK()"]
