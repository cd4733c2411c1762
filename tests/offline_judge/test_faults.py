"""Fault injection from settings.OFFLINE_JUDGE_FAULTS: each fault does what it says, and nothing else."""

from __future__ import annotations

import logging
import sys
import threading
import time
from typing import Any

import pytest
from pytest_django.fixtures import Settings

from offline_judge import faults
from offline_judge.models import Batch, BatchItem
from tests.offline_judge.harness import QA, RAG, SUPPORT, Api, FakeClock, assert_problem, qa_input, set_faults


def create(api: Api) -> Any:
    return api.post(f"/v1/judges/{QA.id}/batch-execute/", {"inputs": [qa_input()], "tags": ["t"]})


def test_throttle_answers_429_with_retry_after_and_creates_nothing(
    api: Api, clock: FakeClock, judge_settings: Settings
) -> None:
    set_faults(judge_settings, "throttle=1,retry_after=7")
    response = create(api)
    body = assert_problem(response, 429, "throttled")
    assert response["Retry-After"] == "7"
    assert body["title"] == "Throttled."
    assert body["detail"] == "Request was throttled. Expected available in 7 seconds."
    assert Batch.objects.count() == 0


def test_throttle_applies_to_reads_too(api: Api, clock: FakeClock, judge_settings: Settings) -> None:
    set_faults(judge_settings, "throttle=1")
    response = api.get("/v1/judges/")
    assert_problem(response, 429, "throttled")
    assert response["Retry-After"] == "1"


def test_error_answers_500_problem_and_creates_nothing(
    api: Api, clock: FakeClock, judge_settings: Settings
) -> None:
    set_faults(judge_settings, "error=1")
    assert_problem(create(api), 500, "error")
    assert Batch.objects.count() == 0


def test_drop_creates_the_batch_but_answers_502_with_no_body_after_drop_s(
    api: Api, clock: FakeClock, judge_settings: Settings
) -> None:
    set_faults(judge_settings, "drop=1,drop_s=0.01")
    response = create(api)
    assert response.status_code == 502
    assert response.content == b""
    assert clock.slept == [0.01]
    assert Batch.objects.get().tags == ["t"]


def test_drop_really_holds_the_reply(api: Api, judge_settings: Settings) -> None:
    set_faults(judge_settings, "drop=1,drop_s=0.05,item_ms=0")
    started = time.monotonic()
    response = api.get("/v1/judges/")
    assert response.status_code == 502
    assert time.monotonic() - started >= 0.05


def test_latency_sleeps_before_every_v1_request(api: Api, clock: FakeClock, judge_settings: Settings) -> None:
    set_faults(judge_settings, "latency_ms=250")
    assert api.get("/v1/judges/").status_code == 200
    assert create(api).status_code == 202
    assert clock.slept == [0.25, 0.25]


def test_the_stats_endpoint_is_exempt_from_faults(
    api: Api, clock: FakeClock, judge_settings: Settings
) -> None:
    set_faults(judge_settings, "throttle=1,latency_ms=250")
    assert api.get("/_offline/stats/").status_code == 200
    assert clock.slept == []


def test_item_fail_fails_items_with_a_named_evaluator(
    api: Api, clock: FakeClock, judge_settings: Settings
) -> None:
    set_faults(judge_settings, "item_fail=1")
    batch_id = api.create(RAG, [{"request": "Q?", "response": "A.", "contexts": ["A."]}] * 3)
    clock.advance(1)
    detail = api.batch(batch_id)
    assert (detail["status"], detail["failed_count"]) == ("failed", 3)
    names = "|".join(e.name for e in RAG.evaluators)
    for item in detail["items"]:
        assert item["evaluator_results"] is None and item["execution_log_id"] is None
        assert item["error_message"].endswith("failed: model call timed out (simulated).")
        assert item["error_message"].split('"')[1] in names


