"""Items move pending -> processing -> completed/failed as the (patched) clock moves, FIFO on the lanes."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from pytest_django.fixtures import Settings

from offline_judge.models import Batch, BatchItem
from tests.offline_judge.harness import QA, SUPPORT, Api, FakeClock, qa_input, set_faults


def at(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def assert_consistent(detail: dict[str, Any], listed: dict[str, Any], now: datetime) -> None:
    """Counts agree with the items, the list agrees with the detail, and timestamps agree with statuses."""
    items = detail["items"]
    statuses = [item["status"] for item in items]
    assert detail["completed_count"] == statuses.count("completed")
    assert detail["failed_count"] == statuses.count("failed")
    assert detail["total_count"] == len(items)
    for key in ("status", "completed_count", "failed_count", "started_at", "completed_at"):
        assert listed[key] == detail[key], key
    for item in items:
        started, completed = at(item["started_at"]), at(item["completed_at"])
        if item["status"] == "pending":
            assert started is None and completed is None
        elif item["status"] == "processing":
            assert started is not None and started <= now and completed is None
        else:
            assert completed is not None and completed <= now
        finished = item["status"] in ("completed", "failed")
        assert (item["evaluator_results"] is not None) == (item["status"] == "completed")
        assert (item["execution_log_id"] is not None) == (item["status"] == "completed")
        assert (item["error_message"] != "") == (item["status"] == "failed")
        assert finished == (completed is not None)
    outstanding = detail["total_count"] - detail["completed_count"] - detail["failed_count"]
    if detail["status"] == "pending":
        assert set(statuses) == {"pending"} and detail["started_at"] is None
    elif detail["status"] == "processing":
        assert outstanding > 0 and detail["started_at"] and detail["completed_at"] is None
    else:
        assert outstanding == 0 and detail["completed_at"]


def snapshot(api: Api, batch_id: str, clock: FakeClock) -> dict[str, Any]:
    detail = api.batch(batch_id)
    rows = api.get("/v1/judges/batch-executions/", page_size=100).json()["results"]
    listed = next(row for row in rows if row["batch_execution_id"] == batch_id)
    assert_consistent(detail, listed, clock.now())
    return detail


def test_items_move_through_their_statuses_as_time_passes(
    api: Api, clock: FakeClock, judge_settings: Settings
) -> None:
    set_faults(judge_settings, "lanes=2,item_ms=100")
    batch_id = api.create(QA, [qa_input(), qa_input("Lyon"), {"response": "no reference"}, qa_input()])
    steps = []
    for _ in range(4):
        detail = snapshot(api, batch_id, clock)
        steps.append(
            (detail["status"], [item["status"] for item in detail["items"]], detail["completed_count"])
        )
        clock.advance(0.05)
        snapshot(api, batch_id, clock)
        clock.advance(0.05)
    assert steps == [
        ("processing", ["processing", "processing", "pending", "pending"], 0),
        ("processing", ["completed", "completed", "processing", "processing"], 2),
        ("partial", ["completed", "completed", "failed", "completed"], 3),
        ("partial", ["completed", "completed", "failed", "completed"], 3),
    ]


def test_a_batch_waits_pending_behind_earlier_batches_fifo_across_all_batches(
    api: Api, clock: FakeClock, judge_settings: Settings
) -> None:
    set_faults(judge_settings, "lanes=2,item_ms=100")
    first = api.create(SUPPORT, [{"response": "Hello."}] * 3)
    second = api.create(SUPPORT, [{"response": "Bye."}] * 2)
    assert snapshot(api, second, clock)["status"] == "pending"
    items = {
        (str(item.batch_id), item.index): item
        for item in BatchItem.objects.filter(batch__in=[first, second]).order_by("started_at")
    }
    start = clock.now()

    def offset_ms(batch: str, index: int) -> float:
        return (items[(batch, index)].started_at - start).total_seconds() * 1000

    # Lane A: first#0, first#2, second#1; lane B: first#1, second#0. The second batch never jumps the queue.
    assert [offset_ms(first, i) for i in range(3)] == [0, 0, 100]
    assert [offset_ms(second, i) for i in range(2)] == [100, 200]
    clock.advance(0.1)
    assert snapshot(api, second, clock)["status"] == "processing"
    clock.advance(0.2)
    assert snapshot(api, second, clock)["status"] == "completed"


def test_status_filter_of_the_list_follows_the_clock(
    api: Api, clock: FakeClock, judge_settings: Settings
) -> None:
    set_faults(judge_settings, "lanes=1,item_ms=100")
    ok = api.create(QA, [qa_input()])
    bad = api.create(QA, [{"response": "no reference"}])

    def ids(status: str) -> set[str]:
        rows = api.get("/v1/judges/batch-executions/", status=status).json()["results"]
        return {row["batch_execution_id"] for row in rows}

    assert (ids("processing"), ids("pending")) == ({ok}, {bad})
    clock.advance(0.1)
    assert (ids("completed"), ids("processing"), ids("pending")) == ({ok}, {bad}, set())
    clock.advance(0.1)
    assert (ids("completed"), ids("failed"), ids("processing")) == ({ok}, {bad}, set())


def test_a_run_of_n_items_takes_ceil_n_over_lanes_times_item_ms(
    api: Api, clock: FakeClock, judge_settings: Settings
) -> None:
    for lanes, item_ms, count in ((4, 120, 100), (3, 50, 10), (8, 10, 1)):
        set_faults(judge_settings, f"lanes={lanes},item_ms={item_ms}")
        clock.advance(3600)  # lanes idle again
        batch = Batch.objects.get(id=api.create(SUPPORT, [{"response": "Hi."}] * count))
        took = (batch.last_completed_at - batch.created_at).total_seconds()
        assert took == math.ceil(count / lanes) * item_ms / 1000


def test_the_execution_log_is_not_revealed_before_its_item_completes(api: Api, clock: FakeClock) -> None:
    batch_id = api.create(QA, [qa_input()])
    log_id = str(BatchItem.objects.get(batch_id=batch_id).execution_log_id)
    assert api.get(f"/v1/execution-logs/{log_id}/").status_code == 404
    clock.advance(0.12)
    assert api.get(f"/v1/execution-logs/{log_id}/").status_code == 200


def test_execute_takes_one_item_time_and_does_not_queue_behind_batches(api: Api, clock: FakeClock) -> None:
    api.create(SUPPORT, [{"response": "Hello."}] * 100)
    response = api.post(f"/v1/judges/{QA.id}/execute/", qa_input())
    assert response.status_code == 200
    assert clock.slept == [0.12]
