"""The attack suite for files (issue 11): each crafted file goes through the upload's path and the
import_dataset command's path, and must be refused, or have its bad row named, without writing a row.

The refusals are checked on the same files built smaller, under limits lowered to match, so each
still crosses the limit it is about in a fraction of the time. The files that attack memory (a part,
a string or a line that unpacks to hundreds of megabytes) are also read at their real size in a
fresh process (tests/hostile/measure.py reads the file as an upload is read and reports VmHWM), whose
peak must stay under 500 MB: a reader that held one of them whole would need gigabytes, so that
bound holds on any machine however loaded. Time is not asserted here; bench/hostile.py prints each
file's seconds and peak memory at its real size and under the real limits.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pytest_django.fixtures import Settings as SettingsWrapper

from evals.models import Dataset, Example
from evals.services import datasets, uploads
from evals.services.datasets import DatasetError
from tests.hostile import build

ROOT = Path(__file__).resolve().parents[2]
PEAK_MB = 500


@dataclass(frozen=True)
class Case:
    builder: str
    # Refused as a whole: a part of the message. Or one invalid row: its line, column and a part of the reason.
    refused: str = ""
    line: int = 0
    column: str = ""
    reason: str = ""
    # The refusal tests read the file built smaller (these builder arguments) under these lower limits
    # (settings): the same shape of attack, crossing the same limit.
    smaller: tuple[tuple[str, int], ...] = ()
    limits: tuple[tuple[str, int], ...] = ()
    # The attack is on memory: also read at its real size, in a fresh process, under 500 MB.
    memory: bool = False

    def __str__(self) -> str:
        return self.builder


MiB = build.MiB
PART_LIMIT = ("DOCKET_MAX_XLSX_PART_BYTES", MiB)
LINE_LIMIT = ("DOCKET_MAX_LINE_CHARS", 1_000_000)
CASES = [
    Case(
        "xlsx_shared_string_bomb",
        refused="limit for one part (DOCKET_MAX_XLSX_PART_BYTES)",
        smaller=(("inflated", 4 * MiB),),
        limits=(PART_LIMIT,),
        memory=True,
    ),
    Case(
        "xlsx_lying_sizes",
        refused="Bad CRC-32 for file 'xl/sharedStrings.xml'",
        smaller=(("inflated", 4 * MiB),),
        memory=True,
    ),
    Case(
        "xlsx_blank_rows",
        refused="limit for one part (DOCKET_MAX_XLSX_PART_BYTES)",
        smaller=(("blank", 1_000_000),),
        limits=(PART_LIMIT,),
        memory=True,
    ),
    Case(
        "xlsx_blank_rows_under_part_limit",
        refused="rows counting blank ones, over the row limit (DOCKET_MAX_ROWS)",
        smaller=(("blank", 40_000),),
        limits=(("DOCKET_MAX_ROWS", 10_000),),
    ),
    Case(
        "xlsx_many_shared_strings",
        refused="more than 10,000 shared strings, over the limit (DOCKET_MAX_XLSX_STRINGS)",
        smaller=(("count", 20_000),),
        limits=(("DOCKET_MAX_XLSX_STRINGS", 10_000),),
    ),
    Case(
        "xlsx_far_column",
        line=3,
        column="(row)",
        reason="column 16,384, over the 2,000-column limit (DOCKET_MAX_COLUMNS)",
    ),
    Case("csv_wide", refused="100,000 columns, over the 2,000-column limit (DOCKET_MAX_COLUMNS)"),
    Case(
        "jsonl_deep",
        line=2,
        column="(row)",
        reason="nested more than 64 levels deep, over the limit (DOCKET_MAX_JSON_DEPTH)",
    ),
    Case(
        "json_deep",
        refused="element starting on line 3 is nested more than 64 levels deep, over the limit (DOCKET_MAX_JSON_DEPTH)",
    ),
    Case("csv_deep_turns", line=3, column="turns", reason="nested more than 64 levels deep"),
    Case("jsonl_surrogate_value", line=2, column="response", reason="holds a lone surrogate (\\ud800)"),
    Case(
        "jsonl_surrogate_key", line=2, column="(row)", reason='has a key with a lone surrogate ("k\\ud800")'
    ),
    Case("json_surrogate_key", line=3, column="m", reason='has a key with a lone surrogate ("\\udc00")'),
    Case("jsonl_duplicate_key", line=2, column="(row)", reason="has the key 'response' twice in one object"),
    Case("csv_unclosed_quote", line=3, column="(row)", reason="a quote opened here never closes"),
    Case(
        "csv_long_line",
        refused="Line 2 is longer than",
        smaller=(("size", 4 * MiB),),
        limits=(LINE_LIMIT,),
        memory=True,
    ),
    Case(
        "jsonl_long_line",
        line=2,
        column="(row)",
        reason="characters, over the line limit (DOCKET_MAX_LINE_CHARS)",
        smaller=(("size", 4 * MiB),),
        limits=(LINE_LIMIT,),
        memory=True,
    ),
]


def xlsx_blank_rows_under_part_limit(folder: Path, blank: int = 40_000_000) -> Path:
    # 40 million <row/> unpack to 240 MB, under the part limit: the row limit, blank rows counted, stops them.
    path = build.xlsx_blank_rows(folder, blank=blank)
    return path.rename(folder / "blank-rows-under-part-limit.xlsx")


BUILDERS = {**build.BUILDERS, "xlsx_blank_rows_under_part_limit": xlsx_blank_rows_under_part_limit}


def params(cases: list[Case] = CASES) -> list[Any]:
    return [pytest.param(case, id=case.builder) for case in cases]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """Each file built once for the module (the XLSX bombs take seconds to compress); tests copy them."""
    folder = tmp_path_factory.mktemp("hostile")
    paths: dict[str, Path] = {}

    def get(name: str, **arguments: int) -> Path:
        key = "-".join([name, *(f"{key}{value}" for key, value in sorted(arguments.items()))])
        if key not in paths:
            (folder / key).mkdir()
            paths[key] = BUILDERS[name](folder / key, **arguments)
        return paths[key]

    return get


@pytest.fixture
def smaller(case: Case, built: Callable[..., Path], settings: SettingsWrapper) -> Path:
    """The case's file built smaller, with the limits lowered to match for this test."""
    for name, value in case.limits:
        setattr(settings, name, value)
    return built(case.builder, **dict(case.smaller))


