"""Datasets: upload -> check -> import all or nothing, the background task path, rename and delete."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from django.contrib.auth.models import AbstractBaseUser
from pytest_django.fixtures import Settings as SettingsWrapper

from evals import tasks
from evals.models import Dataset, Example, Judge, Run, Upload
from evals.selectors.datasets import upload_duplicates
from evals.services import dataset_rows, datasets, uploads
from evals.services.datasets import DatasetError

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def uploads_dir(settings: SettingsWrapper, tmp_path: Path) -> Path:
    settings.FILE_UPLOAD_TEMP_DIR = tmp_path / "uploads"
    return Path(settings.FILE_UPLOAD_TEMP_DIR)


@pytest.fixture
def batches_of_2000() -> Any:
    with mock.patch.object(dataset_rows, "WRITE_BATCH_ROWS", 2000):
        yield


def received(tmp_path: Path, text: str | bytes, name: str = "qa.csv") -> Path:
    """A file as the upload handler leaves it: somewhere temporary, to be moved."""
    path = tmp_path / f"incoming-{name}"
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def csv_rows(count: int, *, bad_at: set[int] = frozenset()) -> str:  # type: ignore[assignment]
    lines = ["question,answer,topic"]
    for i in range(count):
        lines.append(f"q{i},{'' if i in bad_at else f'a{i}'},t{i % 3}")
    return "\n".join(lines) + "\n"


def make_upload(tmp_path: Path, text: str | bytes, name: str = "qa.csv", user: Any = None) -> Upload:
    return uploads.upload_create(source=received(tmp_path, text, name), original_name=name, user=user)


def test_upload_is_moved_inspected_previewed_mapped_and_checked(
    tmp_path: Path, uploads_dir: Path, user: AbstractBaseUser
) -> None:
    upload = make_upload(tmp_path, csv_rows(3), user=user)
    assert Path(upload.path).parent == uploads_dir and Path(upload.path).exists()
    assert not (tmp_path / "incoming-qa.csv").exists()
    assert (upload.file_format, upload.encoding, upload.options["delimiter"]) == ("csv", "utf-8", ",")
    assert upload.columns == ["question", "answer", "topic"]
    assert upload.mapping == {"question": "request", "answer": "response", "topic": "metadata"}
    assert upload.options["preview"][0] == ["q0", "a0", "t0"]
    # Small files are checked in the request.
    assert upload.status == Upload.Status.VALIDATED
    assert (upload.report["rows"], upload.report["valid"], upload.report["invalid"]) == (3, 3, 0)
    assert upload.created_by == user
    assert not Dataset.objects.exists() and not Example.objects.exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "The file is empty."),
        ("question,answer\n", "The file has a header row but no data rows."),
        (b"\x00\x01\x02\x03" * 5000, "looks binary"),
    ],
)
def test_unusable_upload_is_refused_and_its_file_removed(
    tmp_path: Path, uploads_dir: Path, content: str | bytes, message: str
) -> None:
    with pytest.raises(DatasetError, match=message):
        make_upload(tmp_path, content)
    assert list(uploads_dir.iterdir()) == []
    assert not Upload.objects.exists()


def test_import_writes_rows_in_file_order_with_hash_lines_and_metadata(
    tmp_path: Path, user: AbstractBaseUser
) -> None:
    text = (
        'question,answer,context_1,context_2,topic\nq0,a0,c1,"[""c2"", ""c3""]",x\n\nq1,"multi\nline",,,y\n'
    )
    upload = make_upload(tmp_path, text)
    dataset = uploads.upload_import(upload=upload, name="My set", skip_invalid=False, user=user)
    assert (dataset.status, dataset.row_count, dataset.rows_done, dataset.name) == ("ready", 2, 2, "My set")
    assert dataset.uploaded_by == user and dataset.sha256 == upload.sha256
    assert dataset.metadata_columns == ["topic"]
    rows = list(dataset.examples.order_by("position"))
    assert [(e.position, e.source_line, e.request, e.response, e.contexts, e.metadata) for e in rows] == [
        (0, 2, "q0", "a0", ["c1", "c2", "c3"], {"topic": "x"}),
        (1, 4, "q1", "multi\nline", [], {"topic": "y"}),
    ]
    expected_key = Example.make_input_key(
        request="q0",
        contexts=["c1", "c2", "c3"],
        expected_output="",
        turns=None,
        system_prompt="",
    )
    assert rows[0].input_key == expected_key
    upload.refresh_from_db()
    assert upload.status == Upload.Status.IMPORTED and upload.dataset == dataset
    # A clean import leaves no file behind.
    assert not Path(upload.path).exists()


def test_import_with_invalid_rows_needs_skip_invalid(tmp_path: Path) -> None:
    upload = make_upload(tmp_path, csv_rows(5, bad_at={1, 3}))
    assert (upload.report["valid"], upload.report["invalid"]) == (3, 2)
    with pytest.raises(DatasetError, match="2 rows are invalid"):
        uploads.upload_import(upload=upload, name="x", skip_invalid=False)
    assert not Dataset.objects.exists()
    dataset = uploads.upload_import(upload=upload, name="x", skip_invalid=True)
    assert [e.request for e in dataset.examples.order_by("position")] == ["q0", "q2", "q4"]
    assert [e.position for e in dataset.examples.order_by("position")] == [0, 1, 2]
    assert [e.source_line for e in dataset.examples.order_by("position")] == [2, 4, 6]
    # The file stays for the invalid-rows download.
    assert Path(upload.path).exists()


def test_import_refused_when_the_mapping_changed_since_the_check(tmp_path: Path) -> None:
    upload = make_upload(tmp_path, csv_rows(2))
    upload.mapping = {**upload.mapping, "topic": "ignore"}
    upload.save()
    with pytest.raises(DatasetError, match="Check the rows before importing"):
        uploads.upload_import(upload=upload, name="x", skip_invalid=False)


def test_mapping_change_rechecks_the_rows(tmp_path: Path) -> None:
    upload = make_upload(tmp_path, "q,text,other\nhello,,x\nbye,,y\n")
    assert upload.mapping == {"q": "metadata", "text": "metadata", "other": "metadata"}
    assert upload.report == {} and upload.status == Upload.Status.RECEIVED  # no response column yet
    upload = uploads.upload_set_mapping(upload=upload, mapping={"q": "response"})
    assert upload.status == Upload.Status.VALIDATED and upload.report["valid"] == 2
    with pytest.raises(DatasetError, match="no column named 'nope'"):
        uploads.upload_set_mapping(upload=upload, mapping={"nope": "response"})
    with pytest.raises(DatasetError, match="Unknown field 'answer'"):
        uploads.upload_set_mapping(upload=upload, mapping={"q": "answer"})


def test_read_options_change_rereads_the_file(tmp_path: Path) -> None:
    upload = make_upload(tmp_path, "question;answer\nq;a\n")
    assert upload.options["delimiter"] == ";"
    upload = uploads.upload_set_read_options(upload=upload, delimiter=",")
    assert upload.columns == ["question;answer"]
    upload = uploads.upload_set_read_options(upload=upload, delimiter=";", encoding="cp1252")
    assert upload.columns == ["question", "answer"] and upload.encoding == "cp1252"
    assert upload.report["valid"] == 1
    with pytest.raises(DatasetError, match="comma, semicolon, tab or pipe"):
        uploads.upload_set_read_options(upload=upload, delimiter=":")


@pytest.mark.usefixtures("batches_of_2000")
def test_a_failure_late_in_the_file_leaves_no_rows(tmp_path: Path) -> None:
    upload = make_upload(tmp_path, csv_rows(9000))
    real_write = dataset_rows._write_examples
    calls = []

    def failing_write(dataset_id: int, params: list[Any]) -> None:
        first_position = params[0][1]
        calls.append(first_position)
        if first_position >= 8000:
            raise RuntimeError("disk full")
        real_write(dataset_id, params)

    with mock.patch.object(dataset_rows, "_write_examples", failing_write):
        dataset = uploads.upload_import(upload=upload, name="x", skip_invalid=False)
    assert calls == [0, 2000, 4000, 6000, 8000]
    dataset.refresh_from_db()
    assert dataset.status == Dataset.Status.FAILED
    assert "disk full" in dataset.import_error
    assert Example.objects.count() == 0
    upload.refresh_from_db()
    assert upload.status == Upload.Status.FAILED and "disk full" in upload.report["import_error"]
    # Trying again works and replaces the failed dataset.
    again = uploads.upload_import(upload=upload, name="x", skip_invalid=False)
    assert again.status == Dataset.Status.READY and again.examples.count() == 9000
    assert not Dataset.objects.filter(pk=dataset.pk).exists()


@pytest.mark.usefixtures("batches_of_2000")
def test_rows_are_written_in_bounded_transactions_with_progress(tmp_path: Path) -> None:
    upload = make_upload(tmp_path, csv_rows(4500))
    seen: list[tuple[int, int, str]] = []
    real_write = dataset_rows._write_examples

    def watching_write(dataset_id: int, params: list[Any]) -> None:
        dataset = Dataset.objects.get(pk=dataset_id)
        seen.append((dataset.rows_done, len(params), dataset.status))
        real_write(dataset_id, params)

    with mock.patch.object(dataset_rows, "_write_examples", watching_write):
        uploads.upload_import(upload=upload, name="x", skip_invalid=False)
    assert seen == [(0, 2000, "importing"), (2000, 2000, "importing"), (4000, 500, "importing")]


def test_batches_are_cut_by_all_the_text_they_write_metadata_included(tmp_path: Path) -> None:
    # Short questions and answers, long metadata: a wide file's rows are mostly metadata.
    lines = ["question,answer,notes"] + [f"q{i},a{i},{'n' * 400}" for i in range(10)]
    upload = make_upload(tmp_path, "\n".join(lines) + "\n")
    sizes: list[int] = []
    real_write = dataset_rows._write_examples

    def counting_write(dataset_id: int, params: list[Any]) -> None:
        sizes.append(len(params))
        real_write(dataset_id, params)

    with (
        mock.patch.object(dataset_rows, "WRITE_BATCH_CHARS", 1000),
        mock.patch.object(dataset_rows, "_write_examples", counting_write),
    ):
        dataset = uploads.upload_import(upload=upload, name="x", skip_invalid=False)
    assert sizes == [3, 3, 3, 1]
    assert dataset.status == Dataset.Status.READY and dataset.examples.count() == 10


@pytest.mark.django_db(transaction=True)
def test_no_transaction_is_open_while_rows_are_read_or_columns_worked_out(
    tmp_path: Path, settings: SettingsWrapper
) -> None:
    """A write transaction takes SQLite's one write lock: held during Python work, it makes other
    users' logins and saves wait, then fail with "database is locked"."""
    from django.db import connection

    settings.DOCKET_INLINE_IMPORT_MAX_BYTES = 100
    with mock.patch("django_q.tasks.async_task"):
        upload = make_upload(tmp_path, csv_rows(30))
        tasks.upload_validate(str(upload.pk))
        upload.refresh_from_db()
    seen: list[tuple[str, bool]] = []
    real_key, real_columns = Example.make_input_key, dataset_rows.metadata_columns

    def make_input_key(**kwargs: Any) -> str:
        seen.append(("row", connection.in_atomic_block))
        return real_key(**kwargs)

    def metadata_columns(*args: Any) -> list[str]:
        seen.append(("columns", connection.in_atomic_block))
        return real_columns(*args)

    with (
        mock.patch.object(Example, "make_input_key", staticmethod(make_input_key)),
        mock.patch.object(dataset_rows, "metadata_columns", metadata_columns),
        mock.patch("django_q.tasks.async_task"),
    ):
        dataset = uploads.upload_import(upload=upload, name="x", skip_invalid=False)
        tasks.dataset_import(str(upload.pk))
    dataset.refresh_from_db()
    assert dataset.status == Dataset.Status.READY and dataset.examples.count() == 30
    assert [what for what, _ in seen] == ["columns", *["row"] * 30, "columns"]
    assert [what for what, in_transaction in seen if in_transaction] == []


