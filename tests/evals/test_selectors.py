"""The results table's queries: sorts, filters, keyset pages and the URL round trip."""

from __future__ import annotations

import pytest
from django.http import QueryDict

from evals.models import Dataset, Example, Item, Judge, RemoteBatch, Run, Score
from evals.selectors.results import (
    ResultsQuery,
    items_with_details,
    metadata_values,
    results_count,
    results_iter,
    results_neighbours,
    results_page,
)
from evals.selectors.visibility import Visibility, mask_ids

LOCALES = ["en", "de", "fr"]


@pytest.fixture
def scored_run(db: None) -> Run:
    """40 items: 0-29 completed with two scores each, 30-34 failed, 35-39 pending. Ties on purpose."""
    judge = Judge.objects.create(api_url="x", remote_id="j", source="offline", name="J")
    dataset = Dataset.objects.create(name="d", status=Dataset.Status.READY, metadata_columns=["locale"])
    examples = Example.objects.bulk_create(
        Example(
            dataset=dataset,
            position=n,
            request=f"question {n}" + (" about Paris" if n % 5 == 0 else ""),
            response=f"answer {n}",
            metadata={"locale": LOCALES[n % 3]},
        )
        for n in range(40)
    )
    run = Run.objects.create(
        dataset=dataset,
        judge=judge,
        total_count=40,
        status=Run.Status.COMPLETED,
        evaluators=["Accuracy", "Tone"],
    )
    batch = RemoteBatch.objects.create(run=run, position=0)
    statuses = [Item.Status.COMPLETED] * 30 + [Item.Status.FAILED] * 5 + [Item.Status.PENDING] * 5
    items = Item.objects.bulk_create(
        Item(
            run=run,
            example=example,
            batch=batch,
            position=example.position,
            status=statuses[example.position],
        )
        for example in examples
    )
    Score.objects.bulk_create(
        Score(
            item=item,
            run=run,
            evaluator_name=name,
            score=value,
            justification=f"{name} note {item.position}" + (" mentions REFUND" if item.position == 7 else ""),
        )
        for item in items[:30]
        for name, value in (("Accuracy", (item.position * 7 % 10) / 10), ("Tone", 1 - item.position / 30))
    )
    return run


def as_params(params: dict[str, str]) -> QueryDict:
    query = QueryDict(mutable=True)
    query.update(params)
    return query


def positions(run: Run, **params: str) -> list[int]:
    query = ResultsQuery.from_params(as_params(params), run=run)
    return [item.position for item in results_iter(run, query, chunk=7)]


def accuracy(position: int) -> float:
    return (position * 7 % 10) / 10


def test_a_finished_run_sorts_worst_first_by_its_first_evaluator_then_unscored_items(scored_run: Run) -> None:
    got = positions(scored_run)
    expected_scored = sorted(range(30), key=lambda n: (accuracy(n), n))
    assert got == expected_scored + list(range(30, 40))


def test_descending_score_sort(scored_run: Run) -> None:
    got = positions(scored_run, sort="-score:Accuracy")
    assert got[:30] == sorted(range(30), key=lambda n: (-accuracy(n), -n))


def test_keyset_pages_cover_every_item_exactly_once(scored_run: Run) -> None:
    for sort in ("position", "-position", "status", "score:Tone", "-score:Accuracy"):
        got = positions(scored_run, sort=sort)
        assert sorted(got) == list(range(40)), sort


def test_status_sort_groups_statuses(scored_run: Run) -> None:
    got = positions(scored_run, sort="status")
    assert got == list(range(30)) + list(range(30, 35)) + list(range(35, 40))


def test_filters_status_failed_only_and_range(scored_run: Run) -> None:
    assert positions(scored_run, sort="position", status="failed") == list(range(30, 35))
    assert positions(scored_run, sort="position", failed="1") == list(range(30, 35))
    in_range = positions(
        scored_run, **{"sort": "score:Accuracy", "min.Accuracy": "0.3", "max.Accuracy": "0.5"}
    )
    assert sorted(in_range) == sorted(n for n in range(30) if 0.3 <= accuracy(n) <= 0.5)
    assert [accuracy(n) for n in in_range] == sorted(accuracy(n) for n in in_range)
    # A range on another evaluator than the sort.
    other = positions(scored_run, **{"sort": "position", "min.Tone": "0.9"})
    assert other == [n for n in range(30) if 1 - n / 30 >= 0.9]


