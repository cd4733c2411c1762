"""Dataset pages: the list, rows paginated by key, search, the row view, progress, rename, delete."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.contrib.auth.models import AbstractBaseUser
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from evals.models import Dataset, Example, Judge, Run

pytestmark = pytest.mark.django_db


def make_dataset(rows: int, *, name: str = "Support answers", user: Any = None, **fields: Any) -> Dataset:
    dataset = Dataset.objects.create(
        name=name,
        uploaded_by=user,
        file_name="answers.csv",
        file_format="csv",
        encoding="utf-8",
        row_count=rows,
        rows_done=rows,
        mapping={"q": "request", "a": "response", "src": "contexts", "topic": "metadata"},
        columns=["q", "a", "src", "topic"],
        metadata_columns=["topic"],
        **fields,
    )
    Example.objects.bulk_create(
        Example(
            dataset=dataset,
            position=i,
            source_line=i + 2,
            request=f"question {i}",
            response=f"answer {i}" + (" refund" if i % 10 == 0 else ""),
            contexts=[f"context {i}"],
            metadata={"topic": f"t{i % 3}"},
        )
        for i in range(rows)
    )
    return dataset


def test_list_shows_name_rows_uploader_date_and_runs_using_it(
    logged_in: Client, user: AbstractBaseUser
) -> None:
    dataset = make_dataset(3, user=user)
    judge = Judge.objects.create(api_url="http://judge", remote_id="j", source="offline", name="J")
    Run.objects.create(dataset=dataset, judge=judge)
    Run.objects.create(dataset=dataset, judge=judge)
    make_dataset(0, name="Being imported", status=Dataset.Status.IMPORTING).__class__.objects.filter(
        name="Being imported"
    ).update(row_count=10, rows_done=4)
    response = logged_in.get(reverse("dataset_list"))
    html = response.content.decode()
    assert "Support answers" in html and "ada" in html and dataset.created_at.strftime("%Y") in html
    row = html.split("Support answers")[1].split("</tr>")[0]
    assert '<td class="num">3</td>' in row and '<td class="num">2</td>' in row
    importing = html.split("Being imported")[1].split("</tr>")[0]
    assert (
        "badge-importing" in importing
        and 'class="progress list-progress"' in importing
        and "width: 40%" in importing
    )


def test_empty_list_invites_an_upload(logged_in: Client) -> None:
    html = logged_in.get(reverse("dataset_list")).content.decode()
    assert "No datasets yet" in html and reverse("dataset_upload") in html


def test_rows_are_paginated_by_position_not_offset(logged_in: Client) -> None:
    dataset = make_dataset(120)
    url = reverse("dataset_detail", args=[dataset.pk])
    first = logged_in.get(url)
    assert [row["position"] for row in first.context["rows"]] == list(range(50))
    assert first.context["has_next"] and not first.context["has_previous"]
    with CaptureQueriesContext(connection) as queries:
        second = logged_in.get(url + "?after=49")
    assert [row["position"] for row in second.context["rows"]] == list(range(50, 100))
    example_queries = [q["sql"] for q in queries.captured_queries if "evals_example" in q["sql"]]
    assert any('"position" > 49' in sql for sql in example_queries)
    assert not any("OFFSET" in sql for sql in example_queries)
    last = logged_in.get(url + "?after=99")
    assert [row["position"] for row in last.context["rows"]] == list(range(100, 120)) and not last.context[
        "has_next"
    ]
    back = logged_in.get(url + "?before=100")
    assert [row["position"] for row in back.context["rows"]] == list(range(50, 100)) and back.context[
        "has_previous"
    ]
    assert "question 0" in first.content.decode() and "Rows 1–50 of 120" in first.content.decode()


def test_search_finds_rows_by_request_or_response_ignoring_case(logged_in: Client) -> None:
    dataset = make_dataset(120)
    url = reverse("dataset_detail", args=[dataset.pk])
    response = logged_in.get(url, {"q": "REFUND"})
    assert [row["position"] for row in response.context["rows"]] == list(range(0, 120, 10))
    response = logged_in.get(url, {"q": "question 7"})
    assert [row["position"] for row in response.context["rows"]] == [7, *range(70, 80)]
    nothing = logged_in.get(url, {"q": "zebra"}).content.decode()
    assert "No row matches “zebra”" in nothing


def test_row_view_shows_every_field_readably(logged_in: Client) -> None:
    dataset = make_dataset(0)
    long_text = "word " * 400
    Example.objects.create(
        dataset=dataset,
        position=0,
        source_line=7,
        request="Where is my order?",
        response=long_text,
        contexts=["Orders ship in 2 days.", "Tracking is emailed."],
        expected_output="It ships soon.",
        turns=[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}],
        system_prompt="Be kind.",
        metadata={"topic": "orders", "score": 3},
    )
    Dataset.objects.filter(pk=dataset.pk).update(row_count=1)
    html = logged_in.get(reverse("dataset_row", args=[dataset.pk, 0])).content.decode()
    assert "Line 7 of answers.csv" in html
    assert '<details class="longtext">' in html and "Show all" in html
    assert (
        '<ol class="context-list">' in html
        and "Orders ship in 2 days." in html
        and "Tracking is emailed." in html
    )
    assert 'class="turn turn-user"' in html and 'class="turn turn-assistant"' in html
    assert "It ships soon." in html and "Be kind." in html
    assert "<dt>topic</dt><dd>orders</dd>" in html
    assert logged_in.get(reverse("dataset_row", args=[dataset.pk, 5])).status_code == 404


def test_importing_dataset_shows_progress_that_stops_polling_when_done(logged_in: Client) -> None:
    dataset = make_dataset(0, status=Dataset.Status.IMPORTING)
    Dataset.objects.filter(pk=dataset.pk).update(row_count=200, rows_done=50)
    page = logged_in.get(reverse("dataset_detail", args=[dataset.pk])).content.decode()
    assert "50 of 200 rows written (25%)" in page and 'hx-trigger="every 1s"' in page
    # The progress polls the page itself, which answers htmx with the progress alone.
    detail = reverse("dataset_detail", args=[dataset.pk])
    assert f'hx-get="{detail}"' in page
    fragment = logged_in.get(detail, headers={"HX-Request": "true"})
    assert fragment.content.decode().lstrip().startswith('<section class="card import-progress"')
    assert 'hx-trigger="every 1s"' in fragment.content.decode() and "HX-Refresh" not in fragment
    Dataset.objects.filter(pk=dataset.pk).update(status=Dataset.Status.READY, rows_done=200)
    done = logged_in.get(detail, headers={"HX-Request": "true"})
    assert "hx-trigger" not in done.content.decode() and "Imported 200 rows" in done.content.decode()
    assert "rows-table" not in done.content.decode() and done["HX-Refresh"] == "true"
    assert "HX-Refresh" not in logged_in.get(detail)


def test_failed_dataset_says_why(logged_in: Client) -> None:
    dataset = make_dataset(0, status=Dataset.Status.FAILED, import_error="Disk full.")
    html = logged_in.get(reverse("dataset_detail", args=[dataset.pk])).content.decode()
    assert "The import failed and no rows were kept." in html and "Disk full." in html


def test_rename(logged_in: Client) -> None:
    dataset = make_dataset(1)
    response = logged_in.post(
        reverse("dataset_rename", args=[dataset.pk]), {"name": "Better name"}, follow=True
    )
    assert "Renamed to “Better name”." in response.content.decode()
    dataset.refresh_from_db()
    assert dataset.name == "Better name"
    response = logged_in.post(reverse("dataset_rename", args=[dataset.pk]), {"name": ""}, follow=True)
    assert "A dataset needs a name." in response.content.decode()


def test_delete_takes_the_runs_that_use_it_after_a_confirmation_that_lists_them(logged_in: Client) -> None:
    dataset = make_dataset(2)
    kept = make_dataset(1, name="Other answers")
    judge = Judge.objects.create(api_url="http://judge", remote_id="j", source="offline", name="J")
    runs = [
        Run.objects.create(dataset=dataset, judge=judge, name=name, status=Run.Status.COMPLETED)
        for name in ("nightly", "release 2.3")
    ]
    other = Run.objects.create(dataset=kept, judge=judge, name="elsewhere", status=Run.Status.COMPLETED)
    confirm = logged_in.get(reverse("dataset_delete", args=[dataset.pk])).content.decode()
    assert "runs first" not in confirm
    assert "2 runs use this dataset" in confirm and "They go too" in confirm
    for run in runs:
        assert f'<a href="/runs/{run.pk}/">{run.name}</a>' in confirm
    assert "elsewhere" not in confirm
    assert "Delete the dataset and 2 runs" in confirm
    assert Run.objects.count() == 3, "a GET deletes nothing"
    response = logged_in.post(reverse("dataset_delete", args=[dataset.pk]), follow=True)
    assert "Deleted “Support answers” and its 2 rows, 2 runs and their 0 scores." in response.content.decode()
    assert not Dataset.objects.filter(pk=dataset.pk).exists()
    assert list(Run.objects.all()) == [other] and Example.objects.filter(dataset=kept).count() == 1


def test_delete_removes_the_dataset_and_its_rows(logged_in: Client) -> None:
    dataset = make_dataset(12)
    assert (
        "This deletes the dataset and its 12 rows"
        in logged_in.get(reverse("dataset_delete", args=[dataset.pk])).content.decode()
    )
    response = logged_in.post(reverse("dataset_delete", args=[dataset.pk]), follow=True)
    assert "Deleted “Support answers” and its 12 rows." in response.content.decode()
    assert not Dataset.objects.exists() and not Example.objects.exists()


def test_json_contexts_round_trip_through_the_page(logged_in: Client) -> None:
    dataset = make_dataset(1)
    example = dataset.examples.get()
    assert json.loads(json.dumps(example.contexts)) == ["context 0"]


NO_INPUTS: dict[str, Any] = {"contexts": None, "expected_output": "", "turns": None, "system_prompt": ""}


def test_row_view_names_what_compare_pairs_the_row_by(logged_in: Client) -> None:
    dataset = make_dataset(0)
    keyed = Example.objects.create(
        dataset=dataset,
        position=0,
        request="Q",
        response="A",
        input_key=Example.make_input_key(key="case-7", **NO_INPUTS, request="Q"),
    )
    hashed = Example.objects.create(
        dataset=dataset,
        position=1,
        request="Q2",
        response="A2",
        input_key=Example.make_input_key(**NO_INPUTS, request="Q2"),
    )
    Dataset.objects.filter(pk=dataset.pk).update(row_count=2)
    html = logged_in.get(reverse("dataset_row", args=[dataset.pk, keyed.position])).content.decode()
    assert "Key <code>case-7</code>" in html
    html = logged_in.get(reverse("dataset_row", args=[dataset.pk, hashed.position])).content.decode()
    assert f"Pairing hash <code>{hashed.input_key[2:18]}</code>" in html
