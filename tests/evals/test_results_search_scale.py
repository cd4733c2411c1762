"""The results search at scale: listed matches give the same rows as walking every row, the match count
stops at its limit, and the trigram indexes exist on PostgreSQL only (a no-op on SQLite)."""

from __future__ import annotations

import importlib
from types import SimpleNamespace

import pytest
from django.db import connection
from django.http import QueryDict
from django.test import Client

from evals.models import Example, Run, Score
from evals.selectors import results
from evals.selectors.results import ResultsQuery, results_count, results_iter
from evals.selectors.visibility import ALL, Visibility
from tests.factories import build_run

pytestmark = pytest.mark.django_db

TRIGRAM_INDEXES = {"example_request_trgm", "example_response_trgm", "score_justification_trgm"}
migration = importlib.import_module("evals.migrations.0011_search_trigram_indexes")


def search_run() -> Run:
    """30 rows: "refund" in the requests of rows 0, 3, 6... (some capitalised), "parcel" in the responses of
    rows 1 and 2, "kazoo" in a justification of rows 4 and 5; rows 8 and 9 failed; a "50%" in row 10."""
    rows = range(30)
    return build_run(
        {
            "Accuracy": [None if n in (8, 9) else (n * 7 % 10) / 10 for n in rows],
            "Tone": [None if n in (8, 9) else 1 - n / 30 for n in rows],
        },
        requests=[
            f"Row {n}: "
            + ("Where is my REFUND?" if n % 6 == 0 else "where is my refund" if n % 3 == 0 else "hello")
            + (" It is 50% off." if n == 10 else "")
            for n in rows
        ],
        responses=[f"Answer {n}" + (" Your parcel left." if n in (1, 2) else "") for n in rows],
        justification=lambda name, n, value: (
            f"{name} {value}" + (" A kazoo of a reply." if n in (4, 5) else "")
        ),
    )


def listed(run: Run, params: str, *, visibility: Visibility = ALL) -> list[int]:
    query = ResultsQuery.from_params(QueryDict(params), run=run, visibility=visibility)
    return [item.pk for item in results_iter(run, query, chunk=4)]


SEARCHES = [
    "q=refund",
    "q=REFUND&sort=-position",
    "q=parcel",
    "q=kazoo",
    "q=no-such-word",
    "q=50%",
    "q=re",
    "q=refund&status=failed",
    "q=refund&sort=status",
    "q=refund&sort=-score:Accuracy",
    "q=kazoo&sort=score:Tone",
    "q=refund&sort=score:Accuracy&min.Accuracy=0.3",
    "q=r&min.Tone=0.5",
]


