"""What keeps the pump's CPU per item low without changing what it stores: values adapted as the ORM
would, a poll and a costs read that write the run row once, a log list read for its costs only."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from evals.client import JudgeAPI, parse_execution_log_row, parse_log_cost
from evals.models import BackoffKind, Dataset, Item, Judge, RemoteBatch, Run, Score
from evals.pump import Pump, perform
from evals.services.bulk_writes import value_adapter
from evals.services.runs import run_create
from tests.conftest import SUPPORT_JUDGE
from tests.factories import assert_counts_match_items

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


def test_a_poll_and_a_costs_read_each_write_the_run_row_once_and_lose_nothing(
    judges: dict[str, Judge], make_dataset: Callable[..., Dataset]
) -> None:
    judge = judges[SUPPORT_JUDGE]
    run = run_create(dataset=make_dataset(20), judge=judge, batch_size=20)
    api = JudgeAPI.from_settings()
    pump = Pump(api=api, owner="one", concurrency=1)
    [create] = pump.claim(limit=1)
    pump.record(perform(api, create))
    batch = run.batches.get()
    for _ in range(10_000):
        if api.get_batch(batch.remote_id).is_finished:
            break
    RemoteBatch.objects.filter(pk=batch.pk).update(next_action_at=timezone.now() - timedelta(seconds=1))
    seq_before = Run.objects.get(pk=run.pk).change_seq

    [poll] = pump.claim(limit=1)
    assert poll.kind == "poll"
    with CaptureQueriesContext(connection) as polled:
        pump.record(perform(api, poll))
    [costs] = pump.claim(limit=1)
    assert costs.kind == "costs"
    with CaptureQueriesContext(connection) as costed:
        pump.record(perform(api, costs))

    # The poll: the change number, counts and score totals together (the run's finish is one more).
    assert len(run_writes(polled)) == 2
    assert len(run_writes(costed)) == 1
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
