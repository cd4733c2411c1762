"""What keeps the pump's CPU per item low without changing what it stores: values adapted as the ORM
would, a poll and a costs read that write the run row once, a log list read for its costs only."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from evals.client import JudgeAPI, parse_execution_log_row, parse_log_cost
from evals.models import BackoffKind, Dataset, Item, Judge, RemoteBatch, Run, Score
from evals.pump import Pump, perform
from evals.services.bulk_writes import NewScore, items_update, scores_insert, value_adapter
from evals.services.runs import run_create
from tests.conftest import SUPPORT_JUDGE
from tests.factories import assert_counts_match_items, finished_remotely

SAMPLES: dict[str, list[Any]] = {
    "CharField": ["", "completed", Item.Status.FAILED, "é" * 3, None],
    "TextField": ["", "a justification", None],
    "FloatField": [0.0, 0.25, 1, None],
    "ForeignKey": [1, 12345, None],
    "BigIntegerField": [0, 7, 2**40, None],
    "PositiveIntegerField": [0, 3, None],
    "PositiveSmallIntegerField": [0, 99, None],
    "DateTimeField": [datetime(2026, 1, 2, 3, 4, 5, 678, tzinfo=UTC), timezone.now(), None],
    "JSONField": [{"Truthfulness": 0.001}, [], None],
    "BooleanField": [True, False],
}


@pytest.mark.django_db
@pytest.mark.parametrize("model", [Item, Score, RemoteBatch], ids=lambda model: model.__name__)
def test_every_value_is_adapted_exactly_as_get_db_prep_save_adapts_it(model: Any) -> None:
    checked = 0
    for field in model._meta.concrete_fields:
        if field.primary_key:
            continue
        adapt = value_adapter(field)
        for value in SAMPLES[field.get_internal_type()]:
            expected, got = field.get_db_prep_save(value, connection), adapt(value)
            # PostgreSQL wraps JSON in a new Jsonb each time: what it wraps is what must agree.
            assert (type(got), getattr(got, "obj", got)) == (
                type(expected),
                getattr(expected, "obj", expected),
            ), (
                field.name,
                value,
            )
            checked += 1
    assert checked > 10


def test_a_log_row_read_for_its_cost_says_what_the_full_row_says() -> None:
    rows: list[dict[str, Any]] = [
        {"id": "a", "parent_execution_log_id": "p", "executed_item_name": "Truthfulness", "cost": 0.5},
        {"id": "b", "parent_execution_log_id": None, "executed_item_name": None, "cost": 2},
        {"id": "c", "cost": True},
        {"id": "d", "parent_execution_log_id": "", "executed_item_name": 7, "cost": "0.1"},
    ]
    for row in rows:
        full = parse_execution_log_row(row)
        assert parse_log_cost(row) == (
            full.id,
            full.parent_execution_log_id,
            full.executed_item_name,
            full.cost,
        )


def run_writes(queries: CaptureQueriesContext) -> list[str]:
    table = connection.ops.quote_name(Run._meta.db_table)
    return [query["sql"] for query in queries.captured_queries if query["sql"].startswith(f"UPDATE {table}")]


def finished_and_due(api: JudgeAPI, pump: Pump, run: Run) -> RemoteBatch:
    """The run's one batch, created by `pump`, finished by the judge and due for its poll."""
    [create] = pump.claim(limit=1)
    pump.record(perform(api, create))
    batch = run.batches.get()
    finished_remotely(api, batch)
    RemoteBatch.objects.filter(pk=batch.pk).update(next_action_at=timezone.now() - timedelta(seconds=1))
    return batch


