"""python manage.py import_dataset: output, problems on stderr, exit codes, nothing written on failure."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command

from evals.models import Dataset, Example

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]


def run(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("import_dataset", *args, stdout=out, stderr=err)
        code = 0
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    return code, out.getvalue(), err.getvalue()


def test_import_prints_the_dataset_id_and_row_count_last(tmp_path: Path) -> None:
    path = tmp_path / "qa.csv"
    path.write_text("question,answer,topic\nq1,a1,x\n\nq2,a2,y\n")
    code, out, err = run(str(path), "--name", "Quiz")
    dataset = Dataset.objects.get()
    assert code == 0 and err == ""
    assert out.splitlines()[-1] == f"dataset {dataset.pk}: 2 rows"
    assert "1 blank lines skipped" in out
    assert dataset.name == "Quiz" and dataset.status == Dataset.Status.READY
    assert list(dataset.examples.values_list("request", "response")) == [("q1", "a1"), ("q2", "a2")]


def test_invalid_rows_go_to_stderr_nothing_is_written_and_exit_is_2(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text('question,answer,contexts\nq1,a1,\nq2,,\nq3,a3,"[""x"", 1]"\n')
    code, out, err = run(str(path))
    assert code == 2
    assert err.splitlines() == [
        "line 3, column answer: is empty; each row needs a response",
        "line 4, column contexts: item 2 is a number, not text",
        "2 of 3 rows are invalid; nothing was imported. Fix them, or pass --skip-invalid to import only the valid rows.",
    ]
    assert out == ""
    assert not Dataset.objects.exists() and not Example.objects.exists()


def test_skip_invalid_imports_the_valid_rows_and_still_reports_the_others(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("question,answer\nq1,a1\nq2,\nq3,a3\n")
    code, out, err = run(str(path), "--skip-invalid")
    dataset = Dataset.objects.get()
    assert code == 0
    assert err.splitlines() == ["line 3, column answer: is empty; each row needs a response"]
    assert out.splitlines()[-1] == f"dataset {dataset.pk}: 2 rows"
    assert [e.source_line for e in dataset.examples.order_by("position")] == [2, 4]


def test_map_chooses_columns_for_fields(tmp_path: Path) -> None:
    path = tmp_path / "odd.jsonl"
    path.write_text(
        "\n".join(
            json.dumps({"txt": f"t{i}", "out": f"o{i}", "ref": "r", "c1": "a", "c2": "b"}) for i in range(2)
        )
    )
    code, out, _ = run(
        str(path),
        "--map",
        "request=txt",
        "--map",
        "response=out",
        "--map",
        "contexts=c1",
        "--map",
        "contexts=c2",
        "--map",
        "ignore=ref",
    )
    assert code == 0
    example = Dataset.objects.get().examples.first()
    assert example is not None
    assert (example.request, example.response, example.contexts, example.metadata) == (
        "t0",
        "o0",
        ["a", "b"],
        {},
    )


@pytest.mark.parametrize(
    ("name", "content", "args", "message"),
    [
        ("empty.csv", b"", [], "empty.csv: The file is empty."),
        ("header.csv", b"question,answer\n", [], "header.csv: The file has a header row but no data rows."),
        ("blob.dat", bytes(range(256)) * 64, [], "blob.dat: This file looks binary, not text."),
        (
            "old.xls",
            b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(512),
            [],
            "old.xls: This is an old Excel .xls file",
        ),
        (
            "qa.csv",
            b"question,answer\nq,a\n",
            ["--map", "response=nope"],
            "qa.csv: There is no column named 'nope'",
        ),
        (
            "qa.csv",
            b"question,answer\nq,a\n",
            ["--map", "response"],
            "--map 'response': write it as FIELD=COLUMN",
        ),
        ("q.csv", b"question,notes\nq,a\n", [], "q.csv: Map a column to response (or to turns)"),
    ],
)
def test_unreadable_file_exits_2_with_one_sentence(
    tmp_path: Path, name: str, content: bytes, args: list[str], message: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    code, out, err = run(str(path), *args)
    assert code == 2
    assert err.startswith(message) and len(err.strip().splitlines()) == 1
    assert "Traceback" not in err and out == ""
    assert not Dataset.objects.exists()


def test_missing_file_exits_2(tmp_path: Path) -> None:
    code, _, err = run(str(tmp_path / "nowhere.csv"))
    assert code == 2 and err.strip() == f"{tmp_path / 'nowhere.csv'}: no such file."


def test_file_over_the_caps_exits_2(tmp_path: Path, settings: object) -> None:
    path = tmp_path / "qa.csv"
    path.write_text("question,answer\n" + "q,a\n" * 20)
    settings.DOCKET_MAX_UPLOAD_BYTES = 50  # type: ignore[attr-defined]
    assert run(str(path))[2].strip() == "qa.csv: The file is 96 bytes, over the 50 bytes upload limit."
    settings.DOCKET_MAX_UPLOAD_BYTES = 10_000  # type: ignore[attr-defined]
    settings.DOCKET_MAX_ROWS = 5  # type: ignore[attr-defined]
    code, _, err = run(str(path))
    assert (
        code == 2
        and err.strip() == "qa.csv: The file has more than 5 rows, over the row limit (DOCKET_MAX_ROWS)."
    )


def test_a_failure_while_writing_leaves_nothing(tmp_path: Path) -> None:
    from unittest import mock

    from evals.services import dataset_rows

    path = tmp_path / "qa.csv"
    path.write_text("question,answer\n" + "".join(f"q{i},a{i}\n" for i in range(30)))
    real_write = dataset_rows._write_examples
    writes = []

    def fail_on_second(dataset_id: int, params: list[object]) -> None:
        writes.append(len(params))
        if len(writes) == 2:
            raise RuntimeError("connection lost")
        real_write(dataset_id, params)

    with (
        mock.patch.object(dataset_rows, "WRITE_BATCH_ROWS", 10),
        mock.patch.object(dataset_rows, "_write_examples", fail_on_second),
        pytest.raises(RuntimeError),
    ):
        call_command("import_dataset", str(path), stdout=io.StringIO(), stderr=io.StringIO())
    assert writes == [10, 10]
    assert not Dataset.objects.exists() and not Example.objects.exists()


def test_real_process_exit_status_and_stderr(tmp_path: Path) -> None:
    """Through manage.py as a user runs it: exit status 2 and a single line, no traceback."""
    path = tmp_path / "empty.csv"
    path.write_bytes(b"")
    result = subprocess.run(
        [sys.executable, "manage.py", "import_dataset", str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={"DOCKET_VAR_DIR": str(tmp_path / "var"), "PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == "empty.csv: The file is empty."
