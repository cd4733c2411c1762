"""Datasets: create one from a file on disk (the import_dataset command), rename, delete.

A file uploaded through the pages or the API goes through evals.services.uploads instead; both write
rows with evals.services.dataset_rows.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.conf import settings

from evals import ingest
from evals.ingest import IngestError, Problem, ReadSpec
from evals.models import Dataset, Upload
from evals.services import dataset_rows


class DatasetError(Exception):
    """A request the current state doesn't allow, or a file that can't be used; the message is for the user."""


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
        facts = ingest.inspect_file(path, name=path.name, max_bytes=settings.DOCKET_MAX_UPLOAD_BYTES)
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
        report = ingest.validate(spec, mapping, max_rows=settings.DOCKET_MAX_ROWS, on_problem=on_problem)
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
        metadata_columns=dataset_rows.metadata_columns(columns, mapping, report.extra_columns),
        row_count=report.valid,
        status=Dataset.Status.IMPORTING,
    )
    try:
        dataset_rows.dataset_fill(dataset=dataset, spec=spec, mapping=mapping, skip_invalid=skip_invalid)
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
    dataset_rows.delete_examples(dataset.pk)
    Upload.objects.filter(dataset=dataset, status=Upload.Status.IMPORTING).update(
        status=Upload.Status.VALIDATED
    )
    dataset.delete()
