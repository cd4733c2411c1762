"""Counters for GET /judge-api/_offline/stats/: what this process received and did since it started."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from django.db.models import Count

from offline_judge.models import Batch, BatchItem, BatchTag, ExecutionLog, LaneClock, Outcome
from offline_judge.services import from_epoch_us

_lock = threading.Lock()
# Not clock.now(): this runs at import, and tests patch the clock later anyway.
_started_at = datetime.now(UTC)
_requests: Counter[str] = Counter()
_responses: Counter[str] = Counter()
_faults: Counter[str] = Counter()


def record_request(method: str, route: str) -> None:
    with _lock:
        _requests[f"{method} {route}"] += 1


def record_response(status: int) -> None:
    with _lock:
        _responses[str(status)] += 1


def record_fault(kind: str) -> None:
    with _lock:
        _faults[kind] += 1


def reset() -> None:
    global _started_at
    with _lock:
        _requests.clear()
        _responses.clear()
        _faults.clear()
        # Not clock.now(): this runs at import, and tests patch the clock later anyway.


_started_at = datetime.now(UTC)


def process_counts() -> dict[str, Any]:
    with _lock:
        started: datetime = _started_at
        return {
            "started_at": started.isoformat(),
            "requests": dict(sorted(_requests.items())),
            "responses": dict(sorted(_responses.items())),
            "faults": dict(sorted(_faults.items())),
        }


def database_counts(tag_prefix: str = "") -> dict[str, Any]:
    tags = BatchTag.objects.filter(tag__startswith=tag_prefix) if tag_prefix else BatchTag.objects.all()
    lane_clock = LaneClock.objects.filter(id=1).first()
    free_at = [from_epoch_us(us) for us in (lane_clock.free_at_us if lane_clock else [])]
    by_tag = tags.values("tag").annotate(batches=Count("batch", distinct=True)).order_by("tag")
    return {
        "batches": Batch.objects.count(),
        "items": BatchItem.objects.count(),
        "failed_items": BatchItem.objects.filter(outcome=Outcome.FAILED).count(),
        # Every log, then the children among them (one per evaluator of each item or execute).
        "execution_logs": ExecutionLog.objects.count(),
        "evaluator_logs": ExecutionLog.objects.filter(parent__isnull=False).count(),
        "batches_by_tag": {row["tag"]: row["batches"] for row in by_tag},
        # When each lane finishes the work booked so far: the judge is idle after the last of these.
        "lanes_free_at": [moment.isoformat() for moment in sorted(free_at)],
    }
