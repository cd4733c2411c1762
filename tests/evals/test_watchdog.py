"""The watchdog schedule restarts a pump that died; it never doubles one that lives."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from django.utils import timezone
from django_q.models import Schedule

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


@pytest.fixture
def wakes(monkeypatch: pytest.MonkeyPatch) -> list[None]:
    """Pumps the watchdog asked for (counted at the call, whichever broker is configured)."""
    calls: list[None] = []
    monkeypatch.setattr("evals.tasks.wake_pump", lambda: calls.append(None))
    return calls


@pytest.mark.django_db
def test_watchdog_starts_a_pump_when_work_waits_and_no_pump_is_alive(
    judges: dict[str, Judge], make_dataset: Callable[..., Dataset], wakes: list[None]
) -> None:
    run_create(dataset=make_dataset(3), judge=judges[SUPPORT_JUDGE])
    # A pump that died a minute ago still holds its slot row, but its lease ran out.
    PumpSlot.objects.create(slot=0, owner="dead", lease_until=timezone.now() - timedelta(seconds=60))
    tasks.watchdog()
    assert wakes == [None]


@pytest.mark.django_db
def test_watchdog_leaves_a_live_pump_alone(
    judges: dict[str, Judge], make_dataset: Callable[..., Dataset], wakes: list[None]
) -> None:
    run_create(dataset=make_dataset(3), judge=judges[SUPPORT_JUDGE])
    PumpSlot.objects.create(slot=0, owner="alive", lease_until=timezone.now() + timedelta(seconds=20))
    tasks.watchdog()
    assert wakes == []


@pytest.mark.django_db
def test_watchdog_does_nothing_when_there_is_no_work(wakes: list[None]) -> None:
    tasks.watchdog()
    assert wakes == []


@pytest.mark.django_db
def test_a_starting_worker_wakes_the_pump_when_runs_wait(
    judges: dict[str, Judge], make_dataset: Callable[..., Dataset], wakes: list[None]
) -> None:
    from evals.apps import wake_pump_on_worker_start

    wake_pump_on_worker_start(sender="django_q", proc_name="Process-1")
    assert wakes == []
    run_create(dataset=make_dataset(3), judge=judges[SUPPORT_JUDGE])
    wake_pump_on_worker_start(sender="django_q", proc_name="Process-1")
    assert wakes == [None]


@pytest.mark.django_db
def test_a_new_pump_takes_over_a_dead_pumps_slot_when_its_lease_runs_out() -> None:
    from evals.pump import pump

    PumpSlot.objects.create(slot=0, owner="dead", lease_until=timezone.now() + timedelta(seconds=0.3))
    report = pump(budget_seconds=0.1, requeue=False)
    assert report.slot == 0
    assert PumpSlot.objects.get(slot=0).owner == report.owner


@pytest.mark.django_db
def test_a_new_pump_steps_aside_while_the_slot_holder_is_alive(monkeypatch: pytest.MonkeyPatch) -> None:
    from evals import pump as pump_module

    PumpSlot.objects.create(slot=0, owner="alive", lease_until=timezone.now() + timedelta(seconds=0.3))

    def alive_pump_renews(seconds: float) -> None:
        # The live pump renews its lease while the newcomer waits.
        PumpSlot.objects.filter(slot=0).update(lease_until=timezone.now() + timedelta(seconds=15))

    monkeypatch.setattr(pump_module.time, "sleep", alive_pump_renews)
    report = pump_module.pump(budget_seconds=0.1, requeue=False)
    assert report.slot is None
    assert PumpSlot.objects.get(slot=0).owner == "alive"


@pytest.mark.django_db
def test_a_pump_takes_the_first_free_slot_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    from evals import pump as pump_module

    def no_waiting(seconds: float) -> None:
        raise AssertionError("a free slot needs no wait")

    monkeypatch.setattr(pump_module, "slot_wait_for_expiry", lambda owner: no_waiting(0))
    report = pump_module.pump(budget_seconds=0.1, requeue=False)
    assert report.slot == 0


@pytest.mark.django_db
def test_a_pump_finding_a_live_slot_holder_returns_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    from evals import pump as pump_module

    # The holder beat a moment ago: it is alive and sees new work within a second.
    now = timezone.now()
    PumpSlot.objects.create(slot=0, owner="alive", lease_until=now + timedelta(seconds=10), beat_at=now)

    def no_waiting(seconds: float) -> None:
        raise AssertionError("a live holder is not waited for")

    monkeypatch.setattr(pump_module.time, "sleep", no_waiting)
    report = pump_module.pump(budget_seconds=0.1, requeue=False)
    assert report.slot is None
    assert PumpSlot.objects.get(slot=0).owner == "alive"


@pytest.mark.django_db
def test_a_pump_handing_over_to_its_next_slice_is_still_seen_but_a_silent_one_is_not() -> None:
    from evals.pump import pump_alive, pump_seen_within, slot_release

    PumpSlot.objects.create(slot=0, owner="slice-1", lease_until=timezone.now() + timedelta(seconds=20))
    assert pump_seen_within(10)
    slot_release(0, "slice-1")  # the slice ends; the next one is queued, not yet picked up
    assert not pump_alive()
    assert pump_seen_within(10)
    PumpSlot.objects.filter(slot=0).update(beat_at=timezone.now() - timedelta(seconds=30))
    assert not pump_seen_within(10)
