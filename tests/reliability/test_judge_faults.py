"""Two qcluster processes work a 2,000-item run while the judge throttles, errors, drops replies and fails items."""

from __future__ import annotations

import os
import random
import time
from typing import Any

import pytest

from tests.reliability.harness import Deadline, Stack, check_run_against_judge, request_counts, wait_for

pytestmark = [pytest.mark.reliability, pytest.mark.slow]

ITEMS = 2_000
# 80 remote batches, and at least 20 s of judge time (2,000 x 40 ms / 4 lanes): hundreds of API calls.
BATCH_SIZE = 25


@pytest.mark.timeout(420)
def test_two_workers_finish_2000_items_through_judge_faults_and_agree_with_the_judge(
    stack: Stack, figures: dict[str, Any]
) -> None:
    deadline = Deadline(360)
    seed = int(os.environ.get("DOCKET_RELIABILITY_SEED") or random.randrange(1, 10**6))
    # Dropped replies are held 3 s against Docket's 2 s timeout: a create whose outcome is unknown.
    faults = f"throttle=0.1,error=0.05,drop=0.02,drop_s=3,item_fail=0.03,item_ms=40,lanes=4,seed={seed}"
    figures["judge faults"] = faults
    stack.start_judge(faults)
    # Two pumps may run at once, each handing over to a fresh task every 5 s: whichever cluster
    # takes the task next goes on, so pumps of both clusters claim batches from the same table.
    stack.provision(DOCKET_PUMP_SLOTS="2", DOCKET_PUMP_SLICE_SECONDS="5")
    clusters = [stack.start_worker("worker-a"), stack.start_worker("worker-b")]

    started = time.monotonic()
    run = stack.make_run(ITEMS, batch_size=BATCH_SIZE)
    stack.agent.call("wake")  # a second pump task: one per slot
    pumped_by: set[str] = set()
    most_live = 0

    def finished() -> dict[str, Any] | None:
        nonlocal most_live
        for cluster in clusters:
            assert cluster.alive(), f"{cluster.name} died:\n{cluster.tail()}"
        state = stack.status(run["id"])
        live = [slot for slot in state["slots"] if slot["live"]]
        most_live = max(most_live, len(live))
        for slot in live:
            pid = int(slot["owner"].split(":")[1])
            for cluster in clusters:
                if pid in cluster.group_pids():
                    pumped_by.add(cluster.name)
        return state if state["finished"] else None

    final = wait_for(
        finished,
        timeout=deadline.cap(300),
        what="the run to finish",
        interval=0.5,
        diagnose=stack.diagnose(run["id"]),
    )
    duration = time.monotonic() - started
    outcome = check_run_against_judge(stack, run)
    stats = stack.judge_stats()
    figures.update(
        {
            "seed": seed,
            "run duration s": round(duration, 1),
            "run status": final["status"],
            "items completed / failed": f"{outcome['completed']} / {outcome['failed']} (judge failed {outcome['judge_failed']})",
            "remote batches (each tag once)": outcome["remote_batches"],
            "judge API requests": sum(request_counts(stats).values()),
            "judge faults injected": stats["process"]["faults"],
            "judge API calls logged per cluster": {
                cluster.name: cluster.count("judge_api method=") for cluster in clusters
            },
            "client timeouts": sum(cluster.count("did not answer within") for cluster in clusters),
            "creates found by tag after an unknown outcome": sum(
                cluster.count("was created after all") for cluster in clusters
            ),
            "clusters seen holding a pump slot": sorted(pumped_by),
            "most pumps alive at once": most_live,
        }
    )
    assert most_live == 2, "the two pumps never ran at the same time"
    assert pumped_by == {"worker-a", "worker-b"}, f"only {pumped_by} ever pumped: the test used one cluster"
    assert final["status"] == ("partial" if outcome["failed"] else "completed")
    # The faults really happened (the request faults are drawn per request: hundreds of them).
    injected = stats["process"]["faults"]
    assert injected.get("throttle", 0) > 0 and injected.get("error", 0) > 0, injected
    assert outcome["judge_failed"] > 0, "no item failed at the judge: item_fail did not apply"
