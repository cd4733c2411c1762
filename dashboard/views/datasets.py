"""Datasets: the list, upload -> preview and mapping -> check -> import, the rows, rename and delete."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any
from uuid import UUID

from django.conf import settings
from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import Count, Q
from django.http import HttpResponse, HttpResponseBase, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from dashboard.forms_datasets import (
    MULTIPART_OVERHEAD,
    CappedUploadHandler,
    ImportForm,
    ReadOptionsForm,
    RenameForm,
    UploadForm,
)
from dashboard.http import HtmxHttpRequest, declared_length, row_number
from evals import ingest
from evals.models import Dataset, Example, Upload
from evals.selectors.datasets import dataset_rows_page, upload_duplicates
from evals.services import datasets as dataset_service
from evals.services import retention, uploads
from evals.services.datasets import DatasetError

PROBLEMS_PER_PAGE = 50
# Texts longer than this, or with more line breaks, are shown folded in the row view.
LONG_TEXT_CHARS = 600
LONG_TEXT_NEWLINES = 8


@require_GET
def dataset_list(request: HtmxHttpRequest) -> HttpResponse:
    datasets = Dataset.objects.select_related("uploaded_by").annotate(run_count=Count("runs"))
    pending = (
        Upload.objects.filter(created_by=request.user.pk)
        .filter(Q(status__in=[Upload.Status.RECEIVED, Upload.Status.VALIDATED]))
        .order_by("-created_at")[:10]
        if request.user.is_authenticated
        else Upload.objects.none()
    )
    return render(request, "dashboard/dataset_list.html", {"datasets": datasets, "pending_uploads": pending})


# --- Upload -----------------------------------------------------------------------------------------------


@csrf_exempt
@require_http_methods(["GET", "POST"])
def dataset_upload(request: HtmxHttpRequest) -> HttpResponse:
    """The upload page. CSRF is checked in _dataset_upload, after the size-capping handler is installed:
    the CSRF middleware reads request.POST, which would parse the upload with the default handlers."""
    if request.method == "GET":
        return _upload_form(request, UploadForm())
    if declared_length(request) > settings.DOCKET_MAX_UPLOAD_BYTES + MULTIPART_OVERHEAD:
        # Refused before a byte of the body is read: reading (even to drop) 600 MiB took minutes.
        # No CSRF check is needed for a page that changes nothing.
        return _too_large(request)
    handler = CappedUploadHandler(request, max_bytes=settings.DOCKET_MAX_UPLOAD_BYTES)
    request.upload_handlers = [handler]
    return _dataset_upload(request, handler)


@csrf_protect
def _dataset_upload(request: HtmxHttpRequest, handler: CappedUploadHandler) -> HttpResponse:
    form = UploadForm(request.POST, request.FILES)
    if handler.too_large:
        return _too_large(request)
    if not form.is_valid():
        error = " ".join(str(message) for messages_ in form.errors.values() for message in messages_)
        return _upload_form(request, UploadForm(), error=error, status=400)
    received = form.cleaned_data["file"]
    try:
        upload = uploads.upload_create(
            source=Path(received.temporary_file_path()),
            original_name=received.name or "upload",
            user=request.user,
        )
    except DatasetError as error:
        return _upload_form(request, UploadForm(), error=f"{received.name}: {error}", status=400)
    return redirect("dataset_upload_detail", upload_id=upload.pk)


def _too_large(request: HtmxHttpRequest) -> HttpResponse:
    limit = ingest.human_size(settings.DOCKET_MAX_UPLOAD_BYTES)
    return _upload_form(
        request, UploadForm(), error=f"The file is over the {limit} upload limit.", status=413
    )


def _upload_form(
    request: HtmxHttpRequest, form: UploadForm, *, error: str = "", status: int = 200
) -> HttpResponse:
    context = {
        "form": form,
        "error": error,
        "max_bytes": settings.DOCKET_MAX_UPLOAD_BYTES,
        "max_size": ingest.human_size(settings.DOCKET_MAX_UPLOAD_BYTES),
        "max_rows": settings.DOCKET_MAX_ROWS,
        "synonyms": [(ingest.FIELD_LABELS[field], names) for field, names in ingest.mapping.SYNONYMS.items()],
    }
    return render(request, "dashboard/upload_new.html", context, status=status)


@require_GET
def dataset_upload_detail(request: HtmxHttpRequest, upload_id: UUID) -> HttpResponse:
    upload = get_object_or_404(Upload, pk=upload_id)
    if upload.status in (Upload.Status.IMPORTING, Upload.Status.IMPORTED) and upload.dataset_id:
        return redirect("dataset_detail", dataset_id=upload.dataset_id)
    template_name = "dashboard/upload_detail.html"
    if request.htmx:
        # Two parts of the page swap: the check report polls itself while a background check runs, and
        # the read-as and mapping forms (posted, then redirected here) replace the workspace around it.
        template_name += "#check-report" if request.htmx.target == "check-report" else "#upload-workspace"
    return render(request, template_name, _upload_context(request, upload))


def _upload_context(request: HtmxHttpRequest, upload: Upload) -> dict[str, Any]:
    report = upload.report or {}
    problems_page = None
    if report.get("state") == "done" and report.get("problems"):
        paginator = Paginator(report["problems"], PROBLEMS_PER_PAGE)
        problems_page = paginator.get_page(request.GET.get("problems"))
    preview = upload.options.get("preview", [])
    columns = [
        {
            "index": index,
            "name": name,
            "field": upload.mapping.get(name, ingest.METADATA),
        }
        for index, name in enumerate(upload.columns)
    ]
    return {
        "upload": upload,
        "report": report,
        "checking": report.get("state") == "checking",
        "problems_page": problems_page,
        "columns": columns,
        "preview": preview,
        "more_rows": upload.options.get("more_rows", False),
        "field_choices": list(ingest.FIELD_LABELS.items()),
        "mapping_problems": uploads.upload_mapping_problems(upload),
        "duplicates": upload_duplicates(upload)[:3],
        "format_label": ingest.FORMAT_LABELS.get(upload.file_format, upload.file_format),
        "encoding_label": ingest.ENCODING_LABELS.get(upload.encoding, upload.encoding),
        "delimiter": upload.options.get("delimiter", ","),
        "encodings": list(ingest.ENCODING_LABELS.items()),
        "delimiters": list(ingest.DELIMITER_LABELS.items()),
        "sheets": upload.options.get("sheets", []),
        "sheet": upload.options.get("sheet", ""),
        "notes": upload.options.get("notes", []),
        "default_name": Path(upload.original_name).stem,
        "line_word": "Row" if upload.file_format == "xlsx" else "Line",
        "import_error": report.get("import_error", "") if upload.status == Upload.Status.FAILED else "",
        "file_kept": Path(upload.path).exists(),
    }


def _change_upload(request: HtmxHttpRequest, upload: Upload, change: Callable[[], object]) -> HttpResponse:
    """Make a change to the upload, say why if the service refuses it, and show the upload again."""
    try:
        change()
    except DatasetError as error:
        messages.error(request, str(error))
    return redirect("dataset_upload_detail", upload_id=upload.pk)


@require_POST
def dataset_upload_options(request: HtmxHttpRequest, upload_id: UUID) -> HttpResponse:
    upload = get_object_or_404(Upload, pk=upload_id)
    form = ReadOptionsForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose an encoding, delimiter or sheet from the lists.")
        return redirect("dataset_upload_detail", upload_id=upload.pk)
    return _change_upload(
        request,
        upload,
        lambda: uploads.upload_set_read_options(
            upload=upload,
            encoding=form.cleaned_data["encoding"] or None,
            delimiter=form.cleaned_data["delimiter"] or None,
            sheet=form.cleaned_data["sheet"] or None,
        ),
    )


@require_POST
def dataset_upload_mapping(request: HtmxHttpRequest, upload_id: UUID) -> HttpResponse:
    upload = get_object_or_404(Upload, pk=upload_id)
    # Fields are posted by column position: column names can be anything, form field names can't.
    mapping = {
        column: request.POST[f"map-{index}"]
        for index, column in enumerate(upload.columns)
        if f"map-{index}" in request.POST
    }
    return _change_upload(request, upload, lambda: uploads.upload_set_mapping(upload=upload, mapping=mapping))


@require_POST
def dataset_upload_check(request: HtmxHttpRequest, upload_id: UUID) -> HttpResponse:
    upload = get_object_or_404(Upload, pk=upload_id)
    if upload.status in (Upload.Status.RECEIVED, Upload.Status.VALIDATED, Upload.Status.FAILED):
        uploads.upload_check(upload=upload)
    return redirect("dataset_upload_detail", upload_id=upload.pk)


@require_POST
def dataset_upload_import(request: HtmxHttpRequest, upload_id: UUID) -> HttpResponse:
    upload = get_object_or_404(Upload, pk=upload_id)
    form = ImportForm(request.POST)
    if not form.is_valid():
        messages.error(request, "A dataset name can be at most 200 characters.")
        return redirect("dataset_upload_detail", upload_id=upload.pk)
    skip_invalid = request.POST.get("mode") == "valid" or form.cleaned_data["skip_invalid"]
    try:
        dataset = uploads.upload_import(
            upload=upload, name=form.cleaned_data["name"], skip_invalid=skip_invalid, user=request.user
        )
    except DatasetError as error:
        messages.error(request, str(error))
        return redirect("dataset_upload_detail", upload_id=upload.pk)
    if dataset.status == Dataset.Status.READY:
        rows = f"{dataset.row_count:,} row{'' if dataset.row_count == 1 else 's'}"
        messages.success(request, f"Imported {rows} into “{dataset.name}”.")
    return redirect("dataset_detail", dataset_id=dataset.pk)


@require_GET
def dataset_upload_invalid_rows(request: HtmxHttpRequest, upload_id: UUID) -> HttpResponseBase:
    upload = get_object_or_404(Upload, pk=upload_id)
    if not Path(upload.path).exists():
        messages.error(
            request, "The uploaded file is no longer kept, so its invalid rows can't be downloaded."
        )
        return redirect("dataset_upload_detail", upload_id=upload.pk)
    rows = ingest.invalid_rows_csv(uploads.upload_spec(upload), upload.mapping)
    response = StreamingHttpResponse(rows, content_type="text/csv; charset=utf-8")
    stem = "".join(
        char if char.isalnum() or char in "-_." else "_" for char in Path(upload.original_name).stem
    )
    response["Content-Disposition"] = f'attachment; filename="{stem or "upload"}-invalid-rows.csv"'
    return response


@require_POST
def dataset_upload_discard(request: HtmxHttpRequest, upload_id: UUID) -> HttpResponse:
    upload = get_object_or_404(Upload, pk=upload_id)
    try:
        uploads.upload_discard(upload=upload)
    except DatasetError as error:
        messages.error(request, str(error))
        return redirect("dataset_upload_detail", upload_id=upload.pk)
    messages.success(request, f"Discarded {upload.original_name}.")
    return redirect("dataset_list")


# --- Datasets -------------------------------------------------------------------------------------------


def _dataset(dataset_id: int) -> Dataset:
    return get_object_or_404(
        Dataset.objects.select_related("uploaded_by").annotate(run_count=Count("runs")), pk=dataset_id
    )


@require_GET
def dataset_detail(request: HtmxHttpRequest, dataset_id: int) -> HttpResponse:
    dataset = _dataset(dataset_id)
    importing = dataset.status == Dataset.Status.IMPORTING
    total = max(dataset.row_count, 1)
    context: dict[str, Any] = {
        "dataset": dataset,
        "importing": importing,
        "percent": min(100, round(dataset.rows_done * 100 / total)),
    }
    if dataset.status == Dataset.Status.READY:
        context.update(_rows_page(request, dataset))
    fields: dict[str, list[str]] = {}
    for column, field in dataset.mapping.items():
        if field in ingest.FIELDS:
            fields.setdefault(field, []).append(column)
    context["mapped_fields"] = [
        (ingest.FIELD_LABELS[field], fields[field]) for field in ingest.FIELDS if field in fields
    ]
    context["ignored_columns"] = [
        column for column, field in dataset.mapping.items() if field == ingest.IGNORE
    ]
    context["format_label"] = ingest.FORMAT_LABELS.get(dataset.file_format, dataset.file_format)
    context["encoding_label"] = ingest.ENCODING_LABELS.get(dataset.encoding, dataset.encoding)
    context["retry_upload"] = dataset.uploads.filter(status=Upload.Status.FAILED).first()
    template_name = "dashboard/dataset_detail.html"
    if request.htmx:
        template_name += "#import-progress"
    response = render(request, template_name, context)
    if request.htmx and not importing:
        # The last poll: its answer stops polling, and the rows it cannot show are on the full page.
        response["HX-Refresh"] = "true"
    return response


def _rows_page(request: HtmxHttpRequest, dataset: Dataset) -> dict[str, Any]:
    query = request.GET.get("q", "").strip()[:200]
    page = dataset_rows_page(
        dataset=dataset,
        search=query,
        before=row_number(request.GET.get("before")),
        after=row_number(request.GET.get("after")),
    )
    return {
        "rows": page.rows,
        "query": query,
        "has_previous": page.has_previous,
        "has_next": page.has_next,
        "first_position": page.first_position,
        "last_position": page.last_position,
    }


@require_GET
def dataset_row(request: HtmxHttpRequest, dataset_id: int, position: int) -> HttpResponse:
    dataset = _dataset(dataset_id)
    example = get_object_or_404(Example, dataset=dataset, position=position)
    context = {
        "dataset": dataset,
        "example": example,
        "row_number": position + 1,
        "folded": [
            name
            for name in ("request", "response", "expected_output", "system_prompt")
            if len(text := getattr(example, name)) > LONG_TEXT_CHARS or text.count("\n") > LONG_TEXT_NEWLINES
        ],
        "previous_position": position - 1 if position > 0 else None,
        "next_position": position + 1 if position + 1 < dataset.row_count else None,
        "line_word": "Row" if dataset.file_format == "xlsx" else "Line",
        "query": request.GET.get("q", ""),
    }
    return render(request, "dashboard/dataset_row.html", context)


@require_POST
def dataset_rename(request: HtmxHttpRequest, dataset_id: int) -> HttpResponse:
    dataset = _dataset(dataset_id)
    form = RenameForm(request.POST)
    if not form.is_valid():
        messages.error(request, " ".join(str(m) for errors in form.errors.values() for m in errors))
        return redirect("dataset_detail", dataset_id=dataset.pk)
    try:
        dataset_service.dataset_rename(dataset=dataset, name=form.cleaned_data["name"])
    except DatasetError as error:
        messages.error(request, str(error))
    else:
        messages.success(request, f"Renamed to “{dataset.name}”.")
    return redirect("dataset_detail", dataset_id=dataset.pk)


@require_http_methods(["GET", "POST"])
def dataset_delete(request: HtmxHttpRequest, dataset_id: int) -> HttpResponse:
    """GET: what goes (rows, runs with their retries, uploaded files). POST: delete it all."""
    dataset = _dataset(dataset_id)
    if request.method == "POST":
        try:
            deleted = retention.dataset_delete_with_runs(dataset=dataset, by=request.user.get_username())
        except DatasetError as error:
            messages.error(request, str(error))
            return redirect("dataset_detail", dataset_id=dataset_id)
        runs = len(deleted.runs)
        what = f"its {deleted.examples:,} rows"
        if runs:
            what = f"{what}, {runs} run{'s' if runs != 1 else ''} and their {deleted.scores:,} scores"
        messages.success(request, f"Deleted “{dataset.name}” and {what}.")
        return redirect("dataset_list")
    plan = retention.dataset_deletion_plan(dataset=dataset)
    return render(request, "dashboard/dataset_delete.html", {"dataset": dataset, "plan": plan})


urlpatterns = [
    path("datasets/", dataset_list, name="dataset_list"),
    path("datasets/upload/", dataset_upload, name="dataset_upload"),
    path("datasets/uploads/<uuid:upload_id>/", dataset_upload_detail, name="dataset_upload_detail"),
    path("datasets/uploads/<uuid:upload_id>/read-as/", dataset_upload_options, name="dataset_upload_options"),
    path("datasets/uploads/<uuid:upload_id>/mapping/", dataset_upload_mapping, name="dataset_upload_mapping"),
    path("datasets/uploads/<uuid:upload_id>/check/", dataset_upload_check, name="dataset_upload_check"),
    path("datasets/uploads/<uuid:upload_id>/import/", dataset_upload_import, name="dataset_upload_import"),
    path(
        "datasets/uploads/<uuid:upload_id>/invalid-rows.csv",
        dataset_upload_invalid_rows,
        name="dataset_upload_invalid_rows",
    ),
    path("datasets/uploads/<uuid:upload_id>/discard/", dataset_upload_discard, name="dataset_upload_discard"),
    path("datasets/<int:dataset_id>/", dataset_detail, name="dataset_detail"),
    path("datasets/<int:dataset_id>/rows/<int:position>/", dataset_row, name="dataset_row"),
    path("datasets/<int:dataset_id>/rename/", dataset_rename, name="dataset_rename"),
    path("datasets/<int:dataset_id>/delete/", dataset_delete, name="dataset_delete"),
]
