"""No request a client controls gets a 500: forged cursors, lookups smuggled into metadata filters,
numbers too big for the database, NUL characters, and (Hypothesis) arbitrary query strings thrown at
the results page, a shared page and the judge API's list endpoints."""

from __future__ import annotations

import base64
import json
import secrets
from typing import Any
from urllib.parse import urlencode

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from hypothesis import HealthCheck, example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from pytest_django.fixtures import Settings as SettingsWrapper

from evals.models import Run, ShareLink
from tests.factories import build_run
from tests.offline_judge.harness import API_KEY

pytestmark = pytest.mark.django_db

TOPICS = ["billing", "billing", "shipping", "shipping", "shipping", "login"]


def cursor(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


def hand_run() -> Run:
    return build_run(
        {"Politeness": [0.9, 0.7, 0.2, 0.4, 0.6, None], "Concision": [0.5, 0.5, 0.5, 0.5, 0.5, None]},
        name="nightly",
        metadata=lambda position: {"topic": TOPICS[position], "z__isnull": "v" if position == 0 else "w"},
    )


def share(run: Run) -> str:
    token = secrets.token_urlsafe(32)
    ShareLink.objects.create(run=run, token_hash=ShareLink.hash_token(token))
    return token


def rows_shown(response: Any) -> list[int]:
    return [item.position for item in response.context["rows"]]


FORGED_CURSORS = [
    cursor({}),
    cursor({"position": "three"}),
    cursor({"position": None}),
    cursor({"position": [1]}),
    cursor({"position": True}),
    cursor({"position": 2**70}),
    cursor({"status": 7, "position": "1"}),
    cursor({"phase": "scored", "score": "high", "item_id": 1}),
    cursor({"phase": "scored", "score": 0.5}),
    cursor({"phase": "scored", "score": 0.5, "item_id": 2**64}),
    cursor({"phase": "scored", "score": {"a": 1}, "item_id": 1}),
    cursor({"phase": "unscored", "position": "x"}),
    cursor({"phase": "unscored", "position": -(2**70)}),
    cursor({"phase": "sideways"}),
    cursor([1, 2]),
    cursor("position"),
    base64.urlsafe_b64encode(b"[" * 5000).decode(),
    "not base64 at all é",
    "%%%",
]


@pytest.mark.parametrize("after", FORGED_CURSORS)
@pytest.mark.parametrize("sort", ["", "position", "-status", "score:Politeness", "-score:Concision"])
def test_a_forged_cursor_on_the_run_page_shows_the_first_page(
    logged_in: Client, sort: str, after: str
) -> None:
    run = hand_run()
    response = logged_in.get(f"/runs/{run.pk}/", {"sort": sort, "after": after})
    assert response.status_code == 200
    first = logged_in.get(f"/runs/{run.pk}/", {"sort": sort})
    assert rows_shown(response) == rows_shown(first)


@pytest.mark.parametrize("after", FORGED_CURSORS)
def test_a_forged_cursor_on_a_shared_page_shows_the_first_page(client: Client, after: str) -> None:
    token = share(hand_run())
    response = client.get(f"/s/{token}/", {"after": after})
    assert response.status_code == 200
    assert len(rows_shown(response)) == 6


def test_a_metadata_key_that_looks_like_an_orm_lookup_is_a_plain_key(logged_in: Client) -> None:
    run = hand_run()
    response = logged_in.get(f"/runs/{run.pk}/", {"sort": "position", "meta.z__isnull": "v"})
    assert response.status_code == 200
    assert rows_shown(response) == [0]  # only the row whose "z__isnull" column holds "v"


@pytest.mark.parametrize("bound", ["nan", "inf", "-inf", "1e999"])
def test_a_score_range_that_is_not_a_finite_number_is_ignored(logged_in: Client, bound: str) -> None:
    run = hand_run()
    response = logged_in.get(f"/runs/{run.pk}/", {"sort": "position", "min.Politeness": bound})
    assert response.status_code == 200
    assert response.context["query"].ranges == {}
    assert len(rows_shown(response)) == 6


@pytest.mark.parametrize("number", ["99999999999999999999", "²", "١٢", "9" * 5000])
def test_numbers_too_big_for_the_database_or_not_ascii_are_no_row_not_a_500(
    logged_in: Client, number: str
) -> None:
    run = hand_run()
    assert logged_in.get(f"/runs/{run.pk}/live/", {"cursor": number, "rows": f"1,{number}"}).status_code in (
        200,
        204,
    )
    assert logged_in.get(f"/datasets/{run.dataset_id}/", {"after": number}).status_code == 200
    assert logged_in.get(f"/datasets/{run.dataset_id}/", {"before": number}).status_code == 200
    assert logged_in.get("/runs/new/", {"dataset": number, "judge": number}).status_code == 200
    assert logged_in.get("/runs/delete/", {"run": number}).status_code < 500


def test_a_nul_character_is_taken_out_of_every_query_value_before_any_view(logged_in: Client) -> None:
    # PostgreSQL text cannot hold NUL: psycopg refused `?q=%00` with a 500.
    run = hand_run()
    response = logged_in.get(f"/runs/{run.pk}/?sort=position&q=row%200%00&meta.top%00ic=bil%00ling")
    assert response.status_code == 200
    assert response.context["query"].search == "row 0"
    assert response.context["query"].metadata == {"topic": "billing"}
    assert rows_shown(response) == [0]


def test_a_nul_character_in_a_dataset_search_or_the_judge_api_is_no_500(logged_in: Client) -> None:
    run = hand_run()
    assert logged_in.get(f"/datasets/{run.dataset_id}/?q=%00").status_code == 200
    api = {"Authorization": f"Api-Key {API_KEY}"}
    assert logged_in.get("/judge-api/v1/judges/?search=%00", headers=api).status_code < 500


# --- Arbitrary query strings ------------------------------------------------------------------------------

NASTY = [
    "",
    "\x00",
    "%00",
    "\ud7ff",
    "é",
    "-",
    "--",
    "0",
    "-1",
    "1e999",
    "nan",
    "9" * 30,
    "²",
    "score:",
    "score:Politeness",
    "-score:Concision",
    "latest",
    "1",
    "2024-02-30",
    "0000-01-01",
    "2024-03-01T25:00",
    "9999-12-31T23:00:00-05:00",
    "[[[[",
    cursor({"position": "x"}),
    cursor({"phase": "scored", "score": "x", "item_id": 1}),
    cursor({"s": 2**70, "d": "next"}),
    "a" * 2000,
]
KEYS = [
    "sort",
    "after",
    "q",
    "status",
    "failed",
    "view",
    "page",
    "cursor",
    "rows",
    "min.Politeness",
    "max.Concision",
    "meta.topic",
    "meta.z__isnull",
    "meta.topic__in",
    "threshold",
    "page_size",
    "search",
    "judge_id",
    "date_from",
    "date_to",
    "project_id",
]
# Text that survives the trip through a URL (no lone surrogates: a URL cannot carry one).
url_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)
pairs = st.tuples(st.sampled_from(KEYS), st.sampled_from(NASTY) | url_text) | st.tuples(url_text, url_text)
query_strings = st.lists(pairs, max_size=6).map(urlencode) | st.text(
    st.characters(exclude_categories=["Cs"]), max_size=80
)


