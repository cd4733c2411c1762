"""Datasets: receiving a file, checking it, and importing its rows all or nothing.

An upload goes received -> checked (every row validated, nothing written) -> imported. The import
writes rows in bounded transactions into a Dataset whose status is `importing`, which nothing else
uses; it becomes `ready` only when every row is in, and on failure its rows are deleted.
"""

from __future__ import annotations

import hashlib
import json
import json.encoder
import logging
import shutil
import uuid
from collections.abc import Callable, Iterable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection, models, transaction
from django.db.backends.base.operations import BaseDatabaseOperations
from django.db.models import F, QuerySet
from django.utils import timezone

from evals import ingest
from evals.ingest import IngestError, InvalidRow, ParsedRow, Problem, ReadSpec
from evals.models import Dataset, Example, Upload

logger = logging.getLogger(__name__)

# Rows per write transaction, and text per transaction: big enough to be fast (each commit rewrites
# the index pages it touched, and input_key hashes are random), small enough that other writers
# (the pump, other requests) wait a fraction of a second at most.
WRITE_BATCH_ROWS = 5000
WRITE_BATCH_CHARS = 8_000_000
PREVIEW_ROWS = 10
PREVIEW_CELL_CHARS = 300
# Uploads not imported after this long are deleted with their files.
UPLOAD_KEEP = timedelta(days=7)


class DatasetError(Exception):
    """A request the current state doesn't allow, or a file that can't be used; the message is for the user."""


class ImportCancelled(Exception):
    """The dataset was deleted while its rows were being written."""


def _setting(name: str, default: int) -> int:
    return int(getattr(settings, name, default))


def max_upload_bytes() -> int:
    return _setting("DOCKET_MAX_UPLOAD_BYTES", 500 * 1024 * 1024)


def max_rows() -> int:
    return _setting("DOCKET_MAX_ROWS", 1_000_000)


def _runs_inline(*, size: int, file_format: str, rows: int = 0) -> bool:
    """Small files are checked and imported in the request; large ones in a background task.

    XLSX is compressed and slow to parse, so its byte threshold is a fifth of the text one.
    """
    limit = _setting("DOCKET_INLINE_IMPORT_MAX_BYTES", 5 * 1024 * 1024)
    if file_format == "xlsx":
        limit //= 5
    return size <= limit and rows <= _setting("DOCKET_INLINE_IMPORT_MAX_ROWS", 20_000)


# --- Uploads ------------------------------------------------------------------------------------------


def upload_spec(upload: Upload) -> ReadSpec:
    return ReadSpec(
        path=upload.path,
        file_format=upload.file_format,
        encoding=upload.encoding,
        delimiter=upload.options.get("delimiter", ","),
        sheet=upload.options.get("sheet", ""),
    )


