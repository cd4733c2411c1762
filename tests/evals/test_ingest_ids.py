"""user_id and session_id columns: guessed, mapped, checked to the judge API's 255 characters, imported,
and sent with each row."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pytest_django.fixtures import Settings as SettingsWrapper

from evals import ingest
from evals.ingest import ReadSpec
from evals.ingest.rows import MAX_ID_LENGTH
from evals.models import Example
from evals.services.datasets import dataset_import_file


@pytest.fixture(autouse=True)
def uploads_dir(settings: SettingsWrapper, tmp_path: Path) -> Path:
    settings.FILE_UPLOAD_TEMP_DIR = tmp_path / "uploads"
    return Path(settings.FILE_UPLOAD_TEMP_DIR)


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def check(
    path: Path, mapping: dict[str, str] | None = None
) -> tuple[ingest.Report, list[ingest.ParsedRow | ingest.InvalidRow]]:
    facts = ingest.inspect_file(path, name=path.name)
    spec = ReadSpec(str(path), facts.file_format, facts.encoding, facts.delimiter or ",")
    columns, _, _ = ingest.preview(spec)
    mapping = mapping or ingest.detect_mapping(columns)
    report = ingest.validate(spec, mapping)
    with ingest.checked_rows(spec, mapping) as (_table, _checker, outcomes):
        rows = list(outcomes)
    return report, rows


def test_user_and_session_id_columns_are_recognised_by_their_usual_names() -> None:
    mapping = ingest.detect_mapping(["question", "answer", "userId", "Session ID", "user"])
    assert mapping["userId"] == "user_id" and mapping["Session ID"] == "session_id"
    # "user" may hold the user's message: it is not taken for an id.
    assert mapping["user"] == "metadata"
    assert ingest.detect_mapping(["prompt", "response", "thread_id"])["thread_id"] == "session_id"


def test_two_columns_cannot_both_be_the_user_id() -> None:
    columns = ["answer", "user_id", "customer"]
    mapping = ingest.apply_overrides(columns, ingest.detect_mapping(columns), [])
    mapping["customer"] = "user_id"
    problems = ingest.mapping_problems(columns, mapping)
    assert problems == [
        "Only one column can be user id (copied onto the judge's log); 'user_id', 'customer' are all mapped to it."
    ]
    # Naming the other column moves the field to it, and the first falls back to metadata.
    moved = ingest.apply_overrides(columns, ingest.detect_mapping(columns), [("user_id", "customer")])
    assert (moved["customer"], moved["user_id"]) == ("user_id", "metadata")


def test_csv_ids_are_kept_off_the_metadata_and_an_overlong_one_names_its_line_and_column(
    tmp_path: Path,
) -> None:
    at_limit = "u" * MAX_ID_LENGTH
    too_long = "s" * (MAX_ID_LENGTH + 1)
    path = write(
        tmp_path,
        "chats.csv",
        "question,answer,user_id,session_id,topic\n"
        f"Hi?,Hello,{at_limit},s-1,greet\n"
        f"Bye?,Goodbye,u-2,{too_long},part\n"
        "Why?,Because,,,misc\n",
    )
    report, rows = check(path)
    assert (report.valid, report.invalid) == (2, 1)
    first, second, third = rows
    assert isinstance(first, ingest.ParsedRow) and isinstance(third, ingest.ParsedRow)
    assert (first.user_id, first.session_id, first.metadata) == (at_limit, "s-1", {"topic": "greet"})
    assert (third.user_id, third.session_id) == ("", "")
    assert isinstance(second, ingest.InvalidRow)
    assert [str(p) for p in second.problems] == [
        "line 3, column session_id: is 256 characters long; the judge API takes ids of at most 255"
    ]


def test_jsonl_ids_may_be_numbers_but_not_objects(tmp_path: Path) -> None:
    lines = [
        {"request": "a", "response": "b", "user_id": 17, "session_id": 4.0},
        {"request": "c", "response": "d", "user_id": {"id": 3}, "session_id": "s"},
    ]
    path = write(tmp_path, "rows.jsonl", "\n".join(json.dumps(line) for line in lines) + "\n")
    report, rows = check(path)
    assert (report.valid, report.invalid) == (1, 1)
    first, second = rows
    # A number is the same id as its text in a CSV (4.0 is the integer 4, as for the key column).
    assert isinstance(first, ingest.ParsedRow) and (first.user_id, first.session_id) == ("17", "4")
    assert isinstance(second, ingest.InvalidRow)
    assert [str(p) for p in second.problems] == ["line 2, column user_id: is a JSON object, not text"]


@pytest.mark.django_db
def test_imported_ids_are_stored_and_sent_to_the_judge_with_their_row(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "chats.csv",
        "prompt,answer,customer,conversation_id\nHi?,Hello,ada@example.com,c-1\nBye?,Goodbye,,\n",
    )
    # customer is no usual name for a user id: mapped by hand, as `import_dataset --map` does.
    dataset, report = dataset_import_file(path=path, overrides=[("user_id", "customer")])
    assert dataset is not None and report.valid == 2
    assert dataset.mapping["customer"] == "user_id" and dataset.mapping["conversation_id"] == "session_id"
    assert dataset.metadata_columns == []
    first, second = Example.objects.filter(dataset=dataset).order_by("position")
    assert (first.user_id, first.session_id) == ("ada@example.com", "c-1")
    sent = first.as_judge_input()
    assert (sent["user_id"], sent["session_id"]) == ("ada@example.com", "c-1")
    # A row without ids sends none (the judge API takes a missing id, not an empty one).
    assert "user_id" not in second.as_judge_input() and "session_id" not in second.as_judge_input()
