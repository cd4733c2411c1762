"""The worker is killed with SIGKILL three times during a run; a new one takes over each time.

Nothing tells the new worker what the dead one was doing. The dead pump's slot lease (30 s) and its
batch leases (2 x JUDGE_API_TIMEOUT + 30 s) run out, the watchdog Schedule (every minute, seen by
django-q2's scheduler every 30 s) starts a pump, and batches whose create may have been sent are
looked up by tag before anything is sent again. The test measures how long that takes.
"""

from __future__ import annotations

import os
import random
import time
from typing import Any

import pytest

from tests.reliability.harness import Deadline, Proc, Stack, check_run_against_judge, wait_for

pytestmark = [pytest.mark.reliability, pytest.mark.slow]

ITEMS = 1_200
BATCH_SIZE = 20
# Kill when this share of the run is done: early, in the middle, late.
KILL_AT = (0.15, 0.40, 0.65)
# Slot lease 30 s + watchdog every 60 s + scheduler every 30 s, plus start-up: recovery must fit.
RECOVERY_LIMIT_S = 150.0


@pytest.mark.timeout(720)
def test_a_run_survives_three_sigkills_of_its_worker_without_losing_or_doubling_anything(
    stack: Stack, figures: dict[str, Any]
) -> None:
    deadline = Deadline(660)
    seed = int(os.environ.get("DOCKET_RELIABILITY_SEED") or random.randrange(1, 10**6))
    # Every request takes 100 ms, so creates and polls are often in flight when the worker dies;
    # the judge needs at least 15 s for the run (1,200 x 50 ms / 4 lanes).
    stack.start_judge(f"latency_ms=100,item_ms=50,lanes=4,item_fail=0.02,seed={seed}")
    stack.provision()
    worker = stack.start_worker("worker-1")
    started = time.monotonic()
    run = stack.make_run(ITEMS, batch_size=BATCH_SIZE)
    figures["seed"] = seed
    kills: list[dict[str, Any]] = []
    figures["kills"] = kills

    for number, share in enumerate(KILL_AT, start=1):
        target = int(share * ITEMS)

        def reached(target: int = target, worker: Proc = worker) -> dict[str, Any] | None:
            assert worker.alive(), f"{worker.name} died by itself:\n{worker.tail()}"
            state = stack.status(run["id"])
            return state if state["done"] >= target or state["finished"] else None

        wait_for(
            reached,
            timeout=deadline.cap(RECOVERY_LIMIT_S),
            what=f"{target} items done before kill {number}",
            diagnose=stack.diagnose(run["id"]),
        )
        worker.kill_group()
        killed_at = time.monotonic()
        # What the dead worker left behind, read after it is gone (nothing else writes meanwhile).
        left = stack.status(run["id"])
        assert not left["finished"], f"the run finished before kill {number}: make it longer ({left})"
        dead_owners = {slot["owner"] for slot in left["slots"]}
        worker = stack.start_worker(f"worker-{number + 1}")

        def pump_back(dead_owners: set[str] = dead_owners) -> bool:
            slots = stack.status(run["id"])["slots"]
            return any(slot["live"] and slot["owner"] not in dead_owners for slot in slots)

        def progressed(done: int = left["done"], worker: Proc = worker) -> dict[str, Any] | None:
            assert worker.alive(), f"{worker.name} died:\n{worker.tail()}"
            state = stack.status(run["id"])
            return state if state["done"] > done else None

        wait_for(
            pump_back,
            timeout=deadline.cap(RECOVERY_LIMIT_S),
            what=f"a new pump after kill {number}",
            diagnose=stack.diagnose(run["id"]),
        )
        pump_s = time.monotonic() - killed_at
        wait_for(
            progressed,
            timeout=deadline.cap(RECOVERY_LIMIT_S),
            what=f"items to finish again after kill {number}",
            diagnose=stack.diagnose(run["id"]),
        )
        kills.append(
            {
                "at done": left["done"],
                "batches at kill": left["batches"],
                "new pump after s": round(pump_s, 1),
                "items finishing again after s": round(time.monotonic() - killed_at, 1),
            }
        )

    final = wait_for(
        lambda: (state := stack.status(run["id"]))["finished"] and state,
        timeout=deadline.cap(RECOVERY_LIMIT_S),
        what="the run to finish after the last kill",
        diagnose=stack.diagnose(run["id"]),
    )
    outcome = check_run_against_judge(stack, run)
    workers = [proc for proc in stack.procs if proc.name.startswith("worker-")]
    figures.update(
        {
            "run duration s": round(time.monotonic() - started, 1),
            "run status": final["status"],
            "items completed / failed": f"{outcome['completed']} / {outcome['failed']} (judge failed {outcome['judge_failed']})",
            "remote batches (each tag once)": outcome["remote_batches"],
            "creates found by tag after a kill": sum(proc.count("was created after all") for proc in workers),
        }
    )
    assert final["status"] == ("partial" if outcome["failed"] else "completed")