def _check_key(upload: Upload) -> str:
    """Identifies what a check report was made for; a report for other choices is stale."""
    choices = [
        upload.file_format,
        upload.encoding,
        upload.options.get("delimiter"),
        upload.options.get("sheet"),
    ]
    payload = json.dumps([choices, upload.mapping], sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def uploads_dir() -> Path:
    path = Path(settings.FILE_UPLOAD_TEMP_DIR)
    path.mkdir(parents=True, exist_ok=True)
    return path


def upload_create(*, source: Path, original_name: str, user: Any = None) -> Upload:
    """Take a received file (moved, not copied, into var/uploads), read its header and first rows.

    Raises DatasetError, with the file removed, when it can't be a dataset.
    """
    uploads_purge_stale()
    upload_id = uuid.uuid4()
    suffix = "".join(char for char in Path(original_name).suffix.lower() if char.isalnum() or char == ".")[
        :10
    ]
    destination = uploads_dir() / f"docket-{upload_id}{suffix}"
    shutil.move(str(source), destination)
    try:
        facts = ingest.inspect_file(destination, name=original_name, max_bytes=max_upload_bytes())
        upload = Upload(
            id=upload_id,
            created_by=user if getattr(user, "is_authenticated", False) else None,
            path=str(destination),
            original_name=original_name[:255],
            size=facts.size,
            sha256=facts.sha256,
            file_format=facts.file_format,
            encoding=facts.encoding,
            options={"delimiter": facts.delimiter, "notes": list(facts.notes)},
        )
        if facts.file_format == "xlsx":
            _read_first_sheet_with_rows(upload)
        else:
            _read_preview(upload)
        upload.mapping = ingest.detect_mapping(upload.columns)
    except IngestError as error:
        destination.unlink(missing_ok=True)
        raise DatasetError(str(error)) from error
    except BaseException:
        destination.unlink(missing_ok=True)
        raise
    upload.save()
    upload_check(upload=upload)
    return upload


def _read_preview(upload: Upload) -> None:
    """Columns and the first rows for the preview, stored so the page doesn't re-read the file."""
    columns, rows, more = ingest.preview(upload_spec(upload), rows=PREVIEW_ROWS)
    if not rows:
        raise IngestError("The file has a header row but no data rows.")
    upload.columns = columns
    upload.options["preview"] = [[_preview_cell(cell) for cell in row] for row in rows]
    upload.options["more_rows"] = more


def _read_first_sheet_with_rows(upload: Upload) -> None:
    """The first sheet that has rows under its header (a workbook often opens on a notes sheet)."""
    sheets = ingest.xlsx_sheet_names(upload.path)
    upload.options["sheets"] = sheets
    first_error: IngestError | None = None
    for sheet in sheets:
        upload.options["sheet"] = sheet
        try:
            _read_preview(upload)
        except IngestError as error:
            first_error = first_error or error
            continue
        return
    raise first_error or IngestError("The workbook has no sheets.")


def _preview_cell(cell: Any) -> str:
    if cell is None:
        return ""
    text = cell if isinstance(cell, str) else json.dumps(cell, ensure_ascii=False)
    text = text.encode("utf-8", "replace").decode("utf-8")  # undecodable bytes show as U+FFFD
    return text if len(text) <= PREVIEW_CELL_CHARS else text[:PREVIEW_CELL_CHARS] + "…"


def upload_set_read_options(
    *, upload: Upload, encoding: str | None = None, delimiter: str | None = None, sheet: str | None = None
) -> Upload:
    """Read the file another way (encoding, delimiter, sheet); the mapping is guessed again for new columns."""
    _require_editable(upload)
    if encoding is not None and upload.file_format != "xlsx":
        if encoding not in ingest.ENCODING_LABELS:
            raise DatasetError(f"Unknown encoding {encoding!r}.")
        upload.encoding = encoding
    if delimiter is not None and upload.file_format == "csv":
        if delimiter not in ingest.DELIMITER_LABELS:
            raise DatasetError("The delimiter must be a comma, semicolon, tab or pipe.")
        upload.options["delimiter"] = delimiter
    if sheet is not None and upload.file_format == "xlsx":
        if sheet not in upload.options.get("sheets", []):
            raise DatasetError(f"The workbook has no sheet named {sheet!r}.")
        upload.options["sheet"] = sheet
    old_columns, old_mapping = upload.columns, upload.mapping
    try:
        _read_preview(upload)
    except IngestError as error:
        raise DatasetError(str(error)) from error
    detected = ingest.detect_mapping(upload.columns)
    if upload.columns == old_columns:
        detected = {column: old_mapping.get(column, field) for column, field in detected.items()}
    upload.mapping = detected
    upload.report = {}
    upload.status = Upload.Status.RECEIVED
    upload.save()
    return upload_check(upload=upload)


def upload_set_mapping(*, upload: Upload, mapping: dict[str, str]) -> Upload:
    _require_editable(upload)
    unknown = set(mapping) - set(upload.columns)
    if unknown:
        raise DatasetError(f"The file has no column named {sorted(unknown)[0]!r}.")
    bad = {field for field in mapping.values() if field not in ingest.CHOICES}
    if bad:
        raise DatasetError(f"Unknown field {sorted(bad)[0]!r}.")
    upload.mapping = {
        column: mapping.get(column, upload.mapping.get(column, ingest.METADATA)) for column in upload.columns
    }
    upload.report = {}
    upload.status = Upload.Status.RECEIVED
    upload.save()
    return upload_check(upload=upload)


def _require_editable(upload: Upload) -> None:
    if upload.status in (Upload.Status.IMPORTING, Upload.Status.IMPORTED):
        raise DatasetError("This file has already been imported; upload it again to import it differently.")


def upload_mapping_problems(upload: Upload) -> list[str]:
    return ingest.mapping_problems(upload.columns, upload.mapping)


def upload_check(*, upload: Upload) -> Upload:
    """Validate every row: in this request for a small file, in a background task for a large one."""
    if upload_mapping_problems(upload):
        return upload
    key = _check_key(upload)
    upload.report = {"state": "checking", "key": key, "rows": 0, "progress": 0}
    upload.status = Upload.Status.RECEIVED
    upload.save(update_fields=["report", "status"])
    if _runs_inline(size=upload.size, file_format=upload.file_format):
        upload_validate(upload_id=upload.pk)
        upload.refresh_from_db()
    else:
        upload_id = str(upload.pk)
        transaction.on_commit(lambda: _enqueue("evals.tasks.upload_validate", upload_id))
    return upload


def _enqueue(task: str, *args: Any) -> None:
    from django_q.tasks import async_task

    async_task(task, *args, task_name=f"{task.rsplit('.', 1)[-1]} {args[0]}"[:100])


def upload_validate(*, upload_id: Any) -> None:
    """Check every row of an upload against its current mapping and store the report.

    A report is stored only if the mapping it was made for is still the upload's (the user may have
    changed it while a background check ran).
    """
    upload = Upload.objects.get(pk=upload_id)
    key = _check_key(upload)
    spec, mapping = upload_spec(upload), dict(upload.mapping)
    last_saved = [timezone.now()]

    def on_progress(rows: int, fraction: float | None) -> None:
        now = timezone.now()
        if now - last_saved[0] < timedelta(seconds=1):
            return
        last_saved[0] = now
        state = {"state": "checking", "key": key, "rows": rows, "progress": round((fraction or 0) * 100)}
        Upload.objects.filter(pk=upload.pk, report__key=key).update(report=state)

    try:
        report = ingest.validate(spec, mapping, max_rows=max_rows(), on_progress=on_progress)
    except IngestError as error:
        result: dict[str, Any] = {"state": "error", "key": key, "error": str(error)}
    except Exception as error:
        logger.exception("checking upload %s failed", upload_id)
        result = {
            "state": "error",
            "key": key,
            "error": f"The check failed unexpectedly ({type(error).__name__}).",
        }
    else:
        result = {"state": "done", "key": key, **report.as_dict()}
    # One conditional UPDATE rather than a locked read-compare-save: no transaction is held while the
    # key of a wide mapping is hashed. Every change of the choices stores a report with its new key (or
    # none), so a report key equal to this check's means the choices are still the ones checked.
    done = result["state"] == "done"
    Upload.objects.filter(
        pk=upload.pk, report__key=key, status__in=[Upload.Status.RECEIVED, Upload.Status.VALIDATED]
    ).update(report=result, status=Upload.Status.VALIDATED if done else Upload.Status.RECEIVED)


def upload_duplicates(upload: Upload) -> QuerySet[Dataset]:
    """Datasets imported from a file with the same SHA-256."""
    return (
        Dataset.objects.filter(sha256=upload.sha256)
        .exclude(status=Dataset.Status.FAILED)
        .order_by("-created_at")
    )


def upload_import(*, upload: Upload, name: str, skip_invalid: bool, user: Any = None) -> Dataset:
    """Create the dataset (status importing) and write its rows: now when small, else in a task."""
    name = name.strip() or Path(upload.original_name).stem or "Dataset"
    report = upload.report
    if upload.dataset_id is not None:
        # A retry after a failed import: the failed dataset row gives way to the new attempt.
        Dataset.objects.filter(pk=upload.dataset_id, status=Dataset.Status.FAILED).delete()
    if upload.status == Upload.Status.FAILED:
        upload.status = Upload.Status.VALIDATED
        upload.save(update_fields=["status"])
    if (
        upload.status != Upload.Status.VALIDATED
        or report.get("state") != "done"
        or report.get("key") != _check_key(upload)
    ):
        raise DatasetError(
            "Check the rows before importing (the file or its mapping changed since the last check)."
        )
    if report["invalid"] and not skip_invalid:
        raise DatasetError(
            f"{report['invalid']:,} rows are invalid; fix the file and upload it again, or import only the valid rows."
        )
    if not report["valid"]:
        raise DatasetError("No row is valid, so there is nothing to import.")
    # Worked out before the transaction: nothing linear in the file's size runs while it holds the lock.
    metadata_columns = _metadata_columns(upload.columns, upload.mapping, report.get("extra_columns", []))
    with transaction.atomic():
        # Claimed by a conditional update, so a double click imports once.
        claimed = Upload.objects.filter(pk=upload.pk, status=Upload.Status.VALIDATED).update(
            status=Upload.Status.IMPORTING
        )
        if not claimed:
            raise DatasetError("This file is already being imported.")
        dataset = Dataset.objects.create(
            name=name[:200],
            uploaded_by=user if getattr(user, "is_authenticated", False) else upload.created_by,
            file_name=upload.original_name,
            file_size=upload.size,
            sha256=upload.sha256,
            file_format=upload.file_format,
            encoding=upload.encoding,
            mapping=upload.mapping,
            columns=upload.columns,
            metadata_columns=metadata_columns,
            row_count=report["valid"],
            status=Dataset.Status.IMPORTING,
            rows_done=0,
        )
        upload.dataset = dataset
        upload.status = Upload.Status.IMPORTING
        upload.options["skip_invalid"] = skip_invalid
        upload.save(update_fields=["dataset", "status", "options"])
    if _runs_inline(size=upload.size, file_format=upload.file_format, rows=report["rows"]):
        upload_import_rows(upload_id=upload.pk)
        dataset.refresh_from_db()
    else:
        upload_id = str(upload.pk)
        transaction.on_commit(lambda: _enqueue("evals.tasks.dataset_import", upload_id))
    return dataset


def _metadata_columns(columns: Iterable[str], mapping: dict[str, str], extra: Iterable[str]) -> list[str]:
    """The header's metadata columns in file order, then keys met only in JSON rows, each once.

    A dict, not a list, for the "seen" test: with a list this was quadratic, 60 s for a file with
    100,000 columns, and it ran inside a write transaction that locked out every other writer.
    """
    kept = dict.fromkeys(
        column for column in columns if mapping.get(column, ingest.METADATA) == ingest.METADATA
    )
    kept.update(dict.fromkeys(extra))
    return list(kept)


def upload_import_rows(*, upload_id: Any) -> None:
    """Write an upload's rows into its dataset. Idempotent: a repeated task starts the dataset over."""
    upload = Upload.objects.select_related("dataset").get(pk=upload_id)
    dataset = upload.dataset
    if (
        upload.status != Upload.Status.IMPORTING
        or dataset is None
        or dataset.status != Dataset.Status.IMPORTING
    ):
        return
    try:
        count, extra = dataset_fill(
            dataset=dataset,
            spec=upload_spec(upload),
            mapping=upload.mapping,
            skip_invalid=bool(upload.options.get("skip_invalid")),
        )
    except ImportCancelled:
        # The dataset was deleted: the upload can be imported again.
        Upload.objects.filter(pk=upload.pk).update(status=Upload.Status.VALIDATED, dataset=None)
        return
    except Exception as error:
        message = str(error) if isinstance(error, IngestError | DatasetError) else None
        if message is None:
            logger.exception("importing upload %s failed", upload_id)
            message = f"The import failed unexpectedly ({type(error).__name__}: {error}); no rows were kept."
        Dataset.objects.filter(pk=dataset.pk).update(
            status=Dataset.Status.FAILED, import_error=message, rows_done=0
        )
        report = {**upload.report, "import_error": message}
        Upload.objects.filter(pk=upload.pk).update(status=Upload.Status.FAILED, report=report)
        return
    Upload.objects.filter(pk=upload.pk).update(status=Upload.Status.IMPORTED)
    if not upload.report.get("invalid"):
        # Nothing left to download from it; files with invalid rows are kept for the download until purged.
        Path(upload.path).unlink(missing_ok=True)
    logger.info("dataset %s imported: %s rows (%s extra columns)", dataset.pk, count, len(extra))


def dataset_fill(
    *,
    dataset: Dataset,
    spec: ReadSpec,
    mapping: dict[str, str],
    skip_invalid: bool,
    batch_rows: int | None = None,
) -> tuple[int, list[str]]:
    """Write every valid row of a file into an importing dataset, then mark it ready.

    All or nothing: rows are committed in bounded transactions into a dataset whose status is
    `importing`, which every page, form and run_create leave alone, and it becomes `ready` in one
    UPDATE at the end; on any failure every row written is deleted before the error is raised again.
    Reading, checking and building each batch happen with no transaction open: only a built batch's
    INSERT holds the write lock, so other users' writes (logins, renames, the pump) wait a moment at most.
    """
    _delete_examples(dataset.pk)  # rows from an earlier attempt that died
    Dataset.objects.filter(pk=dataset.pk).update(rows_done=0)
    position = 0
    try:
        with ingest.checked_rows(spec, mapping, max_rows=max_rows()) as (_table, checker, outcomes):
            batches = _example_batches(
                dataset.pk,
                outcomes,
                skip_invalid=skip_invalid,
                batch_rows=batch_rows or WRITE_BATCH_ROWS,
                adapt_json=_json_adapter(),
            )
            for params in batches:
                _write_examples(dataset.pk, params)
                position += len(params)
            extra = list(checker.extra_columns)
        metadata_columns = _metadata_columns(dataset.columns, mapping, [*dataset.metadata_columns, *extra])
        # The flip to ready: one conditional UPDATE, atomic on its own, so no transaction is held while
        # Python works. A dataset deleted meanwhile (status no longer importing) is not brought back.
        updated = Dataset.objects.filter(pk=dataset.pk, status=Dataset.Status.IMPORTING).update(
            status=Dataset.Status.READY,
            row_count=position,
            rows_done=position,
            metadata_columns=metadata_columns,
            import_error="",
        )
        if not updated:
            raise ImportCancelled
    except BaseException:
        _delete_examples(dataset.pk)
        raise
    return position, extra


ExampleParams = tuple[Any, ...]


def _example_batches(
    dataset_id: int,
    outcomes: Iterator[ParsedRow | InvalidRow],
    *,
    skip_invalid: bool,
    batch_rows: int,
    adapt_json: Callable[[Any], Any],
) -> Iterator[list[ExampleParams]]:
    """The INSERT parameters of the valid rows, in batches of at most batch_rows rows and about
    WRITE_BATCH_CHARS characters, with positions in file order."""
    make_input_key = Example.make_input_key
    batch: list[ExampleParams] = []
    chars = 0
    position = 0
    for row in outcomes:
        if isinstance(row, InvalidRow):
            if skip_invalid:
                continue
            raise DatasetError(f"{row.problems[0]}; the file no longer matches its check.")
        turns = row.turns
        contexts_json = adapt_json(row.contexts)
        turns_json = None if turns is None else adapt_json(turns)
        metadata_json = adapt_json(row.metadata)
        batch.append(
            (
                dataset_id,
                position,
                row.line,
                row.request,
                row.response,
                contexts_json,
                row.expected_output,
                turns_json,
                row.system_prompt,
                metadata_json,
                make_input_key(
                    key=row.key,
                    request=row.request,
                    contexts=row.contexts,
                    expected_output=row.expected_output,
                    turns=turns,
                    system_prompt=row.system_prompt,
                ),
                row.user_id,
                row.session_id,
            )
        )
        position += 1
        # Every text written counts, metadata too: a wide file's rows are mostly metadata, and the
        # transaction that inserts a batch lasts as long as its text takes to write.
        chars += (
            len(row.request)
            + len(row.response)
            + len(row.expected_output)
            + len(row.system_prompt)
            + _text_length(row.contexts)
            + _text_length(turns)
            + _text_length(row.metadata)
        )
        if len(batch) >= batch_rows or chars >= WRITE_BATCH_CHARS:
            yield batch
            batch = []
            chars = 0
    if batch:
        yield batch


def _text_length(value: Any) -> int:
    """About the characters a JSON value writes: its strings and keys (other scalars count 8).

    Read from the parsed value, not the adapted one, so every backend counts alike (PostgreSQL adapts
    JSON to an object, SQLite to text). Nesting is bounded by DOCKET_MAX_JSON_DEPTH at ingest.
    """
    if value is None:
        return 0
    if isinstance(value, str):
        return len(value)
    if isinstance(value, dict):
        return sum(len(str(key)) + _text_length(item) for key, item in value.items())
    if isinstance(value, list | tuple):
        return sum(_text_length(item) for item in value)
    return 8


_EXAMPLE_COLUMNS = (
    "dataset",
    "position",
    "source_line",
    "request",
    "response",
    "contexts",
    "expected_output",
    "turns",
    "system_prompt",
    "metadata",
    "input_key",
    "user_id",
    "session_id",
)


def _insert_examples_sql() -> str:
    quote = connection.ops.quote_name
    fields = [Example._meta.get_field(name) for name in _EXAMPLE_COLUMNS]
    columns = ", ".join(
        quote(field.column or field.name) for field in fields if isinstance(field, models.Field)
    )
    placeholders = ", ".join(["%s"] * len(_EXAMPLE_COLUMNS))
    return f"INSERT INTO {quote(Example._meta.db_table)} ({columns}) VALUES ({placeholders})"


def _json_adapter() -> Callable[[Any], Any]:
    """What JSONField does to a value before saving it, for this database.

    Where the backend stores json.dumps() text (SQLite, MySQL), a C encoder made once with json.dumps's
    defaults gives the same text at a third of the cost per call; elsewhere (PostgreSQL's Jsonb) the
    backend's own adapter is used.
    """
    adapt = connection.ops.adapt_json_value
    if type(connection.ops).adapt_json_value is not BaseDatabaseOperations.adapt_json_value:
        return lambda value: adapt(value, None)
    make_encoder = getattr(json.encoder, "c_make_encoder", None)
    if make_encoder is None:
        return json.dumps
    encode = make_encoder(
        None,
        json.JSONEncoder().default,
        json.encoder.encode_basestring_ascii,
        None,
        ": ",
        ", ",
        False,
        False,
        True,
    )
    return lambda value: "".join(encode(value, 0))


def _write_examples(dataset_id: int, params: list[ExampleParams]) -> None:
    """Insert one batch of rows with one executemany, in one transaction with the progress count.

    bulk_create builds a model instance per row and prepares each value through its field, which cost
    5x the SQLite work itself (bench/ingest.py); this writes the same columns, with JSON adapted as
    JSONField would. A dataset deleted meanwhile stops the import here.
    """
    with transaction.atomic():
        updated = Dataset.objects.filter(pk=dataset_id, status=Dataset.Status.IMPORTING).update(
            rows_done=F("rows_done") + len(params)
        )
        if not updated:
            raise ImportCancelled
        with connection.cursor() as cursor:
            cursor.executemany(_insert_examples_sql(), params)


def _delete_examples(dataset_id: int, *, chunk: int = 5000) -> None:
    """Delete a dataset's rows in bounded transactions, by position range (no rows are loaded).

    Plain SQL because QuerySet.delete() loads every row to look for Items pointing at them; a dataset
    being deleted has no runs (Run.dataset is PROTECT), so no Items do.
    """
    table = connection.ops.quote_name(Example._meta.db_table)
    last = (
        Example.objects.filter(dataset_id=dataset_id)
        .order_by("-position")
        .values_list("position", flat=True)
        .first()
    )
    if last is None:
        return
    for start in range(0, last + 1, chunk):
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                f"DELETE FROM {table} WHERE dataset_id = %s AND position >= %s AND position < %s",  # noqa: S608
                [dataset_id, start, start + chunk],
            )


