"""manage.py export_run: the run's export on standard output or in a file; exit status 2 for bad input."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command

from tests.factories import build_run

ROOT = Path(settings.BASE_DIR)


def export(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("export_run", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


@pytest.mark.django_db
def test_csv_goes_to_standard_output_in_row_order() -> None:
    run = build_run({"Politeness": [0.7, None, 0.1]}, requests=["=2+2", "second", "third"])
    out, err = export(str(run.pk))
    rows = list(csv.reader(io.StringIO(out, newline="")))
    assert rows[0][:3] == ["position", "key", "request"] and rows[0][-2:] == [
        "Politeness score",
        "Politeness justification",
    ]
    assert [row[0] for row in rows[1:]] == ["1", "2", "3"]
    assert rows[1][2] == "'=2+2"  # neutralised, as on the web
    assert rows[2][8] == "failed"
    assert err == ""


@pytest.mark.django_db
def test_jsonl_goes_to_a_file(tmp_path: Path) -> None:
    run = build_run({"Politeness": [0.5, 0.6]})
    target = tmp_path / "out.jsonl"
    out, err = export(str(run.pk), "--format", "jsonl", "--output", str(target))
    assert out == ""
    assert f"Run {run.pk}: 2 items written to {target} (jsonl)." in err
    records = [json.loads(line) for line in target.read_text(encoding="utf-8").splitlines()]
    assert [record["scores"]["Politeness"]["score"] for record in records] == [0.5, 0.6]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["abc"], '"abc" is not a run id'),
        (["999999"], "There is no run 999999."),
        (["1", "--format", "xlsx"], 'Unknown format "xlsx": use --format csv or --format jsonl.'),
        (["RUN", "--output", "/nonexistent-dir/x.csv"], "cannot write there"),
    ],
)
def test_bad_input_is_one_line_and_exit_status_2(args: list[str], message: str) -> None:
    if "RUN" in args:
        args = [str(build_run({"Politeness": [0.5]}).pk) if arg == "RUN" else arg for arg in args]
    err = io.StringIO()
    with pytest.raises(SystemExit) as exit_info:
        call_command("export_run", *args, stdout=io.StringIO(), stderr=err)
    assert exit_info.value.code == 2
    assert message in err.getvalue()
    assert "Traceback" not in err.getvalue()


@pytest.mark.parametrize(
    ("args", "message"),
    [(["abc"], "is not a run id"), (["1", "--format", "xml"], 'Unknown format "xml"')],
)
def test_the_real_command_line_exits_2(args: list[str], message: str, tmp_path: Path) -> None:
    # Checked before the database is touched, so a throwaway var dir is enough.
    env = {"PATH": "/usr/bin:/bin", "DOCKET_VAR_DIR": str(tmp_path), "HOME": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "export_run", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert message in done.stderr
    assert done.stdout == ""


@pytest.mark.django_db
def test_corrected_adds_the_corrected_score(django_user_model: object) -> None:
    from evals.models import Review

    run = build_run({"Politeness": [0.7, 0.2]})
    reviewer = django_user_model.objects.create_user(username="rita", password="a-long-test-password")  # type: ignore[attr-defined]
    Review.objects.create(
        item=run.items.get(position=1),
        run=run,
        evaluator_name="Politeness",
        reviewer=reviewer,
        reviewer_name="rita",
        label="pass",
        score=0.9,
    )
    plain = list(csv.DictReader(io.StringIO(export(str(run.pk))[0], newline="")))
    corrected = list(csv.DictReader(io.StringIO(export(str(run.pk), "--corrected")[0], newline="")))
    assert "Politeness corrected score" not in plain[0]
    assert [row["Politeness corrected score"] for row in corrected] == ["0.7", "0.9"]
    assert [row["Politeness score"] for row in corrected] == ["0.7", "0.2"]
