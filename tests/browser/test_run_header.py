"""In Chromium: the run header's "started ... ago" keeps time, and "Run started" leaves when the run ends."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone
from pytest_django.fixtures import Settings as SettingsWrapper

from evals.models import Dataset, Example, Judge, RemoteBatch, Run
from evals.pump import pump
from evals.services.judges import judges_sync

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def live_judge(live_server: Any, settings: SettingsWrapper) -> Judge:
    from offline_judge import faults

    settings.JUDGE_API_URL = f"{live_server.url}/judge-api"
    settings.JUDGE_API_KEY = settings.OFFLINE_JUDGE_API_KEY
    # Slow enough that the page sees the run working before it ends.
    settings.OFFLINE_JUDGE_FAULTS = "item_ms=200,lanes=1"
    settings.DOCKET_POLL_MIN_SECONDS = 0.3
    settings.DOCKET_POLL_MAX_SECONDS = 1.0
    faults.reset()
    judges_sync()
    return Judge.objects.get(name="Support assistant safety")


def small_dataset(rows: int = 6) -> Dataset:
    dataset = Dataset.objects.create(name="header demo", status=Dataset.Status.READY, row_count=rows)
    Example.objects.bulk_create(
        Example(
            dataset=dataset, position=n, request=f"Where is order {n}?", response=f"Order {n} ships today."
        )
        for n in range(rows)
    )
    return dataset


def test_started_ago_moves_on_while_the_page_stays_open(
    live_server: Any, live_judge: Judge, login: Any, page: Any
) -> None:
    run = Run.objects.create(
        dataset=small_dataset(1),
        judge=live_judge,
        name="ten minutes old",
        status=Run.Status.COMPLETED,
        created_at=timezone.now() - timedelta(minutes=10),
    )
    login()
    page.clock.install()
    page.goto(f"{live_server.url}/runs/{run.pk}/")
    started = page.locator("time[data-ago]")
    assert started.inner_text().replace("\xa0", " ") == "10 minutes ago"
    page.clock.fast_forward("20:00")
    page.wait_for_function("document.querySelector('time[data-ago]').textContent === '30 minutes ago'")


def test_the_run_started_notice_leaves_when_the_run_ends(
    live_server: Any, live_judge: Judge, login: Any, page: Any
) -> None:
    dataset = small_dataset()
    login()
    page.goto(f"{live_server.url}/runs/new/?dataset={dataset.pk}&judge={live_judge.pk}")
    page.fill("#id_batch_size", "2")
    page.click("button:has-text('Start run')")
    page.wait_for_url("**/runs/*/")
    notice = page.locator("#run-live .notice-good")
    assert (
        notice.inner_text() == "Run started: 6 items in 3 remote batches. Scores appear below as they arrive."
    )
    assert page.locator(".messages").count() == 0, "not a message that would stay after the run"
    run = Run.objects.get()

    def work() -> None:
        try:
            pump(budget_seconds=60, concurrency=1, requeue=False)
        finally:
            connection.close()

    worker = threading.Thread(target=work)
    worker.start()
    try:
        page.wait_for_selector("#run-live .badge-completed", timeout=60_000)
    finally:
        worker.join(timeout=90)
    assert page.locator("#run-live .notice-good").count() == 0
    assert not RemoteBatch.objects.filter(run=run).unfinished().exists()