def test_a_poll_that_finishes_a_batch_reads_its_costs_too_and_writes_the_run_row_once_each(
    judges: dict[str, Judge], make_dataset: Callable[..., Dataset]
) -> None:
    judge = judges[SUPPORT_JUDGE]
    run = run_create(dataset=make_dataset(20), judge=judge, batch_size=20)
    api = JudgeAPI.from_settings()
    pump = Pump(api=api, owner="one", concurrency=1)
    batch = finished_and_due(api, pump, run)
    seq_before = Run.objects.get(pk=run.pk).change_seq

    [poll] = pump.claim(limit=1)
    assert poll.kind == "poll"
    polled = perform(api, poll)
    # The costs were read in the poll's round trip, as the first try of a costs read.
    assert polled.costs is not None and polled.costs.action.kind == "costs"
    assert polled.costs.action.attempt == 1
    with CaptureQueriesContext(connection) as recorded:
        pump.record(polled)
    # Nothing is left for a claim round of its own.
    assert pump.claim(limit=1) == []
    assert RemoteBatch.objects.get(pk=batch.pk).lease_owner == ""

    # The change number, counts, score and cost totals together, then the run's finish.
    assert len(run_writes(recorded)) == 2
    run.refresh_from_db()
    assert run.status == Run.Status.COMPLETED and run.completed_count == 20
    assert_counts_match_items(run)
    evaluators = judge.evaluator_names
    assert Score.objects.filter(run=run).count() == 20 * len(evaluators)
    assert {entry["n"] for entry in run.score_summary.values()} == {20}
    assert sorted(run.evaluators) == sorted(evaluators)
    items = Item.objects.filter(run=run)
    # Every item changed by the poll carries a change number above the page's last one, and none
    # beyond the run's own (what a live page's cursor relies on).
    assert {item.change_seq for item in items} <= set(range(seq_before + 1, run.change_seq + 1))
    assert run.cost_items == 20 and all(item.cost is not None for item in items)
    assert run.cost_total == pytest.approx(sum(item.cost or 0.0 for item in items))


def test_a_poll_still_lifts_a_wait_for_an_error_that_passed(
    judges: dict[str, Judge], make_dataset: Callable[..., Dataset]
) -> None:
    run = run_create(dataset=make_dataset(10), judge=judges[SUPPORT_JUDGE])
    api = JudgeAPI.from_settings()
    pump = Pump(api=api, owner="one", concurrency=1)
    [create] = pump.claim(limit=1)
    pump.record(perform(api, create))
    later = timezone.now() + timedelta(minutes=5)
    Run.objects.filter(pk=run.pk).update(
        backoff_until=later, backoff_kind=BackoffKind.ERROR, backoff_reason="judge API error: oops"
    )
    RemoteBatch.objects.filter(run=run).update(next_action_at=timezone.now() - timedelta(seconds=1))
    [poll] = pump.claim(limit=1)
    pump.record(perform(api, poll))
    run.refresh_from_db()
    assert (run.backoff_until, run.backoff_kind, run.backoff_reason) == (None, "", "")


def test_a_new_runs_items_are_stored_as_bulk_create_would_store_them(
    judges: dict[str, Judge], make_dataset: Callable[..., Dataset]
) -> None:
    dataset = make_dataset(7)
    written = run_create(dataset=dataset, judge=judges[SUPPORT_JUDGE], batch_size=3)
    reference = run_create(dataset=dataset, judge=judges[SUPPORT_JUDGE], batch_size=3)
    batches = {batch.position: batch for batch in reference.batches.all()}
    made = [
        Item(
            run=reference,
            example_id=item.example_id,
            batch=batches[item.batch.position],
            position=item.position,
            index_in_batch=item.index_in_batch,
        )
        for item in written.items.select_related("batch")
    ]
    reference.items.all().delete()
    Item.objects.bulk_create(made)

    def stored(run: Run) -> list[tuple[Any, ...]]:
        names = [
            field.attname for field in Item._meta.concrete_fields if field.name not in ("id", "run", "batch")
        ]
        return [
            (item.batch.position, *(getattr(item, name) for name in names))
            for item in run.items.select_related("batch").order_by("position")
        ]

    assert len(stored(written)) == 7
    assert stored(written) == stored(reference)
    assert [batch.size for batch in written.batches.order_by("position")] == [3, 3, 1]


def test_a_late_poll_with_costs_read_records_neither_and_the_new_holder_reads_them(
    judges: dict[str, Judge], make_dataset: Callable[..., Dataset]
) -> None:
    run = run_create(dataset=make_dataset(10), judge=judges[SUPPORT_JUDGE])
    api = JudgeAPI.from_settings()
    first, second = Pump(api=api, owner="first", concurrency=1), Pump(api=api, owner="second", concurrency=1)
    batch = finished_and_due(api, first, run)
    [poll] = first.claim(limit=1)
    late = perform(api, poll)
    assert late.costs is not None
    # The first pump's lease runs out under a slow call; the second takes the batch over.
    RemoteBatch.objects.filter(pk=batch.pk).update(lease_until=timezone.now() - timedelta(seconds=1))
    [again] = second.claim(limit=1)
    assert not first.apply(late)
    run.refresh_from_db()
    assert run.completed_count == 0 and run.cost_items == 0
    assert second.apply(perform(api, again))
    run.refresh_from_db()
    assert run.status == Run.Status.COMPLETED and run.cost_items == 10
    assert run.cost_total == pytest.approx(sum(item.cost or 0.0 for item in run.items.all()))
    assert RemoteBatch.objects.get(pk=batch.pk).lease_owner == ""


