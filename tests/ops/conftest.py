"""Fixtures for the operations tests: runs with remote batches waiting, pump slots, judge API events."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.test import Client
from django.utils import timezone

from evals.models import Dataset, Judge, PumpSlot, RemoteBatch, Run


@pytest.fixture
def staff(db: None) -> AbstractBaseUser:
    return get_user_model().objects.create_user(
        username="grace", password="a-long-test-password", is_staff=True
    )


@pytest.fixture
def staff_client(client: Client, staff: AbstractBaseUser) -> Client:
    client.force_login(staff)
    return client


@pytest.fixture
def make_run(db: None, make_dataset: Callable[..., Dataset]) -> Callable[..., Run]:
    """A run with `batches` remote batches in `batch_status`, made directly in the database."""

    def make(
        *,
        name: str = "nightly support eval",
        batches: int = 2,
        batch_status: str = RemoteBatch.Status.WAITING,
        status: str = Run.Status.RUNNING,
        done: int = 0,
    ) -> Run:
        judge, _ = Judge.objects.get_or_create(
            api_url="http://judge.test/judge-api",
            remote_id="j-1",
            defaults={"source": Judge.Source.OFFLINE, "name": "Support assistant safety"},
        )
        run = Run.objects.create(
            name=name,
            dataset=make_dataset(rows=batches * 100, name=f"{name} data"),
            judge=judge,
            status=status,
            total_count=batches * 100,
            completed_count=done,
            started_at=timezone.now() - timedelta(minutes=5),
        )
        RemoteBatch.objects.bulk_create(
            RemoteBatch(run=run, position=position, size=100, status=batch_status)
            for position in range(batches)
        )
        return run

    return make


@pytest.fixture
def beat(db: None) -> Callable[..., PumpSlot]:
    """A pump slot whose last heartbeat was `seconds_ago`."""

    def make(
        seconds_ago: float, *, slot: int = 0, owner: str = "worker-7:4242:ab12cd", worked: int = 0
    ) -> PumpSlot:
        now = timezone.now()
        slot_row, _ = PumpSlot.objects.update_or_create(
            slot=slot,
            defaults={
                "owner": owner,
                "beat_at": now - timedelta(seconds=seconds_ago),
                "lease_until": now - timedelta(seconds=seconds_ago) + timedelta(seconds=30),
                "batches_worked": worked,
            },
        )
        return slot_row

    return make
