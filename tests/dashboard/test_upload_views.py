"""The upload pages: receiving a file (caps, empty, header-only, binary), mapping, checking, importing."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse
from pytest_django.fixtures import Settings as SettingsWrapper

from evals.models import Dataset, Upload

pytestmark = pytest.mark.django_db
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "datasets"


@pytest.fixture(autouse=True)
def uploads_dir(settings: SettingsWrapper, tmp_path: Path) -> Path:
    settings.FILE_UPLOAD_TEMP_DIR = tmp_path / "uploads"
    Path(settings.FILE_UPLOAD_TEMP_DIR).mkdir()
    return Path(settings.FILE_UPLOAD_TEMP_DIR)


def post_file(client: Client, name: str, content: bytes) -> Any:
    return client.post(reverse("dataset_upload"), {"file": SimpleUploadedFile(name, content)})


def test_upload_page_has_a_drop_zone_and_a_file_picker(logged_in: Client) -> None:
    response = logged_in.get(reverse("dataset_upload"))
    assert response.status_code == 200
    html = response.content.decode()
    assert "data-dropzone" in html and 'type="file"' in html and "Choose a file" in html
    assert "upload.js" in html and "datasets.css" in html


def test_upload_needs_a_login(client: Client) -> None:
    response = client.get(reverse("dataset_upload"))
    assert response.status_code == 302 and "/login/" in response["Location"]


def test_uploading_a_csv_leads_to_its_preview_with_mapping_and_check(logged_in: Client) -> None:
    response = post_file(logged_in, "qa.csv", (FIXTURES / "qa.csv").read_bytes())
    upload = Upload.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("dataset_upload_detail", args=[upload.pk])
    page = logged_in.get(response["Location"])
    html = page.content.decode()
    assert "qa.csv" in html and "UTF-8" in html and "comma-separated" in html
    assert "What is the capital of France?" in html
    assert '<option value="request" selected>' in html and '<option value="contexts" selected>' in html
    assert page.context["report"]["valid"] == 3
    assert "Import 3 rows" in html
    assert not Dataset.objects.exists()


def test_file_over_the_size_cap_gets_a_clear_message_not_a_500(
    logged_in: Client, settings: SettingsWrapper, uploads_dir: Path
) -> None:
    settings.DOCKET_MAX_UPLOAD_BYTES = 1000
    response = post_file(logged_in, "big.csv", b"question,answer\n" + b"q,a\n" * 2000)
    assert response.status_code == 413
    assert "The file is over the 1000 bytes upload limit." in response.content.decode()
    assert not Upload.objects.exists()
    assert list(uploads_dir.iterdir()) == []


def test_file_just_over_the_cap_is_stopped_while_streaming(
    logged_in: Client, settings: SettingsWrapper, uploads_dir: Path
) -> None:
    # Content-Length alone would let it through (multipart overhead allowance); the handler counts bytes.
    settings.DOCKET_MAX_UPLOAD_BYTES = 1000
    response = post_file(logged_in, "big.csv", b"question,answer\n" + b"q,a\n" * 300)
    assert response.status_code == 413
    assert list(uploads_dir.iterdir()) == []


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.csv", b"", "The file is empty."),
        ("header.csv", b"question,answer\r\n", "header.csv: The file has a header row but no data rows."),
        ("blob.csv", bytes(range(256)) * 64, "This file looks binary, not text."),
        ("picture.csv", b"\x89PNG\r\n\x1a\n" + bytes(1000), "This file is a PNG image, not a dataset."),
    ],
)
def test_unusable_files_are_refused_with_one_sentence(
    logged_in: Client, uploads_dir: Path, name: str, content: bytes, message: str
) -> None:
    response = post_file(logged_in, name, content)
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not Upload.objects.exists()
    assert list(uploads_dir.iterdir()) == []


def test_posting_without_a_file_asks_for_one(logged_in: Client) -> None:
    response = logged_in.post(reverse("dataset_upload"), {})
    assert response.status_code == 400
    assert "Choose a file to upload." in response.content.decode()


def test_upload_post_without_csrf_token_is_refused(user: Any) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    response = post_file(client, "qa.csv", (FIXTURES / "qa.csv").read_bytes())
    assert response.status_code == 403
    assert not Upload.objects.exists()


def upload_of(client: Client, name: str) -> Upload:
    post_file(client, name, (FIXTURES / name).read_bytes())
    return Upload.objects.get()


def test_changing_a_mapping_rechecks_and_enables_import(logged_in: Client) -> None:
    upload = upload_of(logged_in, "unmapped_semicolon.csv")
    page = logged_in.get(reverse("dataset_upload_detail", args=[upload.pk]))
    assert "Map a column to response" in page.content.decode()
    assert "Import 2 rows" not in page.content.decode()
    response = logged_in.post(
        reverse("dataset_upload_mapping", args=[upload.pk]),
        {"map-0": "request", "map-1": "response", "map-2": "metadata"},
    )
    assert response.status_code == 302
    upload.refresh_from_db()
    assert upload.mapping == {"q_text": "request", "reply": "response", "notes": "metadata"}
    assert upload.status == Upload.Status.VALIDATED
    assert (
        "Import 2 rows" in logged_in.get(reverse("dataset_upload_detail", args=[upload.pk])).content.decode()
    )


def test_unknown_field_in_mapping_is_a_message_not_a_500(logged_in: Client) -> None:
    upload = upload_of(logged_in, "qa.csv")
    response = logged_in.post(
        reverse("dataset_upload_mapping", args=[upload.pk]), {"map-0": "nonsense"}, follow=True
    )
    assert response.status_code == 200
    assert "Unknown field &#x27;nonsense&#x27;." in response.content.decode()


def test_a_mapping_changed_from_htmx_gets_the_workspace_back_with_what_went_wrong(logged_in: Client) -> None:
    upload = upload_of(logged_in, "qa.csv")
    htmx = {"HX-Request": "true", "HX-Target": "upload-workspace"}
    response = logged_in.post(
        reverse("dataset_upload_mapping", args=[upload.pk]), {"map-0": "nonsense"}, follow=True, headers=htmx
    )
    workspace = response.content.decode()
    assert workspace.lstrip().startswith('<div id="upload-workspace"') and "<html" not in workspace
    assert "Unknown field &#x27;nonsense&#x27;." in workspace and 'id="check-report"' in workspace
    # Said once: the next full page does not repeat it.
    page = logged_in.get(reverse("dataset_upload_detail", args=[upload.pk])).content.decode()
    assert "Unknown field" not in page and 'id="upload-workspace"' in page and "<html" in page


def test_read_options_change_the_delimiter(logged_in: Client) -> None:
    upload = upload_of(logged_in, "unmapped_semicolon.csv")
    logged_in.post(
        reverse("dataset_upload_options", args=[upload.pk]), {"delimiter": ",", "encoding": "utf-8"}
    )
    upload.refresh_from_db()
    assert upload.options["delimiter"] == "," and upload.columns == ["q_text;reply;notes"]
    response = logged_in.post(
        reverse("dataset_upload_options", args=[upload.pk]), {"delimiter": "x"}, follow=True
    )
    assert "Choose an encoding, delimiter or sheet from the lists." in response.content.decode()


def test_import_creates_the_dataset_and_shows_its_rows(logged_in: Client) -> None:
    upload = upload_of(logged_in, "qa.csv")
    response = logged_in.post(
        reverse("dataset_upload_import", args=[upload.pk]), {"name": "Trivia", "mode": "all"}, follow=True
    )
    dataset = Dataset.objects.get()
    assert response.redirect_chain[-1][0] == reverse("dataset_detail", args=[dataset.pk])
    html = response.content.decode()
    assert "Imported 3 rows into “Trivia”." in html
    assert "What is the capital of France?" in html and "William Shakespeare." in html
    # The upload now leads to its dataset.
    assert logged_in.get(reverse("dataset_upload_detail", args=[upload.pk]))["Location"] == reverse(
        "dataset_detail", args=[dataset.pk]
    )


def test_invalid_rows_are_listed_and_downloadable_and_only_valid_ones_imported(logged_in: Client) -> None:
    content = b'question,answer\nq1,a1\nq2,\nq3,a3\n"q4",a4,extra\n'
    post_file(logged_in, "some-bad.csv", content)
    upload = Upload.objects.get()
    page = logged_in.get(reverse("dataset_upload_detail", args=[upload.pk]))
    html = page.content.decode()
    assert "is empty; each row needs a response" in html and "has 3 cells; the header has 2 columns" in html
    assert "Import only the 2 valid rows" in html and "Import 4 rows" not in html
    download = logged_in.get(reverse("dataset_upload_invalid_rows", args=[upload.pk]))
    assert download["Content-Disposition"] == 'attachment; filename="some-bad-invalid-rows.csv"'
    rows = list(csv.reader(io.StringIO(b"".join(download.streaming_content).decode("utf-8-sig"))))  # type: ignore[attr-defined]
    assert rows[0] == ["question", "answer", "error"]
    assert rows[1] == ["q2", "", "line 3, column answer: is empty; each row needs a response"]
    # Importing everything is refused with a reason; importing the valid rows works.
    refused = logged_in.post(
        reverse("dataset_upload_import", args=[upload.pk]), {"name": "x", "mode": "all"}, follow=True
    )
    assert "2 rows are invalid" in refused.content.decode() and not Dataset.objects.exists()
    logged_in.post(reverse("dataset_upload_import", args=[upload.pk]), {"name": "x", "mode": "valid"})
    assert list(Dataset.objects.get().examples.values_list("request", flat=True)) == ["q1", "q3"]


def test_problems_are_paginated(logged_in: Client) -> None:
    post_file(logged_in, "bad.csv", b"question,answer\n" + b"q,\n" * 120 + b"q,a\n")
    upload = Upload.objects.get()
    first = logged_in.get(reverse("dataset_upload_detail", args=[upload.pk]))
    assert "Page 1 of 3" in first.content.decode()
    third = logged_in.get(reverse("dataset_upload_detail", args=[upload.pk]) + "?problems=3")
    assert "line 122, column answer" not in third.content.decode()
    assert ">121</td>" in third.content.decode()


def test_same_file_uploaded_again_points_at_the_dataset(logged_in: Client) -> None:
    upload = upload_of(logged_in, "qa.csv")
    logged_in.post(reverse("dataset_upload_import", args=[upload.pk]), {"name": "First", "mode": "all"})
    dataset = Dataset.objects.get()
    post_file(logged_in, "copy.csv", (FIXTURES / "qa.csv").read_bytes())
    again = Upload.objects.exclude(pk=upload.pk).get()
    html = logged_in.get(reverse("dataset_upload_detail", args=[again.pk])).content.decode()
    assert "This same file (identical SHA-256) was already imported as" in html
    assert f'href="{reverse("dataset_detail", args=[dataset.pk])}">First</a>' in html
    assert "Import 3 rows" in html


def test_background_check_report_polls_until_done(logged_in: Client, settings: SettingsWrapper) -> None:
    settings.DOCKET_INLINE_IMPORT_MAX_BYTES = 10
    with mock.patch("django_q.tasks.async_task"):
        upload = upload_of(logged_in, "qa.csv")
    # The report polls the upload page, which answers a poll (htmx, aimed at the report) with it alone.
    url = reverse("dataset_upload_detail", args=[upload.pk])
    poll = {"HX-Request": "true", "HX-Target": "check-report"}
    fragment = logged_in.get(url, headers=poll).content.decode()
    assert f'hx-get="{url}" hx-trigger="every 1s"' in fragment and "Checking every row" in fragment
    assert fragment.lstrip().startswith('<section class="card" id="check-report"')
    from evals import tasks

    tasks.upload_validate(str(upload.pk))
    fragment = logged_in.get(url, headers=poll).content.decode()
    assert "hx-trigger" not in fragment and "Import 3 rows" in fragment


def test_discard_removes_the_upload_and_its_file(logged_in: Client) -> None:
    upload = upload_of(logged_in, "qa.csv")
    response = logged_in.post(reverse("dataset_upload_discard", args=[upload.pk]))
    assert response.status_code == 302
    assert not Upload.objects.exists() and not Path(upload.path).exists()


def test_unknown_upload_is_a_404(logged_in: Client) -> None:
    import uuid

    assert logged_in.get(reverse("dataset_upload_detail", args=[uuid.uuid4()])).status_code == 404


def test_xlsx_upload_offers_its_sheets(logged_in: Client, tmp_path: Path) -> None:
    import openpyxl

    workbook = openpyxl.Workbook()
    workbook.active.title = "Answers"
    workbook.active.append(["prompt", "completion"])
    workbook.active.append(["p1", "c1"])
    other = workbook.create_sheet("Second run")
    other.append(["question", "answer"])
    other.append(["q1", "a1"])
    other.append(["q2", "a2"])
    path = tmp_path / "book.xlsx"
    workbook.save(path)
    upload = upload_from_bytes(logged_in, "book.xlsx", path.read_bytes())
    html = logged_in.get(reverse("dataset_upload_detail", args=[upload.pk])).content.decode()
    assert "Excel workbook" in html and '<option value="Second run">' in html and "Import 1 row" in html
    logged_in.post(reverse("dataset_upload_options", args=[upload.pk]), {"sheet": "Second run"})
    html = logged_in.get(reverse("dataset_upload_detail", args=[upload.pk])).content.decode()
    assert "Import 2 rows" in html and "sheet Second run" in html


def test_jsonl_upload_can_be_read_with_another_encoding(logged_in: Client) -> None:
    upload = upload_from_bytes(
        logged_in, "d.jsonl", '{"question": "café", "answer": "oui"}\n'.encode("cp1252")
    )
    assert upload.encoding == "cp1252"
    html = logged_in.get(reverse("dataset_upload_detail", args=[upload.pk])).content.decode()
    assert "Windows-1252" in html and "café" in html and 'id="id_delimiter"' not in html
    logged_in.post(reverse("dataset_upload_options", args=[upload.pk]), {"encoding": "latin-1"})
    upload.refresh_from_db()
    assert upload.encoding == "latin-1" and upload.report["valid"] == 1


def upload_from_bytes(client: Client, name: str, content: bytes) -> Upload:
    response = post_file(client, name, content)
    assert response.status_code == 302, response.content.decode()
    return Upload.objects.get()


def test_file_over_the_row_cap_gets_a_clear_message(logged_in: Client, settings: SettingsWrapper) -> None:
    settings.DOCKET_MAX_ROWS = 2
    upload = upload_of(logged_in, "qa.csv")
    response = logged_in.get(reverse("dataset_upload_detail", args=[upload.pk]))
    html = response.content.decode()
    assert response.status_code == 200
    assert "The file has more than 2 rows, over the row limit (DOCKET_MAX_ROWS)." in html
    assert "Import 3 rows" not in html


def test_large_import_runs_in_the_background_with_a_progress_page(
    logged_in: Client, settings: SettingsWrapper, django_capture_on_commit_callbacks: Any
) -> None:
    from evals import tasks

    settings.DOCKET_INLINE_IMPORT_MAX_BYTES = 10
    with mock.patch("django_q.tasks.async_task"):
        upload = upload_of(logged_in, "qa.csv")
    tasks.upload_validate(str(upload.pk))
    with (
        mock.patch("django_q.tasks.async_task") as async_task,
        django_capture_on_commit_callbacks(execute=True),
    ):
        response = logged_in.post(
            reverse("dataset_upload_import", args=[upload.pk]), {"name": "Later", "mode": "all"}, follow=True
        )
    dataset = Dataset.objects.get()
    assert async_task.call_args.args == ("evals.tasks.dataset_import", str(upload.pk))
    html = response.content.decode()
    assert "Importing…" in html and "0 of 3 rows written (0%)" in html and 'hx-trigger="every 1s"' in html
    tasks.dataset_import(str(upload.pk))
    html = logged_in.get(reverse("dataset_detail", args=[dataset.pk])).content.decode()
    assert "Importing…" not in html and "What is the capital of France?" in html


def test_rows_committed_midway_through_an_import_are_shown_and_used_nowhere(logged_in: Client) -> None:
    """Imports commit in chunks: until the dataset is ready its rows are a staging area no page,
    form or run can reach, so a failure (which deletes them) leaves nothing anyone saw."""
    from evals import tasks
    from evals.models import Example, Judge
    from evals.services import dataset_rows, uploads
    from evals.services.run_options import RunError
    from evals.services.runs import run_create

    judge = Judge.objects.create(api_url="http://judge", remote_id="j1", source="offline", name="J")
    with mock.patch("django_q.tasks.async_task"):
        upload = upload_of(logged_in, "qa.csv")
    with (
        mock.patch.object(uploads, "_runs_inline", return_value=False),
        mock.patch("django_q.tasks.async_task"),
    ):
        logged_in.post(reverse("dataset_upload_import", args=[upload.pk]), {"name": "Later", "mode": "all"})
    dataset = Dataset.objects.get()
    seen: dict[str, Any] = {}
    real_write = dataset_rows._write_examples

    def look_after_the_first_chunk(dataset_id: int, params: list[Any]) -> None:
        if params[0][1] == 1:  # the first row is committed, the others not yet
            seen["rows"] = Example.objects.filter(dataset=dataset).count()
            seen["detail"] = logged_in.get(reverse("dataset_detail", args=[dataset.pk])).content.decode()
            seen["new run"] = logged_in.get(reverse("run_create"), {"dataset": dataset.pk}).content.decode()
            with pytest.raises(RunError, match="not ready yet"):
                run_create(dataset=Dataset.objects.get(pk=dataset.pk), judge=judge)
        real_write(dataset_id, params)

    with (
        mock.patch.object(dataset_rows, "WRITE_BATCH_ROWS", 1),
        mock.patch.object(dataset_rows, "_write_examples", look_after_the_first_chunk),
    ):
        tasks.dataset_import(str(upload.pk))
    assert seen["rows"] == 1
    assert "Importing…" in seen["detail"] and "What is the capital of France?" not in seen["detail"]
    assert f'value="{dataset.pk}"' not in seen["new run"]
    dataset.refresh_from_db()
    assert dataset.status == Dataset.Status.READY and dataset.examples.count() == 3
    # Once ready, the same pages show and offer it.
    assert (
        "What is the capital of France?"
        in logged_in.get(reverse("dataset_detail", args=[dataset.pk])).content.decode()
    )
    assert f'value="{dataset.pk}"' in logged_in.get(reverse("run_create")).content.decode()


class UnreadableBody(io.BytesIO):
    """A request body that must not be read: the upload is refused on its Content-Length alone."""

    def read(self, *args: Any) -> bytes:
        raise AssertionError("the body was read")

    def readline(self, *args: Any) -> bytes:
        raise AssertionError("the body was read")


def test_an_upload_declared_over_the_cap_is_refused_before_its_body_is_read(
    logged_in: Client, settings: SettingsWrapper, uploads_dir: Path
) -> None:
    settings.DOCKET_MAX_UPLOAD_BYTES = 1000
    response = logged_in.generic(
        "POST",
        reverse("dataset_upload"),
        b"",
        content_type="multipart/form-data; boundary=BoUnDaRy",
        CONTENT_LENGTH=str(600 * 1024 * 1024),
        **{"wsgi.input": UnreadableBody()},
    )
    assert response.status_code == 413
    assert "The file is over the 1000 bytes upload limit." in response.content.decode()
    assert list(uploads_dir.iterdir()) == []


def test_the_temporary_file_never_carries_the_clients_extension(
    logged_in: Client, uploads_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from evals.services import uploads

    received: list[str] = []
    real = uploads.upload_create

    def spy(*, source: Path, **kwargs: Any) -> Upload:
        received.append(source.name)
        return real(source=source, **kwargs)

    monkeypatch.setattr(uploads, "upload_create", spy)
    post_file(logged_in, "qa.evil;ext", (FIXTURES / "qa.csv").read_bytes())
    assert len(received) == 1
    assert "evil" not in received[0] and "ext" not in received[0]


def test_a_file_name_with_a_250_character_extension_gets_a_clear_message_not_a_500(
    logged_in: Client, uploads_dir: Path
) -> None:
    name = "a." + "x" * 250
    response = post_file(logged_in, name, (FIXTURES / "qa.csv").read_bytes())
    assert response.status_code == 302, response.content.decode()
    assert Upload.objects.get().original_name == name
