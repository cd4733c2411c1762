"""Uploading a dataset in Chromium: choose or drop a file, change a mapping, import, see the rows."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect
from pytest_django.fixtures import Settings as SettingsWrapper

from evals.models import Dataset

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "datasets"


@pytest.fixture(autouse=True)
def uploads_dir(settings: SettingsWrapper, tmp_path: Path) -> Path:
    settings.FILE_UPLOAD_TEMP_DIR = tmp_path / "uploads"
    return Path(settings.FILE_UPLOAD_TEMP_DIR)


@pytest.mark.django_db(transaction=True)
def test_choose_a_file_change_a_mapping_import_and_see_the_rows(login: Any, live_server: Any) -> None:
    page = login()
    page.goto(f"{live_server.url}/datasets/")
    # The drop zone's script is deferred: wait for the page to load, or on a loaded machine the file
    # can be chosen before the script runs.
    with page.expect_navigation(wait_until="load"):
        page.get_by_role("link", name="Upload a dataset").first.click()
    page.set_input_files("input[type=file]", FIXTURES / "unmapped_semicolon.csv")
    expect(page.locator("[data-file-name]")).to_contain_text("unmapped_semicolon.csv")
    page.get_by_role("button", name="Upload and preview").click()

    page.wait_for_url(re.compile(r"/datasets/uploads/[0-9a-f-]+/$"))
    expect(page.get_by_text("semicolon-separated")).to_be_visible()
    expect(page.locator("#upload-workspace")).to_contain_text("Map a column to response")
    # One change per column; each change re-checks the rows without a page load.
    page.get_by_label("Field for column q_text").select_option("request")
    expect(page.get_by_label("Field for column q_text")).to_have_value("request")
    page.get_by_label("Field for column reply").select_option("response")
    import_button = page.get_by_role("button", name="Import 2 rows")
    expect(import_button).to_be_visible()
    expect(page.locator("[data-stat=valid]")).to_have_text("2")

    page.get_by_label("Dataset name").fill("Sky and sums")
    import_button.click()
    page.wait_for_url(re.compile(r"/datasets/\d+/$"))
    expect(page.get_by_role("heading", name="Sky and sums")).to_be_visible()
    rows = page.locator("table.rows-table tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.first).to_contain_text("What colour is the sky?")
    expect(rows.first).to_contain_text("Blue, on a clear day.")

    rows.first.get_by_role("link").click()
    expect(page.get_by_role("heading", name=re.compile("Row 1"))).to_be_visible()
    expect(page.locator("dl.kv")).to_contain_text("weather")
    dataset = Dataset.objects.get()
    assert dataset.mapping == {"q_text": "request", "reply": "response", "notes": "metadata"}


@pytest.mark.django_db(transaction=True)
def test_a_dropped_file_is_uploaded(login: Any, live_server: Any) -> None:
    page = login()
    page.goto(f"{live_server.url}/datasets/upload/")
    transfer = page.evaluate_handle(
        """() => {
            const transfer = new DataTransfer();
            transfer.items.add(new File(["prompt,completion\\nHello,Hi there\\n"], "dropped.csv", {type: "text/csv"}));
            return transfer;
        }"""
    )
    page.dispatch_event("[data-dropzone]", "drop", {"dataTransfer": transfer})
    expect(page.locator("[data-file-name]")).to_contain_text("dropped.csv")
    page.get_by_role("button", name="Upload and preview").click()
    page.wait_for_url(re.compile(r"/datasets/uploads/"))
    expect(page.get_by_role("button", name="Import 1 row")).to_be_visible()


@pytest.mark.django_db(transaction=True)
def test_a_file_over_the_cap_is_refused_before_sending(
    login: Any, live_server: Any, settings: SettingsWrapper
) -> None:
    settings.DOCKET_MAX_UPLOAD_BYTES = 100
    page = login()
    page.goto(f"{live_server.url}/datasets/upload/")
    page.set_input_files("input[type=file]", FIXTURES / "qa.csv")
    alert = page.locator("[data-client-error]")
    expect(alert).to_be_visible()
    expect(alert).to_contain_text("over the 100 bytes upload limit")
    page.get_by_role("button", name="Upload and preview").click()
    expect(page).to_have_url(f"{live_server.url}/datasets/upload/")