def test_metadata_columns_keep_file_order_then_new_json_keys_each_once() -> None:
    columns = ["question", "answer", "topic", "source", "unused"]
    mapping = {"question": "request", "answer": "response", "unused": "ignore"}
    assert dataset_rows.metadata_columns(columns, mapping, ["lang", "topic", "lang", "tone"]) == [
        "topic",
        "source",
        "lang",
        "tone",
    ]


class CountedColumn(str):
    """A column name that counts how often it is compared with another."""

    compares = 0

    def __eq__(self, other: object) -> bool:
        CountedColumn.compares += 1
        return str.__eq__(self, other)

    __hash__ = str.__hash__


def test_metadata_columns_compare_each_column_a_bounded_number_of_times() -> None:
    """Linear in the columns: with a list as the "seen" set, a 100,000-column file took 60 s here
    (every extra key compared with every kept column)."""
    count = 3000
    columns = [CountedColumn(f"field_{n}") for n in range(count)]
    # The same names met again as JSON keys, as distinct string objects (no identity shortcut).
    extra = [CountedColumn(f"field_{n}") for n in range(count)] + [CountedColumn("new")]
    CountedColumn.compares = 0
    result = dataset_rows.metadata_columns(columns, {}, extra)
    assert result == [*columns, "new"]
    assert CountedColumn.compares <= 2 * len(extra)


