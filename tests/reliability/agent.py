"""A helper process for the reliability suite: Django's ORM in the environment of the stack under test.

The suite's own process runs pytest-django with the settings of the test run, which cannot point at
a second, committed database that real `qcluster` and `runserver` processes share. So the test talks
to that database through this script, started with the stack's environment (DOCKET_VAR_DIR,
DATABASE_URL, REDIS_URL, SCORABLE_API_URL...): one JSON command per line on stdin, one JSON answer
per line on stdout (prefixed, so a stray print never passes for an answer).

    {"cmd": "status", "args": {"run_id": 1}}   ->   @@{"ok": true, "result": {...}}

Every command runs on a fresh look at the database connection and is tried again while the database
is unreachable (a PostgreSQL restart), up to a deadline. Run as a file, not imported by the tests.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "@@"
DB_RETRY_SECONDS = 90.0


def setup() -> None:
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
    import django

    django.setup()


# --- Docket's side -----------------------------------------------------------------------------------


def sync_judges(deadline_s: float = 60.0) -> list[str]:
    """Read the judge list; the judge may be injecting faults, so keep trying until the deadline."""
    from evals.client import JudgeError
    from evals.models import Judge
    from evals.services.judges import judges_sync

    deadline = time.monotonic() + deadline_s
    while True:
        try:
            judges_sync()
            return sorted(Judge.objects.values_list("name", flat=True))
        except JudgeError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def make_dataset(rows: int, name: str = "reliability") -> int:
    from evals.models import Dataset, Example

    dataset = Dataset.objects.create(name=name, row_count=rows, status=Dataset.Status.READY)
    Example.objects.bulk_create(
        (
            Example(
                dataset=dataset,
                position=n,
                source_line=n + 2,
                request=f"Where is my order number {n}? It was due last week.",
                response=f"Thanks for asking! Order {n} ships today; the tracking number follows by email.",
            )
            for n in range(rows)
        ),
        batch_size=2000,
    )
    return dataset.pk


def create_run(dataset_id: int, judge_name: str, batch_size: int = 100, name: str = "") -> dict[str, Any]:
    from evals.models import Dataset, Judge
    from evals.services.runs import run_create

    run = run_create(
        dataset=Dataset.objects.get(pk=dataset_id),
        judge=Judge.objects.get(name=judge_name),
        batch_size=batch_size,
        name=name,
    )
    return {"id": run.pk, "uid": str(run.uid), "total": run.total_count, "batches": run.batches.count()}


def wake(times: int = 1) -> int:
    from evals.tasks import wake_pump

    for _ in range(times):
        wake_pump()
    return times


def status(run_id: int) -> dict[str, Any]:
    from django.utils import timezone

    from evals.models import PumpSlot, RemoteBatch, Run

    run = Run.objects.get(pk=run_id)
    now = timezone.now()
    batches = Counter(RemoteBatch.objects.filter(run=run).values_list("status", flat=True))
    slots = [
        {"slot": slot.slot, "owner": slot.owner, "live": bool(slot.lease_until and slot.lease_until >= now)}
        for slot in PumpSlot.objects.all()
    ]
    return {
        "status": run.status,
        "finished": run.is_finished,
        "total": run.total_count,
        "completed": run.completed_count,
        "failed": run.failed_count,
        "cancelled": run.cancelled_count,
        "done": run.done_count,
        "change_seq": run.change_seq,
        "backoff_reason": run.backoff_reason,
        "batches": dict(batches),
        "slots": slots,
    }


def records(run_id: int) -> dict[str, Any]:
    """Everything the final checks compare with the judge's own records."""
    from django.db.models import Count

    from evals.models import Item, RemoteBatch, Run

    run = Run.objects.get(pk=run_id)
    batches = [
        {
            "position": position,
            "remote_id": remote_id,
            "status": batch_status,
            "tag": f"docket:{run.uid}:{position}",
        }
        for position, remote_id, batch_status in RemoteBatch.objects.filter(run=run)
        .order_by("position")
        .values_list("position", "remote_id", "status")
    ]
    items = [
        [
            row["batch__position"],
            row["index_in_batch"],
            row["status"],
            row["score_count"],
            row["error_message"][:120],
        ]
        for row in Item.objects.filter(run=run)
        .annotate(score_count=Count("scores"))
        .order_by("position")
        .values("batch__position", "index_in_batch", "status", "score_count", "error_message")
    ]
    return {
        "uid": str(run.uid),
        "status": run.status,
        "total": run.total_count,
        "counts": {
            "completed": run.completed_count,
            "failed": run.failed_count,
            "cancelled": run.cancelled_count,
        },
        "batches": batches,
        "items": items,
    }