@pytest.fixture
def uploads_dir(settings: SettingsWrapper, tmp_path: Path) -> Path:
    settings.FILE_UPLOAD_TEMP_DIR = tmp_path / "uploads"
    return Path(settings.FILE_UPLOAD_TEMP_DIR)


def problem_lines(problems: list[Any]) -> list[tuple[int, str, str]]:
    return [(int(line), str(column), str(reason)) for line, column, reason in problems]


def assert_named(case: Case, problems: list[tuple[int, str, str]]) -> None:
    assert len(problems) == 1, problems
    line, column, reason = problems[0]
    assert (line, column) == (case.line, case.column)
    assert case.reason in reason


@pytest.mark.django_db
@pytest.mark.parametrize("case", params())
def test_the_import_command_refuses_the_file_or_names_its_bad_row_and_writes_nothing(
    case: Case, smaller: Path
) -> None:
    path = smaller
    if case.refused:
        with pytest.raises(DatasetError) as refused:
            datasets.dataset_import_file(path=path)
        assert case.refused in str(refused.value)
    else:
        dataset, report = datasets.dataset_import_file(path=path)
        assert dataset is None
        assert_named(case, [(p.line, p.column, p.reason) for p in report.problems])
    assert not Dataset.objects.exists() and not Example.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("case", params())
def test_an_upload_of_the_file_is_refused_or_its_check_names_the_bad_row(
    case: Case, smaller: Path, tmp_path: Path, uploads_dir: Path
) -> None:
    made = smaller
    received = tmp_path / f"incoming-{made.name}"
    shutil.copyfile(made, received)  # the upload moves the file it receives
    try:
        upload = uploads.upload_create(source=received, original_name=made.name)
    except DatasetError as error:
        message = str(error)
    else:
        uploads.upload_validate(upload_id=upload.pk)  # large files are checked by a task: run it here
        upload.refresh_from_db()
        message = upload.report.get("error", "")
        if not case.refused:
            assert_named(case, problem_lines(upload.report["problems"]))
    if case.refused:
        assert case.refused in message
    assert not Dataset.objects.exists() and not Example.objects.exists()


def measure(path: Path, var_dir: Path) -> dict[str, Any]:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "dashboard.settings", "DOCKET_VAR_DIR": str(var_dir)}
    done = subprocess.run(
        [sys.executable, "-m", "tests.hostile.measure", str(path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


@pytest.mark.slow  # hundreds of megabytes to build and to refuse, each in a fresh process
@pytest.mark.parametrize("case", params([case for case in CASES if case.memory]))
def test_reading_the_file_at_its_real_size_as_an_upload_peaks_under_500_mb(
    case: Case, built: Callable[..., Path], tmp_path: Path
) -> None:
    path = built(case.builder)
    result = measure(path, tmp_path / "var")
    if case.refused:
        assert result["outcome"] == "refused" and case.refused in result["message"]
    else:
        assert result["outcome"] == "invalid"
        named = f"line {case.line}, column {case.column}: "
        assert any(problem.startswith(named) and case.reason in problem for problem in result["problems"])
    assert result["peak_mb"] < PEAK_MB, result


def test_a_sheet_whose_dimension_claims_a1_to_xfd1048576_reads_its_real_rows_and_imports(
    db: None, tmp_path: Path
) -> None:
    path = build.xlsx_dimension_lie(tmp_path, rows=20_000)
    result = measure(path, tmp_path / "var")
    assert (result["outcome"], result["rows"], result["columns"]) == ("valid", 20_000, 2)
    assert result["peak_mb"] < PEAK_MB, result
    dataset, report = datasets.dataset_import_file(path=path)
    assert dataset is not None and report.blank == 0
    assert dataset.columns == ["prompt", "response"] and dataset.examples.count() == 20_000
