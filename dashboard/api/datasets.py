"""API: the judges runs can use, and datasets: upload a file, list, read and delete them.

An upload is read and checked by the same service as `manage.py import_dataset`
(evals.services.datasets.dataset_import_file), so a file the command or the upload page refuses is
refused here for the same reason, with its invalid rows listed by line and column.
"""

from __future__ import annotations

import shutil
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.core.files.uploadedfile import UploadedFile as DjangoUploadedFile
from django.http import HttpRequest
from django.http.multipartparser import MultiPartParserError
from django.urls import reverse
from ninja import Field, File, Form, Router, Schema, Status, UploadedFile

from dashboard.api.core import (
    ApiAuth,
    Problem,
    absolute_url,
    errors,
    keyset_page,
    row_or_404,
    storable,
)
from dashboard.forms_datasets import MULTIPART_OVERHEAD, CappedUploadHandler
from dashboard.http import declared_length
from evals import ingest
from evals.models import Dataset
from evals.services.datasets import DatasetError, dataset_delete, dataset_import_file
from evals.services.judges import judges_for_current_api
from evals.services.uploads import uploads_dir

router = Router(tags=["judges and datasets"])

# Invalid rows listed in a 422; the detail says how many problems there were in all.
MAX_LISTED_PROBLEMS = 100
# The file's name on disk (the dataset's file_name): short enough for any file system, in bytes.
MAX_NAME_BYTES = 150


# --- Judges -------------------------------------------------------------------------------------------


class JudgeOut(Schema):
    id: int
    remote_id: str = Field(description="The judge's id at the judge API.")
    name: str
    intent: str
    evaluators: list[str] = Field(validation_alias="evaluator_names", description="Evaluator names.")
    inputs: dict[str, Any] = Field(description="The inputs the judge reads, as the judge API describes them.")


class JudgePage(Schema):
    items: list[JudgeOut]
    next_cursor: str | None


@router.get("/judges/", response={200: JudgePage, **errors(422)}, url_name="judge_list")
def judge_list(
    request: HttpRequest, limit: int | None = None, cursor: str | None = None
) -> dict[str, object]:
    """The judges the configured judge API lists (as last synced), newest first."""
    judges = judges_for_current_api().filter(is_listed=True)
    rows, next_cursor = keyset_page(judges, cursor=cursor, limit=limit)
    return {"items": rows, "next_cursor": next_cursor}


# --- Datasets -----------------------------------------------------------------------------------------


class DatasetOut(Schema):
    id: int
    name: str
    status: str = Field(description="importing, ready (runs can use it) or failed.")
    row_count: int
    file_name: str
    file_format: str = Field(description="csv, tsv, jsonl, json or xlsx.")
    columns: list[str]
    mapping: dict[str, str] = Field(
        description="{column: field} for every column of the file: an input field, metadata or ignore "
        "(several columns can be contexts or metadata, so the column is the key)."
    )
    metadata_columns: list[str]
    created_at: datetime
    url: str = Field(description="The dataset's page.")

    @staticmethod
    def resolve_url(obj: Dataset, context: dict[str, Any]) -> str:
        return absolute_url(context["request"], reverse("dataset_detail", kwargs={"dataset_id": obj.pk}))


class DatasetPage(Schema):
    items: list[DatasetOut]
    next_cursor: str | None


class UploadGuard(ApiAuth):
    """ApiAuth, then the body read through the size cap.

    ninja authenticates before it reads a parameter, so this is the one point between knowing who
    asks and reading the file: an oversized upload is refused from its Content-Length without reading
    a byte, and one that lies or is chunked is stopped at the cap (dashboard.forms_datasets).
    """

    def __call__(self, request: HttpRequest) -> Any:
        auth = super().__call__(request)
        if auth is not None:
            _receive_upload(request)
        return auth


def _receive_upload(request: HttpRequest) -> None:
    cap = settings.DOCKET_MAX_UPLOAD_BYTES
    if declared_length(request) > cap + MULTIPART_OVERHEAD:
        raise _too_large(cap)
    handler = CappedUploadHandler(request, max_bytes=cap)
    request.upload_handlers = [handler]
    # Django's own limits apply to the form fields only (not the file); their errors would be a 500 here.
    try:
        request.FILES  # noqa: B018  # parses the body now, through the handler
    except RequestDataTooBig as exc:
        raise Problem(413, "The form fields besides the file are too large.") from exc
    except (TooManyFieldsSent, TooManyFilesSent) as exc:
        raise Problem(413, "The request has too many form fields or files; send one file.") from exc
    except MultiPartParserError as exc:
        raise Problem(
            400,
            f"The body is not readable multipart/form-data ({exc}).",
            errors=[{"field": "file", "message": "send the file as multipart/form-data"}],
        ) from exc
    if handler.too_large:
        raise _too_large(cap)


def _too_large(cap: int) -> Problem:
    return Problem(
        413,
        f"The file is over the {ingest.human_size(cap)} upload limit.",
        errors=[{"field": "file", "message": f"over {cap} bytes"}],
    )


