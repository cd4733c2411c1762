"""The status page: staff only; queue depth, active runs, pump heartbeats, the judge API's errors."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from unittest import mock

import pytest
from django.conf import settings
from django.test import Client
from django.utils import timezone
from pytest_django.fixtures import Settings as SettingsWrapper

from dashboard.views import ops
from evals.models import JudgeApiEvent, PumpSlot, Run

pytestmark = pytest.mark.django_db


def test_the_status_page_asks_anonymous_visitors_to_log_in(client: Client) -> None:
    response = client.get("/ops/status/")
    assert response.status_code == 302
    assert response["Location"].startswith("/login/")


def test_the_status_page_is_forbidden_to_users_who_are_not_staff(logged_in: Client) -> None:
    assert logged_in.get("/ops/status/").status_code == 403


def test_the_status_page_shows_queue_depth_active_runs_and_pump_heartbeats(
    staff_client: Client, make_run: Callable[..., Run], beat: Callable[..., PumpSlot]
) -> None:
    make_run(name="nightly support eval", batches=3, done=120)
    make_run(name="finished last week", batches=1, status=Run.Status.COMPLETED)
    beat(7, slot=0, owner="worker-7:4242:ab12cd", worked=58)
    beat(900, slot=1, owner="worker-9:1717:ef34gh", worked=3)
    with mock.patch.object(ops, "queue_depth", return_value=5):
        response = staff_client.get("/ops/status/")
    assert response.status_code == 200
    page = response.content.decode()
    assert '<div class="stat-value" data-stat="queue-depth">5</div>' in page
    assert "nightly support eval" in page
    assert "120 / 300" in page
    assert "finished last week" not in page  # only active runs
    # One row per pump: host, pid, lease, heartbeat age and work done.
    assert "worker-7" in page and "4242" in page and "58" in page
    assert "worker-9" in page and "1717" in page
    assert "7 s ago" in page
    assert "15 minutes ago" in page


def test_the_status_page_summarises_judge_api_errors_and_throttling_and_lists_the_last_20(
    staff_client: Client, make_run: Callable[..., Run]
) -> None:
    run = make_run(batches=1)
    now = timezone.now()
    events = [JudgeApiEvent(action="poll", status="timeout", message="did not answer within 30 s")]
    events += [JudgeApiEvent(action="create", status="503", message=f"upstream busy #{n}") for n in range(25)]
    events += [
        JudgeApiEvent(action="poll", status="429", throttled=True, message="slow down", run=run)
        for _ in range(3)
    ]
    JudgeApiEvent.objects.bulk_create(events)
    # One from earlier today: in the day's counts, not the hour's.
    JudgeApiEvent.objects.filter(status="timeout").update(at=now - timedelta(hours=3))
    response = staff_client.get("/ops/status/")
    assert response.status_code == 200
    summary = {row["status"]: row for row in response.context["judge_summary"]}
    assert summary["503"]["hour"] == 25 and summary["503"]["day"] == 25
    assert summary["429"]["throttled"] == 3
    assert summary["timeout"]["hour"] == 0 and summary["timeout"]["day"] == 1
    assert response.context["events_hour"] == 28
    assert response.context["throttled_hour"] == 3
    assert response.context["events_day"] == 29
    page = response.content.decode()
    assert "Last 20 events" in page
    # Newest first: the three throttled polls, then 17 of the 25 failed creates.
    assert page.count("slow down") == 3
    assert page.count("upstream busy #") == 17
    assert "did not answer" not in page
    assert f'href="/runs/{run.pk}/"' in page


def test_the_status_page_names_the_judge_api_in_use_but_never_its_key_or_credentials(
    staff_client: Client, settings: SettingsWrapper
) -> None:
    settings.JUDGE_API_URL = "https://robot:url-password@api.scorable.test:8443/judge?token=query-secret"
    settings.JUDGE_API_KEY = "sk-live-very-secret-key"
    page = staff_client.get("/ops/status/").content.decode()
    assert "https://api.scorable.test:8443/judge" in page
    for secret in ("url-password", "robot", "query-secret", "sk-live-very-secret-key", settings.SECRET_KEY):
        assert secret not in page


def test_the_status_page_warns_when_no_pump_works_waiting_batches(
    staff_client: Client, make_run: Callable[..., Run], beat: Callable[..., PumpSlot]
) -> None:
    make_run(batches=2)
    beat(ops.PUMP_STALE_SECONDS + 60)
    page = staff_client.get("/ops/status/").content.decode()
    assert "No pump is working." in page


def test_the_status_page_refreshes_its_panels_through_htmx(staff_client: Client) -> None:
    response = staff_client.get("/ops/status/", headers={"HX-Request": "true"})
    page = response.content.decode()
    assert page.lstrip().startswith('<div id="ops-panels"')
    assert "<html" not in page


def test_the_admin_index_links_to_the_status_page(staff_client: Client, settings: SettingsWrapper) -> None:
    staff = staff_client.get("/ops/status/").wsgi_request.user
    staff.is_superuser = True
    staff.save()
    page = staff_client.get("/admin/").content.decode()
    assert 'href="/ops/status/"' in page


def test_the_broker_setting_is_shown(staff_client: Client) -> None:
    page = staff_client.get("/ops/status/").content.decode()
    label = "Redis broker" if settings.DOCKET_BROKER == "redis" else "ORM (database) broker"
    assert label in page
