"""The results table's queries: sorts, filters, keyset pages and the URL round trip."""

from __future__ import annotations

import pytest
from django.http import QueryDict

from evals.models import Dataset, Example, Item, Judge, RemoteBatch, Run, Score
from evals.selectors import ResultsQuery, results_iter, results_page

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


def positions(run: Run, **params: str) -> list[int]:
    query = ResultsQuery.from_params(QueryDict(mutable=True) | params, run=run)  # type: ignore[operator]
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
    query = ResultsQuery.from_params(QueryDict(mutable=True) | params, run=scored_run)  # type: ignore[operator]
    again = ResultsQuery.from_params(QueryDict(mutable=True) | query.to_params(), run=scored_run)  # type: ignore[operator]
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