def test_with_a_reply_on_its_way_the_pump_waits_for_the_next_poll_with_one_query(
    judges: dict[str, Judge], make_dataset: Callable[..., Dataset]
) -> None:
    run = run_create(dataset=make_dataset(4), judge=judges[SUPPORT_JUDGE], batch_size=2)
    api = JudgeAPI.from_settings()
    pump = Pump(api=api, owner="one", concurrency=4)
    try:
        for create in pump.claim(limit=2):
            pump.record(perform(api, create))
        soon = timezone.now() + timedelta(seconds=0.5)
        first, second = run.batches.order_by("position")
        RemoteBatch.objects.filter(pk=first.pk).update(next_action_at=soon)
        RemoteBatch.objects.filter(pk=second.pk).update(next_action_at=soon + timedelta(minutes=5))
        pump.in_progress[Future()] = pump.costs_action(first)  # a reply on its way
        with CaptureQueriesContext(connection) as queries:
            waited = pump.wait_seconds()
        assert len(queries.captured_queries) == 1
        assert 0.01 <= waited <= 0.5
        # Leased to another pump: not this pump's to wait for.
        RemoteBatch.objects.filter(pk=first.pk).update(
            lease_owner="other", lease_until=timezone.now() + timedelta(minutes=1)
        )
        assert pump.wait_seconds() == 1.0
    finally:
        pump.in_progress.clear()
        pump.close()


AWKWARD_TEXTS = ["", "NULL", 'a "quoted", {braced} \\ backslashed, text', "é ☃ \t\n", "x" * 5000]


def test_bulk_item_and_score_writes_read_back_as_the_orm_would_store_them(
    judges: dict[str, Judge], make_dataset: Callable[..., Dataset]
) -> None:
    """On PostgreSQL these go through one array per column (unnest): NULLs, the text "NULL", quotes,
    braces and backslashes must come back as they went in, as with a model save."""
    run = run_create(dataset=make_dataset(len(AWKWARD_TEXTS) * 2), judge=judges[SUPPORT_JUDGE])
    items = list(run.items.order_by("position"))
    bulk, saved = items[: len(AWKWARD_TEXTS)], items[len(AWKWARD_TEXTS) :]
    when = datetime(2026, 1, 2, 3, 4, 5, 678, tzinfo=UTC)
    names = [
        "status",
        "error_message",
        "execution_log_id",
        "started_at",
        "completed_at",
        "cost",
        "evaluator_costs",
    ]
    values = [
        [
            Item.Status.FAILED if index % 2 else Item.Status.COMPLETED,
            text,
            text[:64],
            when + timedelta(seconds=index),
            None if index % 2 else when,
            None if index % 2 else 0.1 * index,
            None if index % 2 else {"Politeness": 0.25, text[:10]: None, "nested": [1, "NULL"]},
        ]
        for index, text in enumerate(AWKWARD_TEXTS)
    ]
    items_update(names, [[*row, item.pk] for row, item in zip(values, bulk, strict=True)])
    for row, item in zip(values, saved, strict=True):
        for name, value in zip(names, row, strict=True):
            setattr(item, name, value)
        item.save(update_fields=names)

    def read(chosen: list[Item]) -> list[list[Any]]:
        return [
            [getattr(item, name) for name in names]
            for item in Item.objects.filter(pk__in=[item.pk for item in chosen]).order_by("position")
        ]

    assert read(bulk) == read(saved) == values

    scores = [
        NewScore(
            item.pk, run.pk, text[:512] or "evaluator", text[:64], None if index % 2 else 0.5, text, None
        )
        for index, (item, text) in enumerate(zip(bulk, AWKWARD_TEXTS, strict=True))
    ]
    scores_insert([*scores, scores[0]._replace(justification="a second score of the same name: ignored")])
    for score, item in zip(scores, saved, strict=True):
        Score.objects.create(**{**score._asdict(), "item_id": item.pk})
    fields = ["evaluator_name", "evaluator_id", "score", "justification", "confidence"]

    def stored(chosen: list[Item]) -> list[tuple[Any, ...]]:
        return list(Score.objects.filter(item__in=chosen).order_by("item__position").values_list(*fields))

    assert stored(bulk) == stored(saved) == [tuple(score)[2:] for score in scores]
