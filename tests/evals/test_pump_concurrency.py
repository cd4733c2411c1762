"""Two pumps at once (threads, each with its own pool of HTTP threads) never work the same batch together."""

from __future__ import annotations

import re
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable

import httpx
import pytest
from django.db import connection
from pytest_django.fixtures import Settings as SettingsWrapper

from evals import client
from evals.models import Dataset, Item, Judge, Run
from evals.pump import pump
from evals.services.runs import run_create
from tests.conftest import SUPPORT_JUDGE

BATCH_PATH = re.compile(r"/v1/judges/batch-executions/([0-9a-f-]{36})/$")


@pytest.mark.django_db(transaction=True)
def test_two_pumps_at_once_never_poll_the_same_batch_at_the_same_time(
    judges: dict[str, Judge],
    make_dataset: Callable[..., Dataset],
    offline_judge: Callable[[str], None],
    settings: SettingsWrapper,
) -> None:
    offline_judge("item_ms=2,lanes=8,latency_ms=5")
    settings.DOCKET_PUMP_SLOTS = 2
    inner = client.default_transport
    assert inner is not None
    calls: dict[str, list[tuple[float, float, str]]] = defaultdict(list)
    lock = threading.Lock()

    class Recording(httpx.BaseTransport):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            started = time.monotonic()
            response = inner.handle_request(request)
            response.read()
            match = BATCH_PATH.search(request.url.path)
            if match:
                with lock:
                    calls[match.group(1)].append((started, time.monotonic(), threading.current_thread().name))
            return response

    client.default_transport = Recording()
    runs = [
        run_create(dataset=make_dataset(300, name=f"set {n}"), judge=judges[SUPPORT_JUDGE], batch_size=25)
        for n in range(2)
    ]
    reports = []

    def work() -> None:
        try:
            reports.append(pump(budget_seconds=60, concurrency=4, requeue=False))
        finally:
            connection.close()

    threads = [threading.Thread(target=work) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    client.default_transport = inner

    assert {report.slot for report in reports} == {0, 1}, "both pumps ran"
    assert all(report.actions > 0 for report in reports)
    for run in runs:
        run.refresh_from_db()
        assert run.status == Run.Status.COMPLETED
        assert Counter(run.items.values_list("status", flat=True)) == {Item.Status.COMPLETED: 300}
    assert len(calls) == 24
    for batch_id, intervals in calls.items():
        intervals.sort()
        for (_, end, _), (start, _, _) in zip(intervals, intervals[1:], strict=False):
            assert start >= end, f"batch {batch_id} was polled by two calls at once"
