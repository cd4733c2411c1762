"""manage.py export_reviews: a run's or a judge's reviewed items as a calibration set; CommandError for bad input."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.management import call_command
from django.core.management.base import CommandError

from evals.models import Item, Run
from evals.services.calibration_set import COLUMNS
from evals.services.reviews import review_save
from tests.factories import build_run, make_judge

pytestmark = pytest.mark.django_db


def export(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("export_reviews", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def review(run: Run, position: int, evaluator: str, who: AbstractBaseUser, label: str, **kw: Any) -> None:
    item = Item.objects.get(run=run, position=position - 1)
    review_save(item=item, evaluator=evaluator, reviewer=who, label=label, **kw)


@pytest.fixture
def ann() -> AbstractBaseUser:
    return get_user_model().objects.create_user(username="ann", password="a-long-test-password")


@pytest.fixture
def run(ann: AbstractBaseUser) -> Run:
    judge = make_judge("Support judge", evaluators=["Politeness", "Accuracy"])
    run = build_run({"Politeness": [0.9, 0.2, 0.6], "Accuracy": [0.3, 0.8, 0.7]}, judge=judge)
    review(run, 3, "Politeness", ann, "fail", comment="=SUM(A1)")
    review(run, 1, "Accuracy", ann, "pass", score=0.7)
    return run


def test_a_run_s_calibration_set_goes_to_standard_output_as_csv(run: Run) -> None:
    out, err = export("--run", str(run.pk))
    header, *rows = list(csv.reader(io.StringIO(out, newline="")))
    assert tuple(header) == COLUMNS
    cells = [dict(zip(header, row, strict=True)) for row in rows]
    assert [
        (cell["position"], cell["evaluator"], cell["human_label"], cell["expected_score"]) for cell in cells
    ] == [
        ("1", "Accuracy", "pass", "0.7"),
        ("3", "Politeness", "fail", "0.0"),
    ]
    # 0.6 passes at the default threshold of 0.5: the reviewer disagrees. The comment stays text.
    assert (cells[1]["judge_label"], cells[1]["comment"]) == ("pass", "'=SUM(A1)")
    assert err == ""


def test_a_judge_s_calibration_set_pools_its_reviewed_runs_into_a_jsonl_file(
    run: Run, ann: AbstractBaseUser, tmp_path: Path
) -> None:
    later = build_run({"Politeness": [0.4]}, judge=run.judge)
    review(later, 1, "Politeness", ann, "pass")
    stranger = build_run({"Politeness": [0.4]})
    review(stranger, 1, "Politeness", ann, "pass")
    target = tmp_path / "set.jsonl"
    out, err = export(
        "--judge", "support JUDGE", "--evaluator", "Politeness", "--format", "jsonl", "--output", str(target)
    )
    assert out == ""
    assert f"Support judge (2 reviewed runs): 2 reviewed scores written to {target} (jsonl)." in err
    records = [json.loads(line) for line in target.read_text(encoding="utf-8").splitlines()]
    assert [(record["run"], record["position"], record["human_label"]) for record in records] == [
        (run.pk, 3, "fail"),
        (later.pk, 1, "pass"),
    ]
    # The judge's id works as well as its name.
    by_id, _ = export("--judge", str(run.judge_id), "--format", "jsonl")
    assert len(by_id.splitlines()) == 3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--run", "abc"], '"abc" is not a run id'),
        (["--run", "999999"], "There is no run 999999."),
        (["--run", "RUN", "--format", "xlsx"], 'Unknown format "xlsx": use --format csv or --format jsonl.'),
        (
            ["--run", "RUN", "--evaluator", "Tone"],
            'has no evaluator "Tone"; its evaluators: Politeness, Accuracy.',
        ),
        (["--run", "RUN", "--output", "/nonexistent-dir/x.csv"], "cannot write there"),
        (["--judge", "Nobody"], 'No judge is called "Nobody".'),
        ([], "one of the arguments --run --judge is required"),
        (["--run", "RUN", "--judge", "Support judge"], "not allowed with argument"),
    ],
)
def test_bad_input_is_one_clear_command_error(run: Run, args: list[str], message: str) -> None:
    args = [str(run.pk) if arg == "RUN" else arg for arg in args]
    with pytest.raises(CommandError) as raised:
        export(*args)
    assert message in str(raised.value)


def test_an_ambiguous_judge_name_asks_for_the_id(run: Run) -> None:
    make_judge("Support judge", version="v2")
    with pytest.raises(CommandError, match="names 2 judges") as raised:
        export("--judge", "Support judge")
    assert raised.value.returncode == 2  # as export_run's bad input