@pytest.fixture
def targets(client: Client) -> list[tuple[str, dict[str, str]]]:
    run = hand_run()
    user = get_user_model().objects.create_user(username="grace", password="a-long-test-password")
    client.force_login(user)
    api = {"Authorization": f"Api-Key {API_KEY}"}
    return [
        (f"/runs/{run.pk}/", {}),
        (f"/s/{share(run)}/", {}),
        ("/judge-api/v1/judges/", api),
        ("/judge-api/v1/judges/batch-executions/", api),
    ]


@hypothesis_settings(
    max_examples=150,
    deadline=None,
    # Nothing written into the checkout (no .hypothesis/): a failure prints its query string.
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(query=query_strings)
# The inputs seen to give a 500, always tried first.
@example(query=urlencode({"after": cursor({"position": "x"})}))
@example(
    query=urlencode(
        {"sort": "score:Politeness", "after": cursor({"phase": "scored", "score": 1, "item_id": 2**70})}
    )
)
@example(query="date_from=2024-02-30")
@example(query="date_to=9999-12-31T23:00:00-05:00")
@example(query="cursor=" + "W1tb" * 2000)
def test_no_query_string_gets_a_500_from_the_results_share_and_judge_list_pages(
    client: Client, targets: list[tuple[str, dict[str, str]]], judge_api_key: None, query: str
) -> None:
    for path, headers in targets:
        response = client.get(f"{path}?{query}", headers=headers)
        assert response.status_code < 500, (path, query, response.content[:500])


@pytest.fixture
def judge_api_key(settings: SettingsWrapper) -> None:
    settings.OFFLINE_JUDGE_API_KEY = API_KEY
    settings.OFFLINE_JUDGE_FAULTS = ""
