"""The compare pages: the summary table with links into each evaluator's items, and the item-by-item view
(filters, order, pages, counts that match the table, text diffs that stay text)."""

from __future__ import annotations

import html
import re
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse
from pytest_django.fixtures import Settings as SettingsWrapper

from evals.models import Run, Upload
from evals.selectors.compare import runs_compare
from tests.factories import build_run

pytestmark = pytest.mark.django_db

HOSTILE = '<img src=x onerror="window.__pwned=1">'
HOSTILE_JUSTIFICATION = '<div hx-get="/runs/" hx-trigger="load">boom</div>'


def text_of(response: object) -> str:
    return response.content.decode()  # type: ignore[attr-defined]


def items_url(a: Run, b: Run, **params: str) -> str:
    query = "&".join(f"{key}={value}" for key, value in params.items())
    return f"/runs/compare/items/?a={a.pk}&b={b.pk}" + (f"&{query}" if query else "")


def tab_counts(body: str) -> dict[str, int]:
    """The counts on the change tabs: {"All pairs": 7, "Improved": 3, ...}."""
    tabs = re.search(r'<nav class="tabs compare-items-tabs".*?</nav>', body, re.S)
    assert tabs is not None
    found = re.findall(r'>([A-Za-z ]+) <span class="badge badge-muted">([\d,]+)</span></a>', tabs.group(0))
    return {label: int(count.replace(",", "")) for label, count in found}


def listed_rows(body: str) -> list[int]:
    return [int(n) for n in re.findall(r'<h2 id="pair-\d+" class="pair-title">Row (\d+)', body)]


@pytest.fixture
def two_runs() -> tuple[Run, Run]:
    # d (Politeness) = +.4, -.4, 0, +.2, -.3, 0, +.1; Concision is the same everywhere.
    a = build_run(
        {"Politeness": [0.5] * 7, "Concision": [1.0] * 7},
        name="v1",
        responses=[f"Open Settings, then Security ({n})." for n in range(7)],
    )
    b = build_run(
        {"Politeness": [0.9, 0.1, 0.5, 0.7, 0.2, 0.5, 0.6], "Concision": [1.0] * 7},
        dataset=a.dataset,
        judge=a.judge,
        name="v2",
        justification=lambda name, position, score: f"B: row {position} {name} {score}",
    )
    return a, b


def test_each_evaluator_row_of_the_compare_page_links_to_its_items(
    logged_in: Client, two_runs: tuple[Run, Run]
) -> None:
    a, b = two_runs
    body = text_of(logged_in.get(f"/runs/compare/?a={a.pk}&b={b.pk}"))
    assert "7 pairs</strong> by row (same dataset)" in body
    base = html.escape(f"/runs/compare/items/?a={a.pk}&b={b.pk}&evaluator=Politeness")
    assert f'href="{base}"' in body  # "Item by item"
    assert f'href="{base}&amp;change=improved"' in body and f'href="{base}&amp;change=regressed"' in body
    assert html.escape(f"/runs/compare/items/?a={a.pk}&b={b.pk}&evaluator=Concision") in body


def test_item_view_counts_match_the_summary_table_and_the_filters_list_those_pairs(
    logged_in: Client, two_runs: tuple[Run, Run]
) -> None:
    a, b = two_runs
    summary = runs_compare(a=a, b=b).evaluator("Politeness")
    assert summary is not None
    page = logged_in.get(items_url(a, b, evaluator="Politeness"))
    assert page.status_code == 200
    body = text_of(page)
    assert (
        tab_counts(body)
        == {
            "All pairs": summary.n,
            "Improved": summary.improved,
            "Regressed": summary.regressed,
            "Unchanged": summary.unchanged,
        }
        == {"All pairs": 7, "Improved": 3, "Regressed": 2, "Unchanged": 2}
    )
    assert listed_rows(body) == [1, 2, 3, 4, 5, 6, 7]
    assert "Open Settings, then Security (0)." in body and "B: row 1 Politeness 0.1" in body
    regressed = text_of(logged_in.get(items_url(a, b, evaluator="Politeness", change="regressed")))
    assert listed_rows(regressed) == [2, 5]
    assert "2 of 2 regressed pairs on this page" in regressed
    assert 'aria-current="page">Regressed' in regressed
    largest = text_of(
        logged_in.get(items_url(a, b, evaluator="Politeness", change="improved", sort="change"))
    )
    assert listed_rows(largest) == [1, 4, 7]
    # Concision never changed: every pair is unchanged, none improved.
    concision = text_of(logged_in.get(items_url(a, b, evaluator="Concision", change="improved")))
    assert tab_counts(concision)["Unchanged"] == 7
    assert "No improved pairs" in concision


def test_item_view_pages_hold_50_pairs_and_follow_a_cursor(logged_in: Client) -> None:
    a = build_run({"Politeness": [0.5] * 120})
    b = build_run({"Politeness": [0.5 + (n % 5) / 10 for n in range(120)]}, dataset=a.dataset, judge=a.judge)
    first = text_of(logged_in.get(items_url(a, b, change="improved")))
    # 96 rows improved (n % 5 != 0); the first page holds 50 of them.
    assert tab_counts(first)["Improved"] == 96
    assert len(listed_rows(first)) == 50 and "50 of 96 improved pairs on this page" in first
    next_link = re.search(r'href="([^"]+)" rel="next"', first)
    assert next_link is not None
    second = text_of(logged_in.get(html.unescape(next_link.group(1))))
    assert listed_rows(second)[0] > listed_rows(first)[-1]
    assert len(listed_rows(second)) == 46 and 'rel="next"' not in second
    assert "First page" in second