def upload_discard(*, upload: Upload) -> None:
    if upload.status == Upload.Status.IMPORTING:
        raise DatasetError("This file is being imported; wait for it to finish.")
    Path(upload.path).unlink(missing_ok=True)
    upload.delete()


def uploads_purge_stale() -> int:
    """Delete the files of uploads left for a week, and the uploads that never became a dataset."""
    cutoff = timezone.now() - UPLOAD_KEEP
    stale = Upload.objects.filter(created_at__lt=cutoff).exclude(status=Upload.Status.IMPORTING)
    count = 0
    for upload in stale.only("id", "path", "dataset_id")[:200]:
        Path(upload.path).unlink(missing_ok=True)
        if upload.dataset_id is None:
            upload.delete()
        count += 1
    return count


# --- Datasets -----------------------------------------------------------------------------------------


def dataset_import_file(
    *,
    path: Path,
    name: str = "",
    overrides: list[tuple[str, str]] | None = None,
    skip_invalid: bool = False,
    user: Any = None,
    on_problem: Callable[[Problem], None] | None = None,
) -> tuple[Dataset | None, ingest.Report]:
    """Check and import a file from disk (the import_dataset command): the same parsing and checks as an upload.

    Returns (None, report) without writing anything when rows are invalid and skip_invalid is false.
    Raises DatasetError for a file that can't be read or a mapping that can't work.
    """
    try:
        facts = ingest.inspect_file(path, name=path.name, max_bytes=max_upload_bytes())
        spec = ReadSpec(str(path), facts.file_format, facts.encoding, facts.delimiter or ",")
        columns, first_rows, _more = ingest.preview(spec, rows=1)
        if not first_rows:
            raise IngestError("The file has a header row but no data rows.")
        try:
            mapping = ingest.apply_overrides(columns, ingest.detect_mapping(columns), overrides or [])
        except ValueError as error:
            raise DatasetError(str(error)) from error
        problems = ingest.mapping_problems(columns, mapping)
        if problems:
            raise DatasetError(problems[0])
        report = ingest.validate(spec, mapping, max_rows=max_rows(), on_problem=on_problem)
    except IngestError as error:
        raise DatasetError(str(error)) from error
    if not report.valid:
        raise DatasetError("No row is valid, so there is nothing to import.")
    if report.invalid and not skip_invalid:
        return None, report
    dataset = Dataset.objects.create(
        name=(name or path.stem)[:200],
        uploaded_by=user,
        file_name=path.name[:255],
        file_size=facts.size,
        sha256=facts.sha256,
        file_format=facts.file_format,
        encoding=facts.encoding,
        mapping=mapping,
        columns=columns,
        metadata_columns=_metadata_columns(columns, mapping, report.extra_columns),
        row_count=report.valid,
        status=Dataset.Status.IMPORTING,
    )
    try:
        dataset_fill(dataset=dataset, spec=spec, mapping=mapping, skip_invalid=skip_invalid)
    except BaseException as error:
        # No one watches a command's dataset page: a failed import leaves nothing at all.
        Dataset.objects.filter(pk=dataset.pk).delete()
        if isinstance(error, IngestError):
            raise DatasetError(str(error)) from error
        raise
    dataset.refresh_from_db()
    return dataset, report


def dataset_rename(*, dataset: Dataset, name: str) -> Dataset:
    name = " ".join(name.split())
    if not name:
        raise DatasetError("A dataset needs a name.")
    if len(name) > 200:
        raise DatasetError("A dataset name can be at most 200 characters.")
    dataset.name = name
    dataset.save(update_fields=["name"])
    return dataset


def dataset_delete(*, dataset: Dataset) -> None:
    """Delete a dataset and its rows, unless runs use it (their results would lose their rows).

    Deleting a dataset that is importing cancels the import.
    """
    runs = dataset.runs.count()
    if runs:
        plural = "run uses" if runs == 1 else "runs use"
        raise DatasetError(
            f"{runs} {plural} this dataset, so it can't be deleted: their results point at its rows. "
            "Delete those runs first."
        )
    # Out of the importing state first, so an import in progress stops at its next batch.
    Dataset.objects.filter(pk=dataset.pk).update(status=Dataset.Status.FAILED, import_error="Deleted.")
    _delete_examples(dataset.pk)
    Upload.objects.filter(dataset=dataset, status=Upload.Status.IMPORTING).update(
        status=Upload.Status.VALIDATED
    )
    dataset.delete()
