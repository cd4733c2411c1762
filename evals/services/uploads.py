"""Uploads: receiving a file, checking it, and importing its rows all or nothing.

An upload goes received -> checked (every row validated, nothing written) -> imported. The import
writes rows in bounded transactions into a Dataset whose status is `importing`, which nothing else
uses; it becomes `ready` only when every row is in, and on failure its rows are deleted.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from evals import ingest
from evals.ingest import IngestError, ReadSpec
from evals.models import Dataset, Upload
from evals.services import dataset_rows
from evals.services.datasets import DatasetError

logger = logging.getLogger(__name__)

PREVIEW_ROWS = 10


PREVIEW_CELL_CHARS = 300


# Uploads not imported after this long are deleted with their files.
UPLOAD_KEEP = timedelta(days=7)


def _runs_inline(*, size: int, file_format: str, rows: int = 0) -> bool:
    """Small files are checked and imported in the request; large ones in a background task.

    XLSX is compressed and slow to parse, so its byte threshold is a fifth of the text one.
    """
    limit = settings.DOCKET_INLINE_IMPORT_MAX_BYTES
    if file_format == "xlsx":
        limit //= 5
    return size <= limit and rows <= settings.DOCKET_INLINE_IMPORT_MAX_ROWS


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
        facts = ingest.inspect_file(
            destination, name=original_name, max_bytes=settings.DOCKET_MAX_UPLOAD_BYTES
        )
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
        report = ingest.validate(spec, mapping, max_rows=settings.DOCKET_MAX_ROWS, on_progress=on_progress)
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
    metadata_columns = dataset_rows.metadata_columns(
        upload.columns, upload.mapping, report.get("extra_columns", [])
    )
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
        count, extra = dataset_rows.dataset_fill(
            dataset=dataset,
            spec=upload_spec(upload),
            mapping=upload.mapping,
            skip_invalid=bool(upload.options.get("skip_invalid")),
        )
    except dataset_rows.ImportCancelled:
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
