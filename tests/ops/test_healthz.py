"""/healthz: what a load balancer or a monitor reads, with no login."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from unittest import mock

import pytest
from django.conf import settings
from django.db import OperationalError
from django.test import Client

from dashboard.views import ops
from evals.models import PumpSlot, RemoteBatch, Run

pytestmark = pytest.mark.django_db


def get_health(client: Client, query: str = "") -> tuple[int, dict[str, Any]]:
    response = client.get(f"/healthz{query}")
    assert response["Content-Type"] == "application/json"
    assert "no-cache" in response["Cache-Control"]
    return response.status_code, response.json()


def test_healthz_is_healthy_without_a_login_when_nothing_waits(client: Client) -> None:
    status, body = get_health(client)
    assert status == 200
    assert body["status"] == "ok"
    assert body["failing"] == []
    assert body["checks"]["database"]["ok"] is True
    broker = body["checks"]["broker"]
    assert broker["ok"] is True and broker["kind"] == settings.DOCKET_BROKER
    # A Redis broker may be shared with other test processes: its queue need not be empty.
    assert isinstance(broker["queued"], int) and broker["queued"] >= 0
    # No pump has ever run, and none needs to: nothing is waiting.
    assert body["checks"]["pump"]["last_beat_age_seconds"] is None
    assert body["checks"]["pump"]["ok"] is True


def test_healthz_is_healthy_while_a_fresh_heartbeat_works_waiting_batches(
    client: Client, make_run: Callable[..., Run], beat: Callable[..., PumpSlot]
) -> None:
    make_run(batches=3)
    beat(4)
    status, body = get_health(client)
    assert status == 200, body
    assert body["checks"]["pump"]["batches_waiting"] == 3
    assert 3 <= body["checks"]["pump"]["last_beat_age_seconds"] < 30


def test_healthz_fails_naming_the_pump_when_its_heartbeat_is_stale_while_work_waits(
    client: Client, make_run: Callable[..., Run], beat: Callable[..., PumpSlot]
) -> None:
    make_run(batches=2, batch_status=RemoteBatch.Status.RUNNING)
    beat(ops.PUMP_STALE_SECONDS + 20)
    status, body = get_health(client)
    assert status == 503
    assert body["status"] == "unhealthy"
    assert body["failing"] == ["pump"]
    assert body["checks"]["pump"]["error"] == "no pump heartbeat while work is waiting"
    assert body["checks"]["database"]["ok"] and body["checks"]["broker"]["ok"]


def test_healthz_fails_when_work_waits_and_no_pump_ever_beat(
    client: Client, make_run: Callable[..., Run]
) -> None:
    make_run(batches=1)
    status, body = get_health(client)
    assert status == 503
    assert body["failing"] == ["pump"]


def test_a_stale_heartbeat_is_healthy_once_every_batch_is_finished(
    client: Client, make_run: Callable[..., Run], beat: Callable[..., PumpSlot]
) -> None:
    make_run(batches=2, batch_status=RemoteBatch.Status.COMPLETED, status=Run.Status.COMPLETED)
    beat(3600)
    status, body = get_health(client)
    assert status == 200, body


def test_healthz_fails_naming_the_database_when_it_is_down_and_leaks_nothing(client: Client) -> None:
    secret = "postgres://docket:hunter2-db-password@db.internal:5432/docket"
    with mock.patch.object(
        ops.connection, "cursor", side_effect=OperationalError(f"could not connect: {secret}")
    ):
        response = client.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["failing"][0] == "database"
    assert body["checks"]["database"] == {"ok": False, "error": "OperationalError"}
    # What reads the database is reported as skipped, not as three separate faults.
    assert body["checks"]["pump"]["error"] == "skipped: the database is unreachable"
    text = response.content.decode()
    for leaked in ("hunter2", "db.internal", settings.SECRET_KEY, settings.JUDGE_API_KEY):
        assert leaked not in text


def test_healthz_fails_naming_the_broker_when_it_is_unreachable(client: Client) -> None:
    with mock.patch.object(ops, "queue_depth", side_effect=ConnectionError("redis://:s3cret@cache:6379/0")):
        response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["failing"] == ["broker"]
    assert response.json()["checks"]["broker"]["error"] == "ConnectionError"
    assert "s3cret" not in response.content.decode()


def test_healthz_counts_tasks_waiting_in_the_broker(client: Client) -> None:
    with mock.patch.object(ops, "queue_depth", return_value=7):
        _, body = get_health(client)
    assert body["checks"]["broker"]["queued"] == 7


def test_healthz_can_be_limited_to_some_checks_for_a_load_balancer(
    client: Client, make_run: Callable[..., Run]
) -> None:
    make_run(batches=1)  # the pump would fail: no heartbeat while work waits
    status, body = get_health(client, "?checks=database,broker")
    assert status == 200
    assert set(body["checks"]) == {"database", "broker"}
    status, body = get_health(client, "?checks=pump,nonsense")
    assert status == 400
    assert "nonsense" in body["error"]


def test_healthz_answers_head_and_refuses_post(client: Client) -> None:
    assert client.head("/healthz").status_code == 200
    assert client.post("/healthz").status_code == 405