def test_large_file_is_checked_and_imported_by_background_tasks(
    tmp_path: Path, settings: SettingsWrapper, django_capture_on_commit_callbacks: Any
) -> None:
    settings.DOCKET_INLINE_IMPORT_MAX_BYTES = 100
    with (
        mock.patch("django_q.tasks.async_task") as async_task,
        django_capture_on_commit_callbacks(execute=True),
    ):
        upload = make_upload(tmp_path, csv_rows(50))
    assert upload.report["state"] == "checking" and upload.status == Upload.Status.RECEIVED
    async_task.assert_called_once()
    assert async_task.call_args.args == ("evals.tasks.upload_validate", str(upload.pk))

    tasks.upload_validate(str(upload.pk))
    upload.refresh_from_db()
    assert upload.status == Upload.Status.VALIDATED and upload.report["valid"] == 50

    with (
        mock.patch("django_q.tasks.async_task") as async_task,
        django_capture_on_commit_callbacks(execute=True),
    ):
        dataset = uploads.upload_import(upload=upload, name="big", skip_invalid=False)
    assert async_task.call_args.args == ("evals.tasks.dataset_import", str(upload.pk))
    # Until the task runs the dataset is importing, with its expected size, and has no rows.
    assert (
        dataset.status == Dataset.Status.IMPORTING
        and dataset.row_count == 50
        and not dataset.examples.exists()
    )

    tasks.dataset_import(str(upload.pk))
    dataset.refresh_from_db()
    assert dataset.status == Dataset.Status.READY and dataset.examples.count() == 50
    # A repeated delivery of the task does nothing more.
    tasks.dataset_import(str(upload.pk))
    assert dataset.examples.count() == 50