@router.post(
    "/datasets/",
    response={201: DatasetOut, **errors(400, 403, 413, 422)},
    auth=UploadGuard(),
    url_name="dataset_create",
)
def dataset_create(
    request: HttpRequest,
    file: File[UploadedFile],
    name: str = Form(
        "", max_length=200, description="The dataset's name (default: the file's name without suffix)."
    ),
    map_: Annotated[
        list[str] | None,
        Form(
            alias="map",
            description="FIELD=COLUMN, e.g. response=answer; repeat the field for several. Columns not "
            "named are mapped from their names, as on the upload page.",
        ),
    ] = None,
    skip_invalid: bool = Form(False, description="Import the valid rows and leave the invalid ones out."),
) -> Status[Dataset]:
    """Import a CSV, TSV, JSON Lines, JSON or XLSX file as a dataset, all rows or none.

    With invalid rows (and skip_invalid false) nothing is written: 422 lists them by line and column.
    """
    storable("name", name)
    overrides = _overrides(map_ or [])
    problems = _RowProblems()
    directory = Path(tempfile.mkdtemp(prefix="docket-api-", dir=uploads_dir()))
    try:
        dataset, report = dataset_import_file(
            path=_save(file, directory),
            name=" ".join(name.split()),
            overrides=overrides,
            skip_invalid=skip_invalid,
            user=request.user,
            on_problem=problems.add,
        )
    except DatasetError as exc:
        raise _refusal(exc, problems) from exc
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    if dataset is None:
        raise Problem(
            422,
            f"{report.invalid:,} of {report.rows:,} rows are invalid, so nothing was imported. Fix them, or "
            f"send skip_invalid=true to import only the valid rows. {problems.summary()}",
            errors=problems.listed,
        )
    return Status(201, dataset)


def _overrides(items: list[str]) -> list[tuple[str, str]]:
    """`map` items as (field, column) pairs, read as import_dataset --map reads them."""
    overrides = []
    for item in items:
        field, separator, column = item.partition("=")
        if not separator or not field.strip() or not column:
            raise Problem.invalid(
                "map",
                f"{item[:80]!r} is not FIELD=COLUMN",
                detail=f"map {item[:80]!r}: write it as FIELD=COLUMN, for example map=response=answer.",
            )
        overrides.append((field.strip(), column))
    return overrides


def _save(upload: DjangoUploadedFile, directory: Path) -> Path:
    """The upload as a file named like the client's, so its format is read from the suffix and its
    stem is the default name. Moved when the handler already wrote it to disk."""
    path = directory / _disk_name(upload.name or "")
    if hasattr(upload, "temporary_file_path"):
        shutil.move(upload.temporary_file_path(), path)
    else:
        with path.open("wb") as handle:
            for chunk in upload.chunks():
                handle.write(chunk)
    return path


def _disk_name(original: str) -> str:
    name = Path(original.replace("\\", "/").replace("\x00", "")).name
    if name in ("", ".", ".."):
        return "upload"
    suffix = Path(name).suffix
    if not suffix.isascii() or len(suffix) > 10:
        suffix = ""
    stem = name[: len(name) - len(suffix)] if suffix else name
    stem = stem.encode()[:MAX_NAME_BYTES].decode("utf-8", "ignore").strip() or "upload"
    return stem + suffix


class _RowProblems:
    """The first invalid-row problems, as problem-document errors, and how many there were in all."""

    def __init__(self) -> None:
        self.listed: list[dict[str, Any]] = []
        self.count = 0

    def add(self, problem: ingest.Problem) -> None:
        self.count += 1
        if len(self.listed) < MAX_LISTED_PROBLEMS:
            self.listed.append(
                {
                    "line": problem.line,
                    "column": problem.column or None,
                    "field": None,
                    "message": problem.reason,
                }
            )

    def summary(self) -> str:
        if self.count > len(self.listed):
            return f"The first {len(self.listed)} of {self.count:,} problems are listed."
        return f"{self.count:,} problem{'' if self.count == 1 else 's'} listed."


def _refusal(error: DatasetError, problems: _RowProblems) -> Problem:
    """A 422 naming what to fix: the rows, the map, or the file.

    dataset_import_file raises one DatasetError for all three; what caused it tells them apart: an
    IngestError is the file; after rows were checked, every row was invalid; otherwise the mapping is
    what fails (a map naming an unknown field or column, or no response column), which `map` fixes.
    """
    if isinstance(error.__cause__, ingest.IngestError):
        return Problem.invalid("file", str(error), detail=f"file: {error}")
    if problems.count:  # every row was invalid
        return Problem(422, f"{error} {problems.summary()}", errors=problems.listed)
    return Problem.invalid("map", str(error), detail=f"map: {error}")


@router.get("/datasets/", response={200: DatasetPage, **errors(422)}, url_name="dataset_list")
def dataset_list(
    request: HttpRequest, limit: int | None = None, cursor: str | None = None
) -> dict[str, object]:
    """Every dataset, newest first; only `ready` ones can be used by a run."""
    rows, next_cursor = keyset_page(Dataset.objects.all(), cursor=cursor, limit=limit)
    return {"items": rows, "next_cursor": next_cursor}


@router.get(
    "/datasets/{dataset_id}/", response={200: DatasetOut, **errors(404, 422)}, url_name="dataset_detail"
)
def dataset_detail(request: HttpRequest, dataset_id: int) -> Dataset:
    return row_or_404(Dataset.objects.all(), dataset_id, "dataset")


@router.delete(
    "/datasets/{dataset_id}/", response={204: None, **errors(403, 404, 409, 422)}, url_name="dataset_delete"
)
def dataset_remove(request: HttpRequest, dataset_id: int) -> Status[None]:
    """Delete the dataset and its rows; refused (409) while runs use it: delete those runs first."""
    try:
        dataset_delete(dataset=row_or_404(Dataset.objects.all(), dataset_id, "dataset"))
    except DatasetError as exc:
        raise Problem(409, str(exc)) from exc
    return Status(204, None)
