"""PostgreSQL restarts during a run: the pump rides it out and the run completes, nothing lost or doubled.

Only with DATABASE_URL naming a PostgreSQL server on this machine (the test restarts the whole server,
which every other client of it notices too). The restart command is `pg_ctlcluster` for the one cluster
under /etc/postgresql, or DOCKET_PG_RESTART_COMMAND if set.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import time
import urllib.parse
from pathlib import Path
from typing import Any

import pytest

from tests.reliability.harness import Backends, Deadline, Stack, check_run_against_judge, wait_for

pytestmark = [pytest.mark.reliability, pytest.mark.slow]

ITEMS = 1_200


@pytest.fixture
def restart_command(backends: Backends) -> list[str]:
    """The command that restarts the PostgreSQL server; skips the test (before any stack is built) without one."""
    if not backends.postgres_url:
        pytest.skip(
            "PostgreSQL restart: DATABASE_URL does not name a PostgreSQL server (SQLite has no server)"
        )
    if command := os.environ.get("DOCKET_PG_RESTART_COMMAND"):
        return shlex.split(command)
    host = urllib.parse.urlsplit(backends.postgres_url).hostname or "localhost"
    if host not in ("127.0.0.1", "localhost", "::1"):
        pytest.skip(f"PostgreSQL restart: the server at {host} is not on this machine")
    versions = (
        sorted(path.name for path in Path("/etc/postgresql").glob("*"))
        if Path("/etc/postgresql").exists()
        else []
    )
    if not shutil.which("pg_ctlcluster") or len(versions) != 1:
        pytest.skip("PostgreSQL restart: no single pg_ctlcluster cluster here; set DOCKET_PG_RESTART_COMMAND")
    return ["pg_ctlcluster", "--skip-systemctl-redirect", versions[0], "main", "restart"]


@pytest.mark.timeout(300)
def test_the_pump_recovers_from_a_postgresql_restart_and_the_run_completes(
    restart_command: list[str], stack: Stack, figures: dict[str, Any]
) -> None:
    command = restart_command
    deadline = Deadline(240)
    # At least 30 s of judge time (1,200 x 50 ms / 2 lanes).
    stack.start_judge("item_ms=50,lanes=2,item_fail=0.02")
    stack.provision()
    worker = stack.start_worker()
    started = time.monotonic()
    run = stack.make_run(ITEMS, batch_size=50)
    before = wait_for(
        lambda: (state := stack.status(run["id"]))["done"] >= ITEMS // 4 and state,
        timeout=deadline.cap(90),
        what="a quarter of the run to be done",
        diagnose=stack.diagnose(run["id"]),
    )
    assert not before["finished"]
    restart_at = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{shlex.join(command)} failed: {done.stdout}{done.stderr}"
    back_at = time.monotonic()
    # Read after the restart: what the pump had recorded when the database went away.
    at_restart = stack.status(run["id"])
    assert not at_restart["finished"], "the run finished during the restart: make it longer"

    def progressed() -> dict[str, Any] | None:
        assert worker.alive(), f"the worker died:\n{worker.tail()}"
        state = stack.status(run["id"])
        return state if state["done"] > at_restart["done"] else None

    wait_for(
        progressed,
        timeout=deadline.cap(120),
        what="items to finish again after the restart",
        diagnose=stack.diagnose(run["id"]),
    )
    progress_at = time.monotonic()
    final = wait_for(
        lambda: (state := stack.status(run["id"]))["finished"] and state,
        timeout=deadline.cap(120),
        what="the run to finish",
        diagnose=stack.diagnose(run["id"]),
    )
    outcome = check_run_against_judge(stack, run)
    assert worker.alive(), f"the worker died:\n{worker.tail()}"
    figures.update(
        {
            "restart command s": round(back_at - restart_at, 1),
            "items finishing again after the restart s": round(progress_at - back_at, 1),
            "done before / after the restart": f"{before['done']} / {at_restart['done']}",
            "pump database errors logged": worker.count("database error; retrying"),
            "outcomes the pump could not record": worker.count("could not record"),
            "run duration s": round(time.monotonic() - started, 1),
            "run status": final["status"],
            "items completed / failed": f"{outcome['completed']} / {outcome['failed']} (judge failed {outcome['judge_failed']})",
        }
    )
    assert final["status"] == ("partial" if outcome["failed"] else "completed")