def test_background_check_report_is_dropped_if_the_mapping_changed_meanwhile(
    tmp_path: Path, settings: SettingsWrapper
) -> None:
    settings.DOCKET_INLINE_IMPORT_MAX_BYTES = 1
    with mock.patch("django_q.tasks.async_task"):
        upload = make_upload(tmp_path, csv_rows(5))
    first_key = upload.report["key"]
    real_validate = uploads.ingest.validate

    def validate_while_the_user_changes_the_mapping(*args: Any, **kwargs: Any) -> Any:
        result = real_validate(*args, **kwargs)
        with mock.patch("django_q.tasks.async_task"):
            uploads.upload_set_mapping(upload=Upload.objects.get(pk=upload.pk), mapping={"topic": "ignore"})
        return result

    with mock.patch.object(uploads.ingest, "validate", validate_while_the_user_changes_the_mapping):
        tasks.upload_validate(str(upload.pk))
    upload.refresh_from_db()
    # The finished check was for the old mapping: the page keeps waiting for the new one.
    assert upload.report["state"] == "checking" and upload.report["key"] != first_key
    tasks.upload_validate(str(upload.pk))
    upload.refresh_from_db()
    assert upload.report["state"] == "done" and upload.status == Upload.Status.VALIDATED
    assert upload.mapping["topic"] == "ignore"