def create_user(username: str, password: str) -> int:
    from django.contrib.auth import get_user_model

    user_model = get_user_model()
    user = user_model.objects.filter(username=username).first()
    if user is None:
        user = user_model.objects.create_user(username=username, password=password)
    return int(user.pk)


def sessions(username: str, count: int) -> list[str]:
    """Logged-in sessions for `username`, as Django's login() would store them (what force_login does)."""
    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
    from django.contrib.sessions.backends.db import SessionStore

    user = get_user_model().objects.get(username=username)
    keys = []
    for _ in range(count):
        store = SessionStore()
        store[SESSION_KEY] = str(user.pk)
        store[BACKEND_SESSION_KEY] = settings.AUTHENTICATION_BACKENDS[-1]
        store[HASH_SESSION_KEY] = user.get_session_auth_hash()
        store.create()
        assert store.session_key is not None
        keys.append(store.session_key)
    return keys


# --- The offline judge's side (run with the judge's environment) -------------------------------------------


def judge_batches(tag_prefix: str) -> dict[str, list[dict[str, Any]]]:
    """{tag: [{id, outcome, items: {index: outcome}}]} for every batch the judge holds with such a tag."""
    from offline_judge.models import BatchItem, BatchTag

    found: dict[str, list[dict[str, Any]]] = {}
    for tag in BatchTag.objects.filter(tag__startswith=tag_prefix).select_related("batch"):
        outcomes = dict(
            BatchItem.objects.filter(batch=tag.batch).order_by("index").values_list("index", "outcome")
        )
        found.setdefault(tag.tag, []).append(
            {
                "id": str(tag.batch.pk),
                "outcome": tag.batch.outcome,
                "items": {str(index): outcome for index, outcome in outcomes.items()},
            }
        )
    return found


COMMANDS: dict[str, Callable[..., Any]] = {
    "ping": lambda: "pong",
    "sync_judges": sync_judges,
    "make_dataset": make_dataset,
    "create_run": create_run,
    "wake": wake,
    "status": status,
    "records": records,
    "create_user": create_user,
    "sessions": sessions,
    "judge_batches": judge_batches,
}


def run_command(name: str, args: dict[str, Any]) -> Any:
    from django.db import DatabaseError, close_old_connections, connection

    deadline = time.monotonic() + DB_RETRY_SECONDS
    while True:
        close_old_connections()
        try:
            return COMMANDS[name](**args)
        except DatabaseError:
            # The database may be restarting: drop the connection and try again until the deadline.
            if time.monotonic() > deadline:
                raise
            with contextlib.suppress(DatabaseError):
                connection.close()
            time.sleep(0.5)


def answer(message: dict[str, Any]) -> None:
    sys.stdout.write(PREFIX + json.dumps(message) + "\n")
    sys.stdout.flush()


def main() -> None:
    setup()
    answer({"ok": True, "result": "ready"})
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            request = json.loads(line)
            result = run_command(request["cmd"], request.get("args") or {})
        except Exception:
            answer({"ok": False, "error": traceback.format_exc()})
        else:
            answer({"ok": True, "result": result})


if __name__ == "__main__":
    main()