def test_search_reads_request_response_and_justification_case_insensitively(scored_run: Run) -> None:
    assert positions(scored_run, sort="position", q="paris") == [n for n in range(40) if n % 5 == 0]
    assert positions(scored_run, sort="position", q="answer 12") == [12]
    assert positions(scored_run, sort="score:Accuracy", q="refund") == [7]


def test_metadata_filter_and_unknown_parameters_are_ignored(scored_run: Run) -> None:
    assert positions(scored_run, sort="position", **{"meta.locale": "de"}) == [
        n for n in range(40) if n % 3 == 1
    ]
    assert positions(scored_run, sort="score:Nope", status="bogus", **{"meta.nope": "x"}) == positions(
        scored_run
    )


def test_combined_filters_with_a_score_sort(scored_run: Run) -> None:
    got = positions(
        scored_run, **{"sort": "score:Accuracy", "max.Accuracy": "0.6", "meta.locale": "en", "q": "question"}
    )
    expected = sorted(
        (n for n in range(30) if accuracy(n) <= 0.6 and n % 3 == 0), key=lambda n: (accuracy(n), n)
    )
    assert got == expected


def test_the_view_state_round_trips_through_the_url(scored_run: Run) -> None:
    params = {
        "sort": "-score:Tone",
        "status": "completed",
        "q": "paris",
        "min.Accuracy": "0.2",
        "meta.locale": "fr",
    }
    query = ResultsQuery.from_params(as_params(params), run=scored_run)
    again = ResultsQuery.from_params(as_params(query.to_params()), run=scored_run)
    assert again == query
    assert query.to_params() == params | {"min.Accuracy": "0.2"}


def test_a_page_stops_at_its_size_and_hands_over_a_cursor(scored_run: Run) -> None:
    query = ResultsQuery.from_params(QueryDict("sort=score:Accuracy"), run=scored_run)
    first = results_page(scored_run, query, size=25)
    assert len(first.rows) == 25 and first.next_cursor
    second = results_page(scored_run, query, cursor=first.next_cursor, size=25)
    assert [item.position for item in second.rows][-10:] == list(range(30, 40))
    assert second.next_cursor is None
    assert results_page(scored_run, query, cursor="not-a-cursor", size=25).rows == first.rows


# --- What a reader may see ---------------------------------------------------------------------------------

TEXT_HIDDEN = Visibility(texts=False, justifications=True, internal_ids=False)
ALL_HIDDEN = Visibility(texts=False, justifications=False, internal_ids=False)


def seen_by(run: Run, visibility: Visibility, **params: str) -> list[int]:
    query = ResultsQuery.from_params(as_params(params), run=run, visibility=visibility)
    return [item.position for item in results_iter(run, query, chunk=7)]


def test_a_reader_without_the_text_searches_only_the_justifications(scored_run: Run) -> None:
    # "Paris" is only in requests, "REFUND" only in a justification.
    assert seen_by(scored_run, TEXT_HIDDEN, sort="position", q="paris") == []
    assert seen_by(scored_run, TEXT_HIDDEN, sort="position", q="answer 12") == []
    assert seen_by(scored_run, TEXT_HIDDEN, sort="score:Accuracy", q="refund") == [7]


def test_a_reader_who_sees_neither_text_nor_justifications_gets_no_search(scored_run: Run) -> None:
    query = ResultsQuery.from_params(QueryDict("q=refund"), run=scored_run, visibility=ALL_HIDDEN)
    assert query.search == "" and not query.is_filtered
    assert seen_by(scored_run, ALL_HIDDEN, sort="position", q="refund") == list(range(40))