def test_response_diff_marks_words_and_hostile_text_stays_text(logged_in: Client) -> None:
    a = build_run(
        {"Politeness": [0.9, 0.8]},
        requests=[HOSTILE, "plain"],
        responses=[f"Keep this {HOSTILE} and drop that", "same"],
        justification=lambda name, position, score: HOSTILE_JUSTIFICATION,
    )
    # v2 answers to the same (hostile) questions: they pair by input.
    b = build_run(
        {"Politeness": [0.2, 0.8]},
        requests=[HOSTILE, "plain"],
        responses=[f"Keep this {HOSTILE} and add <script>x()</script> instead", "same"],
        judge=a.judge,
    )
    body = text_of(logged_in.get(items_url(a, b, evaluator="Politeness")))
    assert listed_rows(body) == [1, 2]
    for raw in (HOSTILE, HOSTILE_JUSTIFICATION, "<script>x()</script>"):
        assert raw not in body
    assert 'hx-get="/runs/"' not in body and "<img src=x" not in body
    assert f"Keep this {html.escape(HOSTILE)} and " in body
    assert "<del>drop that</del>" in body
    assert f"<ins>add {html.escape('<script>x()</script>')} instead</ins>" in body
    assert html.escape(HOSTILE_JUSTIFICATION) in body


def test_item_view_turns_bad_addresses_into_sentences(logged_in: Client, two_runs: tuple[Run, Run]) -> None:
    a, b = two_runs
    cases = [
        (f"/runs/compare/items/?a={a.pk}&b=999999", 404, "There is no run &quot;999999&quot; to use as B."),
        ("/runs/compare/items/", 400, "Choose two runs to compare first."),
        (items_url(a, b, evaluator="Nope"), 400, "Both runs must have the evaluator &quot;Nope&quot;."),
        (items_url(a, b, change="better"), 400, "Unknown change &quot;better&quot;"),
        (items_url(a, b, sort="random"), 400, "Unknown order &quot;random&quot;"),
        (items_url(a, b, sort="change", after="nonsense"), 400, "page link is not valid"),
    ]
    for url, status, message in cases:
        page = logged_in.get(url)
        assert page.status_code == status, url
        assert message in text_of(page), url


def test_compare_page_says_not_enough_paired_items_and_reports_duplicated_inputs(logged_in: Client) -> None:
    a = build_run({"Politeness": [0.1, 0.5, 0.3]}, requests=["alpha", "bravo", "alpha"])
    b = build_run({"Politeness": [0.9, 0.4]}, requests=["alpha", "charlie"])
    body = text_of(logged_in.get(f"/runs/compare/?a={a.pk}&b={b.pk}"))
    assert "not enough paired items" in body and "no significant difference" not in body
    assert "1 pair</strong> by input" in body
    assert "appear more than once (1 in A, 0 in B" in body
    assert "inputs that appear more than once: 1 in A, 0 in B" in body


def test_a_threshold_for_both_runs_is_shown_as_an_override_and_kept_in_item_links(
    logged_in: Client, two_runs: tuple[Run, Run]
) -> None:
    a, b = two_runs
    body = text_of(logged_in.get(f"/runs/compare/?a={a.pk}&b={b.pk}&threshold=0.6"))
    assert "at 0.6 (override)" in body
    assert html.escape(f"/runs/compare/items/?a={a.pk}&b={b.pk}&threshold.Politeness=0.6") in body
    items = text_of(logged_in.get(items_url(a, b, **{"threshold.Politeness": "0.6"})))
    assert 'name="threshold.Politeness" value="0.6"' in items


def test_the_upload_mapping_offers_key_and_guesses_it_from_an_id_column(
    logged_in: Client, settings: SettingsWrapper, tmp_path: Path
) -> None:
    settings.FILE_UPLOAD_TEMP_DIR = tmp_path
    content = b"case_id,question,answer\nc-1,Hi?,Hello.\nc-2,Bye?,Goodbye.\n"
    logged_in.post(reverse("dataset_upload"), {"file": SimpleUploadedFile("answers.csv", content)})
    upload = Upload.objects.get()
    assert upload.mapping["case_id"] == "key"
    body = text_of(logged_in.get(reverse("dataset_upload_detail", args=[upload.pk])))
    assert '<option value="key" selected>key (pairs rows across uploads)</option>' in body
    page = logged_in.post(
        reverse("dataset_upload_import", args=[upload.pk]), {"name": "answers", "mode": "all"}, follow=True
    )
    assert page.status_code == 200
    upload.refresh_from_db()
    dataset = upload.dataset
    assert dataset is not None
    assert sorted(example.key for example in dataset.examples.all()) == ["c-1", "c-2"]


@pytest.mark.parametrize(
    "query", ["a=%C2%B2&b=1", "a=1&b=99999999999999999999999", "q=%C2%B2", "q=%D9%A1%D9%A2"]
)
def test_compare_page_answers_odd_numbers_without_a_500(logged_in: Client, query: str) -> None:
    assert logged_in.get(f"/runs/compare/?{query}").status_code == 200
