"""A real qcluster process works a run against the offline judge served on a real port.

The judge answers from pytest-django's live server (a thread of this process); the worker is a
separate process on the same SQLite file, reaching the judge over HTTP with a short timeout, so
dropped replies are real timeouts.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from pytest_django.fixtures import Settings as SettingsWrapper

from evals.client import JudgeAPI
from evals.models import Dataset, Example, Item, Run
from evals.services.judges import judges_sync
from evals.services.runs import run_create
from tests.factories import start_worker, stop

pytestmark = [pytest.mark.slow, pytest.mark.qcluster, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def live_judge(live_server: Any, settings: SettingsWrapper) -> Iterator[str]:
    from offline_judge import faults

    url = f"{live_server.url}/judge-api"
    settings.JUDGE_API_URL = url
    settings.JUDGE_API_KEY = settings.OFFLINE_JUDGE_API_KEY
    # Replies held back 1.5 s meet a 1 s client timeout: the worker cannot know if a create happened.
    settings.OFFLINE_JUDGE_FAULTS = (
        "item_ms=5,lanes=20,seed=2,drop=0.25,drop_s=1.5,throttle=0.1,retry_after=1,error=0.05"
    )
    faults.reset()
    yield url
    faults.reset()


def test_a_real_worker_finishes_a_run_through_real_timeouts_without_creating_a_batch_twice(
    live_judge: str, tmp_path: Path
) -> None:
    judges_sync()
    dataset = Dataset.objects.create(name="e2e", status=Dataset.Status.READY, row_count=600)
    Example.objects.bulk_create(
        Example(
            dataset=dataset, position=n, request=f"Question {n}?", response=f"Thank you! The answer is {n}."
        )
        for n in range(600)
    )
    from evals.models import Judge

    run = run_create(dataset=dataset, judge=Judge.objects.get(name="Support assistant safety"), batch_size=50)
    worker = start_worker(live_judge, tmp_path / "qcluster.log")
    try:
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline:
            run.refresh_from_db()
            if run.is_finished or worker.poll() is not None:
                break
            time.sleep(0.3)  # polling the database for the worker's progress, bounded by the deadline
    finally:
        stop(worker)
    log = (tmp_path / "qcluster.log").read_text(errors="replace")
    assert run.is_finished, (
        f"run is {run.status} ({run.done_count}/{run.total_count}); worker log:\n{log[-4000:]}"
    )
    assert run.status == Run.Status.COMPLETED
    assert Counter(run.items.values_list("status", flat=True)) == {Item.Status.COMPLETED: 600}
    from offline_judge import faults

    settings.OFFLINE_JUDGE_FAULTS = "item_ms=5,lanes=20"
    faults.reset()
    with JudgeAPI.from_settings() as api:
        tags = Counter(tag for batch in api.list_batches() for tag in batch.tags if tag.startswith("docket:"))
    assert tags == Counter({f"docket:{run.uid}:{position}": 1 for position in range(12)})
    # The faults really happened: the worker met timeouts and throttling on the way.
    assert "did not answer within 1 s" in log, log