def test_rows_read_for_a_reader_hold_nothing_hidden(scored_run: Run) -> None:
    Score.objects.filter(run=scored_run).update(evaluator_id="ev-1")
    Item.objects.filter(run=scored_run).update(
        execution_log_id="log-1", error_message="rejected row: question"
    )
    RemoteBatch.objects.filter(run=scored_run).update(remote_id="remote-1")
    items = Item.objects.filter(run=scored_run, position__in=[7, 31]).select_related("batch")
    for item in items_with_details(items, ALL_HIDDEN):
        example = item.example
        assert (example.request, example.response, example.contexts, example.turns) == ("", "", [], None)
        # Not even loaded: the text was left out of the query, not only blanked afterwards.
        assert "question" not in str(vars(example))
        assert "question" not in item.error_message
        assert item.batch is not None
        assert item.execution_log_id == "" and item.batch.remote_id == ""
        assert all(s.justification == "" and s.evaluator_id == "" for s in item.scores.all())
    (full,) = items_with_details(Item.objects.filter(run=scored_run, position=7))
    assert full.example.request == "question 7" and full.execution_log_id == "log-1"
    assert {s.evaluator_id for s in full.scores.all()} == {"ev-1"}


def test_messages_lose_their_ids_and_addresses_for_outsiders() -> None:
    message = "The judge API at https://judge.internal/v1 rejected batch 8a2f0b3c-4d5e-4f60-8172-93a4b5c6d7e8"
    assert mask_ids(message) == "The judge API at [address] rejected batch [id]"
    assert Visibility(internal_ids=False).message(message) == mask_ids(message)
    assert "rejected" not in TEXT_HIDDEN.message(message)
    assert Visibility().message(message) == message


# --- Counts, neighbours and metadata values -----------------------------------------------------------------

VIEWS = [
    {"sort": "position"},
    {"sort": "-position", "meta.locale": "fr"},
    {"sort": "status"},
    {"sort": "-status", "q": "paris"},
    {"sort": "score:Accuracy"},
    {"sort": "-score:Accuracy", "status": "completed"},
    {"sort": "score:Tone", "meta.locale": "en"},
    {"sort": "score:Accuracy", "min.Accuracy": "0.3", "max.Accuracy": "0.5"},
    {"sort": "-score:Tone", "min.Accuracy": "0.5"},
]


@pytest.mark.parametrize("params", VIEWS, ids=lambda params: "&".join(f"{k}={v}" for k, v in params.items()))
def test_each_item_s_neighbours_are_the_rows_beside_it_in_the_view(
    scored_run: Run, params: dict[str, str]
) -> None:
    query = ResultsQuery.from_params(as_params(params), run=scored_run)
    rows = list(results_iter(scored_run, query, chunk=7))
    assert rows, params
    assert results_count(scored_run, query) == len(rows)
    ids = [None, *(item.pk for item in rows), None]
    for index, item in enumerate(rows, start=1):
        assert results_neighbours(scored_run, query, item) == (ids[index - 1], ids[index + 1]), item.position


def test_metadata_values_are_the_most_common_first_and_bounded(db: None) -> None:
    judge = Judge.objects.create(api_url="x", remote_id="j", source="offline", name="J")
    dataset = Dataset.objects.create(name="d", status=Dataset.Status.READY, metadata_columns=["tier", "size"])
    tiers = ["gold"] * 3 + ["silver"] * 2 + ["bronze"] + [""]
    Example.objects.bulk_create(
        Example(dataset=dataset, position=n, metadata={"tier": tier, "size": n % 4})
        for n, tier in enumerate(tiers)
    )
    run = Run.objects.create(
        dataset=dataset, judge=judge, total_count=len(tiers), status=Run.Status.COMPLETED
    )
    Item.objects.bulk_create(
        Item(run=run, example=example, position=example.position) for example in dataset.examples.all()
    )
    values = metadata_values(run)
    assert values["tier"] == ["gold", "silver", "bronze"]  # the empty value is no suggestion
    assert sorted(values["size"]) == ["0", "1", "2", "3"]
    assert metadata_values(run, limit=2)["tier"] == ["gold", "silver"]
    # A number from JSON Lines is offered as text, and the filter finds it by that text.
    assert positions(run, sort="position", **{"meta.size": "3"}) == [3]
    assert positions(run, sort="position", **{"meta.tier": "silver"}) == [3, 4]