def test_background_check_error_is_stored_for_the_page(tmp_path: Path, settings: SettingsWrapper) -> None:
    settings.DOCKET_MAX_ROWS = 3
    upload = make_upload(tmp_path, csv_rows(5))
    assert upload.report["state"] == "error"
    assert upload.report["error"] == "The file has more than 3 rows, over the row limit (DOCKET_MAX_ROWS)."
    with pytest.raises(DatasetError, match="Check the rows"):
        uploads.upload_import(upload=upload, name="x", skip_invalid=True)


def test_double_import_of_one_upload_creates_one_dataset(tmp_path: Path) -> None:
    upload = make_upload(tmp_path, csv_rows(3))
    stale_copy = Upload.objects.get(pk=upload.pk)
    uploads.upload_import(upload=upload, name="x", skip_invalid=False)
    with pytest.raises(DatasetError):
        uploads.upload_import(upload=stale_copy, name="x", skip_invalid=False)
    assert Dataset.objects.count() == 1


def test_same_file_again_points_at_the_earlier_dataset(tmp_path: Path) -> None:
    first = make_upload(tmp_path, csv_rows(3))
    dataset = uploads.upload_import(upload=first, name="first", skip_invalid=False)
    second = make_upload(tmp_path, csv_rows(3), name="copy.csv")
    assert list(upload_duplicates(second)) == [dataset]
    other = make_upload(tmp_path, csv_rows(4), name="other.csv")
    assert list(upload_duplicates(other)) == []
    # Still allowed.
    assert uploads.upload_import(upload=second, name="again", skip_invalid=False).status == "ready"


def test_xlsx_upload_opens_on_the_first_sheet_with_rows_and_another_can_be_chosen(tmp_path: Path) -> None:
    import openpyxl

    workbook = openpyxl.Workbook()
    workbook.active.title = "Readme"
    workbook.active.append(["This workbook holds answers"])
    for title in ("Answers", "More"):
        data = workbook.create_sheet(title)
        data.append(["prompt", "completion"])
        data.append([f"{title} p1", f"{title} c1"])
    path = tmp_path / "incoming.xlsx"
    workbook.save(path)
    upload = uploads.upload_create(source=path, original_name="book.xlsx")
    assert upload.options["sheets"] == ["Readme", "Answers", "More"]
    assert upload.options["sheet"] == "Answers"
    assert upload.mapping == {"prompt": "request", "completion": "response"}
    with pytest.raises(DatasetError, match="header row but no data rows"):
        uploads.upload_set_read_options(upload=Upload.objects.get(pk=upload.pk), sheet="Readme")
    upload = uploads.upload_set_read_options(upload=Upload.objects.get(pk=upload.pk), sheet="More")
    dataset = uploads.upload_import(upload=upload, name="book", skip_invalid=False)
    assert dataset.examples.get().response == "More c1"


@pytest.mark.usefixtures("batches_of_2000")
def test_deleting_an_importing_dataset_cancels_the_import(tmp_path: Path, settings: SettingsWrapper) -> None:
    settings.DOCKET_INLINE_IMPORT_MAX_BYTES = 100
    with mock.patch("django_q.tasks.async_task"):
        upload = make_upload(tmp_path, csv_rows(5000))
        tasks.upload_validate(str(upload.pk))
        upload.refresh_from_db()
        uploads.upload_import(upload=upload, name="x", skip_invalid=False)
    real_write = dataset_rows._write_examples

    def delete_midway(dataset_id: int, params: list[Any]) -> None:
        if params[0][1] == 2000:
            datasets.dataset_delete(dataset=Dataset.objects.get(pk=dataset_id))
        real_write(dataset_id, params)

    with mock.patch.object(dataset_rows, "_write_examples", delete_midway):
        tasks.dataset_import(str(upload.pk))
    assert not Dataset.objects.exists() and not Example.objects.exists()
    # The upload can be imported again.
    upload.refresh_from_db()
    assert upload.status == Upload.Status.VALIDATED and upload.dataset is None
    with mock.patch("django_q.tasks.async_task"):
        uploads.upload_import(upload=upload, name="again", skip_invalid=False)
    tasks.dataset_import(str(upload.pk))
    assert Dataset.objects.get().examples.count() == 5000