def test_seeded_item_fail_gives_a_reproducible_partial_batch(
    api: Api, clock: FakeClock, judge_settings: Settings
) -> None:
    outcomes = []
    for _ in range(2):
        set_faults(judge_settings, "item_fail=0.5,seed=11")
        batch_id = api.create(SUPPORT, [{"response": "Hello."}] * 40)
        clock.advance(10)
        detail = api.batch(batch_id)
        assert detail["status"] == "partial"
        outcomes.append([item["status"] for item in detail["items"]])
    assert outcomes[0] == outcomes[1]
    assert 5 < outcomes[0].count("failed") < 35


def test_batch_fail_fails_every_item_with_one_batch_message(
    api: Api, clock: FakeClock, judge_settings: Settings
) -> None:
    set_faults(judge_settings, "batch_fail=1,item_ms=100")
    batch_id = api.create(SUPPORT, [{"response": "Hello."}] * 10)
    clock.advance(0.1)
    detail = api.batch(batch_id)
    assert (detail["status"], detail["failed_count"], detail["completed_count"]) == ("failed", 10, 0)
    assert {item["error_message"] for item in detail["items"]} == {
        "The batch failed as a whole (simulated batch failure): no item of it was evaluated."
    }
    # It fails within one item's time and does not hold the lanes for ten items.
    assert len({item.completed_at for item in BatchItem.objects.filter(batch_id=batch_id)}) == 1


def test_the_same_seed_gives_the_same_sequence_of_request_faults(
    api: Api, clock: FakeClock, judge_settings: Settings
) -> None:
    runs = []
    for _ in range(2):
        set_faults(judge_settings, "throttle=0.3,error=0.2,seed=5")
        runs.append([api.get("/v1/judges/").status_code for _ in range(30)])
    assert runs[0] == runs[1]
    assert {200, 429, 500} <= set(runs[0])


def test_fault_decisions_are_thread_safe(judge_settings: Settings) -> None:
    """Each request draws its three numbers atomically: threads change the order, never the multiset."""
    set_faults(judge_settings, "throttle=0.5,error=0.5,drop=0.5,seed=9")
    sequential = [faults.current_plan().request_fate() for _ in range(40_000)]
    faults.reset()
    plan = faults.current_plan()
    threaded: list[faults.RequestFate] = []
    lock = threading.Lock()

    def draw() -> None:
        fates = [plan.request_fate() for _ in range(5_000)]
        with lock:
            threaded.extend(fates)

    threads = [threading.Thread(target=draw) for _ in range(8)]
    # Switch threads as often as possible, so that a missing lock shows up as mixed-up triples.
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)

    def tally(fates: list[faults.RequestFate]) -> tuple[int, int, int]:
        return (sum(f.throttled for f in fates), sum(f.errored for f in fates), sum(f.dropped for f in fates))

    assert tally(threaded) == tally(sequential)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ("throtle=0.1", 'unknown key "throtle"'),
        ("throttle=2", "throttle=2 must be between 0 and 1"),
        ("lanes=0", "lanes=0 must be between 1 and 1000"),
        ("item_ms=fast", 'item_ms="fast" is not a number'),
        ("lanes=2.5", 'lanes="2.5" is not an integer'),
        ("drop", '"drop" is not key=value'),
        ("seed=1,seed=2", '"seed" is given twice'),
    ],
)
def test_bad_fault_settings_raise_a_clear_value_error(config: str, message: str) -> None:
    with pytest.raises(ValueError, match="OFFLINE_JUDGE_FAULTS") as raised:
        faults.parse(config)
    assert message in str(raised.value)


def test_bad_fault_settings_answer_500_naming_the_problem_and_log_it_once(
    api: Api, clock: FakeClock, judge_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    set_faults(judge_settings, "throtle=0.1")
    with caplog.at_level(logging.ERROR, logger="offline_judge.faults"):
        body = assert_problem(api.get("/v1/judges/"), 500, "error")
        assert_problem(api.get("/v1/judges/"), 500, "error")
    assert 'unknown key "throtle"' in body["detail"]
    assert [r.getMessage() for r in caplog.records].count(body["detail"]) == 1


def test_whitespace_and_empty_parts_are_tolerated() -> None:
    plan = faults.parse(" item_ms = 50 , ,lanes=8 ")
    assert (plan.item_s, plan.lane_count, plan.describe()["seed"]) == (0.05, 8, None)