@pytest.mark.parametrize("params", SEARCHES)
def test_listed_matches_give_the_rows_that_walking_every_row_gives(
    params: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = search_run()
    by_ids = listed(run, params)
    monkeypatch.setattr(results, "SEARCH_LIST_LIMIT", -1)  # never listed: the page checks each row
    assert listed(run, params) == by_ids


def test_a_search_finds_its_words_in_requests_responses_and_justifications_in_any_case() -> None:
    run = search_run()
    positions = dict(run.items.values_list("pk", "position"))
    assert [positions[pk] for pk in listed(run, "q=Refund&sort=position")] == list(range(0, 30, 3))
    assert [positions[pk] for pk in listed(run, "q=parcel&sort=position")] == [1, 2]
    assert [positions[pk] for pk in listed(run, "q=KAZOO&sort=position")] == [4, 5]
    # A share link that hides the text searches only the justifications.
    hidden = Visibility(texts=False)
    assert [positions[pk] for pk in listed(run, "q=kazoo&sort=position", visibility=hidden)] == [4, 5]
    assert listed(run, "q=parcel&sort=position", visibility=hidden) == []


def test_a_search_lists_its_matches_until_there_are_too_many(monkeypatch: pytest.MonkeyPatch) -> None:
    run = search_run()
    query = ResultsQuery.from_params(QueryDict("q=refund"), run=run)
    found = results._search_matches(run, query)
    assert found is not None and len(found) == 10
    monkeypatch.setattr(results, "SEARCH_LIST_LIMIT", 9)
    assert results._search_matches(run, ResultsQuery.from_params(QueryDict("q=refund"), run=run)) is None


def test_the_latest_view_lists_the_same_matches_as_walking_each_row(monkeypatch: pytest.MonkeyPatch) -> None:
    run = search_run()
    retry = build_run(
        {"Accuracy": [0.95, 0.95], "Tone": [0.95, 0.95]},
        dataset=run.dataset,
        retry_of=run,
        positions=[8, 9],
        justification=lambda name, n, value: f"{name} kazoo again",
    )
    by_ids = listed(run, "q=kazoo&view=latest")
    assert set(retry.items.values_list("pk", flat=True)) < set(by_ids)
    monkeypatch.setattr(results, "SEARCH_LIST_LIMIT", -1)
    assert listed(run, "q=kazoo&view=latest") == by_ids


@pytest.mark.parametrize("list_limit", [10_000, 5])
def test_the_match_count_is_exact_up_to_its_limit_and_says_more_past_it(
    list_limit: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = search_run()
    monkeypatch.setattr(results, "MATCH_COUNT_LIMIT", 5)
    # With a list limit of 5, ten matches are too many to list: the count knows without counting.
    monkeypatch.setattr(results, "SEARCH_LIST_LIMIT", list_limit)

    def count(params: str) -> int:
        return results_count(run, ResultsQuery.from_params(QueryDict(params), run=run))

    assert count("q=refund") == 6  # ten match: past the limit of 5
    assert count("q=kazoo") == 2
    assert count("q=refund&status=failed") == 1
    assert count("status=completed") == 6
    assert count("status=failed") == 2


def test_the_run_page_says_the_count_is_past_its_limit(
    logged_in: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = search_run()
    monkeypatch.setattr(results, "MATCH_COUNT_LIMIT", 5)
    page = logged_in.get(f"/runs/{run.pk}/?q=refund").content.decode()
    assert '<strong class="num">5+</strong> of 30 items match' in page
    assert "5+ of 30 items match, 10 on this page" in page
    exact = logged_in.get(f"/runs/{run.pk}/?q=kazoo").content.decode()
    assert '<strong class="num">2</strong> of 30 items match' in exact


def test_the_migration_does_nothing_on_sqlite() -> None:
    statements: list[str] = []
    editor = SimpleNamespace(connection=SimpleNamespace(vendor="sqlite"), execute=statements.append)
    migration.create_indexes(None, editor)
    migration.drop_indexes(None, editor)
    assert statements == []


def test_the_trigram_indexes_exist_on_postgresql_only() -> None:
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT relname FROM pg_index JOIN pg_class ON pg_class.oid = indexrelid "
                "WHERE relname LIKE %s AND indisvalid",
                ["%_trgm"],
            )
        else:
            cursor.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND name LIKE %s", ["%_trgm"])
        names = {row[0] for row in cursor.fetchall()}
    assert names == (TRIGRAM_INDEXES if connection.vendor == "postgresql" else set())


@pytest.mark.skipif(connection.vendor != "postgresql", reason="trigram indexes are PostgreSQL's")
def test_postgresql_can_answer_django_s_icontains_from_the_trigram_indexes() -> None:
    """The indexes are on the expression Django writes (UPPER(column::text) LIKE UPPER(...)), or the
    planner could never use them. With sequential scans priced out, each plan must name its index."""
    search_run()
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
    examples, scores = Example.objects.order_by(), Score.objects.order_by()
    plans = {
        "example_request_trgm": examples.filter(request__icontains="refund").explain(),
        "example_response_trgm": examples.filter(response__icontains="parcel").explain(),
        "score_justification_trgm": scores.filter(justification__icontains="kazoo").explain(),
    }
    for name, plan in plans.items():
        assert name in plan, plan