def test_import_file_checks_then_imports(tmp_path: Path) -> None:
    path = tmp_path / "file.jsonl"
    path.write_text("\n".join(json.dumps({"query": f"q{i}", "output": f"o{i}", "k": i}) for i in range(3)))
    dataset, report = datasets.dataset_import_file(path=path, name="", overrides=[("ignore", "k")])
    assert dataset is not None and dataset.name == "file" and dataset.row_count == 3
    assert dataset.examples.first().metadata == {}  # type: ignore[union-attr]
    assert report.valid == 3


def test_rename(tmp_path: Path) -> None:
    dataset = uploads.upload_import(upload=make_upload(tmp_path, csv_rows(1)), name="x", skip_invalid=False)
    datasets.dataset_rename(dataset=dataset, name="  New   name ")
    dataset.refresh_from_db()
    assert dataset.name == "New name"
    with pytest.raises(DatasetError, match="needs a name"):
        datasets.dataset_rename(dataset=dataset, name="   ")


def test_delete_is_refused_while_runs_use_the_dataset(tmp_path: Path) -> None:
    dataset = uploads.upload_import(upload=make_upload(tmp_path, csv_rows(3)), name="x", skip_invalid=False)
    judge = Judge.objects.create(api_url="http://judge", remote_id="j1", source="offline", name="J")
    Run.objects.create(dataset=dataset, judge=judge)
    with pytest.raises(DatasetError, match="1 run uses this dataset, so it can't be deleted"):
        datasets.dataset_delete(dataset=dataset)
    assert dataset.examples.count() == 3
    Run.objects.all().delete()
    datasets.dataset_delete(dataset=dataset)
    assert not Dataset.objects.exists() and not Example.objects.exists()


def test_stale_uploads_are_purged_with_their_files(tmp_path: Path) -> None:
    from django.utils import timezone

    old = make_upload(tmp_path, csv_rows(1))
    Upload.objects.filter(pk=old.pk).update(created_at=timezone.now() - uploads.UPLOAD_KEEP * 2)
    make_upload(tmp_path, csv_rows(2), name="new.csv")
    assert not Upload.objects.filter(pk=old.pk).exists()
    assert not Path(old.path).exists()
    assert Upload.objects.count() == 1


def test_every_field_reads_back_as_written_whatever_its_characters(tmp_path: Path) -> None:
    """The bulk writer (COPY on PostgreSQL, executemany elsewhere) stores what a model save would:
    COPY's own escapes (tab, newline, backslash, \\N) must not leak into or out of the text."""
    tricky = "tab\there, line\nbreak, back\\slash, \\N, \\t, quote \" and ' , é中😀"
    rows = [
        {
            "request": tricky,
            "response": "\\N",
            "contexts": [tricky, "\\"],
            "expected_output": "\\",
            "system_prompt": "\r\n",
            "session_id": "s\t1",
            "nested": {"a": [1, 2.5, None, True], "b": tricky},
            "number": 3,
        },
        {"request": "plain", "response": "", "turns": [{"role": "user", "content": tricky}]},
    ]
    path = tmp_path / "tricky.jsonl"
    path.write_text("\n".join(json.dumps(row) for row in rows), encoding="utf-8")
    dataset, report = datasets.dataset_import_file(path=path, skip_invalid=True)
    assert dataset is not None and report.valid == 2
    first, second = dataset.examples.order_by("position")
    assert (first.request, first.response, first.contexts) == (tricky, "\\N", [tricky, "\\"])
    assert (first.expected_output, first.system_prompt, first.session_id) == ("\\", "\r\n", "s\t1")
    assert first.metadata == {"nested": {"a": [1, 2.5, None, True], "b": tricky}, "number": 3}
    assert first.turns is None
    assert second.turns == [{"role": "user", "content": tricky}] and second.response == ""
