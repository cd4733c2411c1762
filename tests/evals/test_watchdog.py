"""The watchdog schedule restarts a pump that died; it never doubles one that lives."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from django.utils import timezone
from django_q.models import OrmQ, Schedule

from evals import tasks
from evals.apps import WATCHDOG_NAME, ensure_watchdog_schedule
from evals.models import Dataset, Judge, PumpSlot
from evals.services.runs import run_create
from tests.conftest import SUPPORT_JUDGE


@pytest.mark.django_db
def test_the_watchdog_schedule_exists_after_migrate_and_is_never_duplicated() -> None:
    assert Schedule.objects.filter(name=WATCHDOG_NAME).exists(), "post_migrate did not create it"
    ensure_watchdog_schedule()
    ensure_watchdog_schedule()
    schedules = Schedule.objects.filter(name=WATCHDOG_NAME)
    assert schedules.count() == 1
    schedule = schedules.get()
    assert schedule.func == "evals.tasks.watchdog"
    assert (schedule.schedule_type, schedule.minutes, schedule.repeats) == (Schedule.MINUTES, 1, -1)


def queued_pumps() -> int:
    return sum(1 for task in OrmQ.objects.all() if task.func() == "evals.tasks.pump")


@pytest.mark.django_db
def test_watchdog_starts_a_pump_when_work_waits_and_no_pump_is_alive(
    judges: dict[str, Judge], make_dataset: Callable[..., Dataset]
) -> None:
    run_create(dataset=make_dataset(3), judge=judges[SUPPORT_JUDGE])
    # A pump that died a minute ago still holds its slot row, but its lease ran out.
    PumpSlot.objects.create(slot=0, owner="dead", lease_until=timezone.now() - timedelta(seconds=60))
    before = queued_pumps()
    tasks.watchdog()
    assert queued_pumps() == before + 1


@pytest.mark.django_db
def test_watchdog_leaves_a_live_pump_alone(
    judges: dict[str, Judge], make_dataset: Callable[..., Dataset]
) -> None:
    run_create(dataset=make_dataset(3), judge=judges[SUPPORT_JUDGE])
    PumpSlot.objects.create(slot=0, owner="alive", lease_until=timezone.now() + timedelta(seconds=20))
    before = queued_pumps()
    tasks.watchdog()
    assert queued_pumps() == before


@pytest.mark.django_db
def test_watchdog_does_nothing_when_there_is_no_work() -> None:
    tasks.watchdog()
    assert queued_pumps() == 0
