"""In Chromium: start a run, watch scores arrive without reloading, see polling stop when it finishes."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.db import connection
from pytest_django.fixtures import Settings as SettingsWrapper

from evals.models import Dataset, Example, Judge, Run
from evals.pump import pump
from evals.services.judges import judges_sync

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def live_judge(live_server: Any, settings: SettingsWrapper) -> str:
    from offline_judge import faults

    settings.JUDGE_API_URL = f"{live_server.url}/judge-api"
    settings.JUDGE_API_KEY = settings.OFFLINE_JUDGE_API_KEY
    # Slow enough to watch: 30 items one at a time, 150 ms each.
    settings.OFFLINE_JUDGE_FAULTS = "item_ms=150,lanes=1"
    settings.DOCKET_POLL_MIN_SECONDS = 0.3
    settings.DOCKET_POLL_MAX_SECONDS = 1.0
    faults.reset()
    judges_sync()
    return settings.JUDGE_API_URL


def test_scores_appear_live_and_polling_stops_when_the_run_finishes(
    live_server: Any, live_judge: str, login: Any, page: Any
) -> None:
    dataset = Dataset.objects.create(name="live demo", status=Dataset.Status.READY, row_count=30)
    Example.objects.bulk_create(
        Example(
            dataset=dataset,
            position=n,
            request=f"Where is order {n}?",
            response=f"Thanks! Order {n} ships today.",
        )
        for n in range(30)
    )
    judge = Judge.objects.get(name="Support assistant safety")
    login()
    page.goto(f"{live_server.url}/runs/new/?dataset={dataset.pk}&judge={judge.pk}")
    page.fill("#id_batch_size", "10")
    page.click("button:has-text('Start run')")
    page.wait_for_url("**/runs/*/")
    run = Run.objects.get()
    page.evaluate("window.__sameDocument = true")
    live_requests: list[str] = []
    page.on("request", lambda request: live_requests.append(request.url) if "/live/" in request.url else None)
    assert page.locator("#run-live").get_attribute("hx-trigger") == "every 2s"
    assert page.locator("td.verdict .score-none").count() > 0

    worker = threading.Thread(
        target=lambda: (pump(budget_seconds=60, concurrency=2, requeue=False), connection.close())
    )
    worker.start()
    try:
        # A score arrives in a row of the table that was rendered before the run had any.
        page.wait_for_selector("td.verdict .score:not(.score-none)", timeout=30_000)
        page.wait_for_selector("#run-live .badge-completed", timeout=60_000)
    finally:
        worker.join(timeout=90)
    assert page.evaluate("window.__sameDocument") is True, "the page reloaded"
    assert live_requests, "the page never polled"
    assert page.locator("td.verdict .score-none").count() == 0
    assert page.locator("#run-live").get_attribute("hx-trigger") is None
    assert page.locator("#run-live").get_attribute("hx-get") is None
    run.refresh_from_db()
    assert run.status == Run.Status.COMPLETED
    # Polling has stopped: over more than two polling periods, no request goes out.
    polled = len(live_requests)
    page.wait_for_timeout(4_500)
    assert len(live_requests) == polled
    assert "30 of 30 items finished" in page.locator("#run-live").inner_text().replace("\n", " ")
