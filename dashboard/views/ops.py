"""Operations: /healthz for load balancers and container health checks, and a status page for staff.

/healthz answers without a login, as JSON: the database, the task broker, and the pump's heartbeat.
It says which part failed but never why in any detail (exception texts can carry host names, user
names or URLs); the full error goes to the server log.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from django.conf import settings
from django.contrib import admin
from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import PermissionDenied
from django.db import connection
from django.db.models import Count, Max, Q
from django.http import HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import path
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_safe

from dashboard.http import HtmxHttpRequest
from evals.models import JudgeApiEvent, PumpSlot, RemoteBatch, Run

logger = logging.getLogger("dashboard.ops")

# The pump beats every few seconds while it works, and the watchdog restarts a dead one within about a
# minute; three minutes without a beat while batches wait means no worker is doing the work.
PUMP_STALE_SECONDS = 180.0
# Redis must answer a health check quickly; the broker's own client has no timeouts.
REDIS_TIMEOUT_SECONDS = 2.0

Check = dict[str, Any]


def check_database() -> Check:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:
        # Django closes the broken connection at the end of the request (it checks after errors).
        logger.warning("healthz: the database is unreachable", exc_info=True)
        return {"ok": False, "error": type(exc).__name__}
    return {"ok": True, "vendor": connection.vendor}


def check_broker() -> Check:
    """ORM broker: a query on django-q2's queue table. Redis: a ping with a short timeout."""
    kind = settings.DOCKET_BROKER
    try:
        if kind == "redis":
            import redis

            client = redis.Redis.from_url(
                settings.REDIS_URL,
                socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
                socket_timeout=REDIS_TIMEOUT_SECONDS,
            )
            try:
                client.ping()
            finally:
                client.close()
        queued = queue_depth()
    except Exception as exc:
        logger.warning("healthz: the %s broker is unreachable", kind, exc_info=True)
        return {"ok": False, "kind": kind, "error": type(exc).__name__}
    return {"ok": True, "kind": kind, "queued": queued}


def queue_depth() -> int:
    """Tasks waiting in the broker for a worker (django-q2's broker API, either broker)."""
    from django_q.brokers import get_broker

    return int(get_broker().queue_size() or 0)


def check_pump(*, now: datetime | None = None) -> Check:
    """Healthy while no work waits; with work waiting, the last heartbeat must be recent."""
    now = now or timezone.now()
    last_beat = PumpSlot.objects.aggregate(at=Max("beat_at"))["at"]
    waiting = RemoteBatch.objects.unfinished().count()
    age = (now - last_beat).total_seconds() if last_beat else None
    ok = waiting == 0 or (age is not None and age <= PUMP_STALE_SECONDS)
    result: Check = {
        "ok": ok,
        "last_beat_age_seconds": round(age, 1) if age is not None else None,
        "batches_waiting": waiting,
        "stale_after_seconds": PUMP_STALE_SECONDS,
    }
    if not ok:
        result["error"] = "no pump heartbeat while work is waiting"
    return result


CHECKS: dict[str, Callable[[], Check]] = {
    "database": check_database,
    "broker": check_broker,
    "pump": check_pump,
}


def health(names: list[str]) -> dict[str, Check]:
    results: dict[str, Check] = {}
    for name in names:
        # The pump's check (and the ORM broker's) read the database: name the cause once, not thrice.
        needs_database = name == "pump" or (name == "broker" and settings.DOCKET_BROKER == "orm")
        if needs_database and results.get("database", {}).get("ok") is False:
            results[name] = {"ok": False, "error": "skipped: the database is unreachable"}
            continue
        results[name] = CHECKS[name]()
    return results


@login_not_required
# HEAD as well as GET: probes often send HEAD.
@require_safe
@never_cache
def healthz(request: HtmxHttpRequest) -> HttpResponse:
    """200 when every part is healthy, 503 naming the failing parts otherwise.

    `?checks=database,broker` limits the checks: a load balancer in front of web nodes may not want
    to take them all out of rotation because the workers are down.
    """
    requested = [name.strip() for name in request.GET.get("checks", "").split(",") if name.strip()]
    unknown = [name for name in requested if name not in CHECKS]
    if unknown:
        return JsonResponse(
            {"status": "error", "error": f"unknown checks: {', '.join(unknown)}", "known": list(CHECKS)},
            status=400,
        )
    results = health(requested or list(CHECKS))
    failing = [name for name, result in results.items() if not result["ok"]]
    body = {"status": "unhealthy" if failing else "ok", "failing": failing, "checks": results}
    return JsonResponse(body, status=503 if failing else 200)


# --- The status page ------------------------------------------------------------------------------


def judge_api_url_for_display() -> str:
    """The judge API in use, without anything that could be a credential (user info, query string)."""
    parts = urlsplit(settings.JUDGE_API_URL)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def pump_rows(now: datetime) -> list[dict[str, Any]]:
    rows = []
    for slot in PumpSlot.objects.all():
        host, _, rest = slot.owner.partition(":")
        pid = rest.split(":", 1)[0]
        rows.append(
            {
                "slot": slot.slot,
                "owner": slot.owner,
                "host": host,
                "pid": pid,
                "held": bool(slot.lease_until and slot.lease_until >= now),
                "lease_until": slot.lease_until,
                "beat_at": slot.beat_at,
                "beat_age": (now - slot.beat_at).total_seconds() if slot.beat_at else None,
                "batches_worked": slot.batches_worked,
            }
        )
    return rows


def judge_api_summary(now: datetime) -> list[dict[str, Any]]:
    """Failures and throttling by status, over the last hour and the last day (events are kept a day)."""
    hour_ago = now - timedelta(hours=1)
    rows = (
        JudgeApiEvent.objects.filter(at__gte=now - timedelta(days=1))
        .values("status")
        .annotate(
            day=Count("id"),
            hour=Count("id", filter=Q(at__gte=hour_ago)),
            throttled=Count("id", filter=Q(throttled=True)),
            last_at=Max("at"),
        )
        .order_by("-day", "status")
    )
    return [dict(row) for row in rows]


def cluster_stats() -> list[Any] | None:
    """django-q2's cluster statistics; None when the cache is per process (they are then invisible here)."""
    if "locmem" in settings.CACHES["default"]["BACKEND"].lower():
        return None
    from django_q.status import Stat

    try:
        return sorted(Stat.get_all(), key=lambda stat: (stat.host, stat.cluster_id))
    except Exception:
        logger.warning("status page: could not read cluster statistics", exc_info=True)
        return None


def status_context() -> dict[str, Any]:
    now = timezone.now()
    try:
        depth: int | None = queue_depth()
    except Exception:
        logger.warning("status page: could not read the queue depth", exc_info=True)
        depth = None
    batches = RemoteBatch.objects.aggregate(
        unfinished=Count("id", filter=Q(status__in=RemoteBatch.UNFINISHED)),
        in_flight=Count(
            "id", filter=Q(status__in=[RemoteBatch.Status.SUBMITTING, RemoteBatch.Status.RUNNING])
        ),
        waiting=Count("id", filter=Q(status=RemoteBatch.Status.WAITING)),
    )
    events = JudgeApiEvent.objects.select_related("run")
    pump = check_pump(now=now)
    return {
        "now": now,
        "broker": settings.DOCKET_BROKER,
        "queue_depth": depth,
        "batches": batches,
        "pump": pump,
        "pumps": pump_rows(now),
        "pump_slots": settings.DOCKET_PUMP_SLOTS,
        "stale_after": PUMP_STALE_SECONDS,
        "active_runs": Run.objects.active().select_related("dataset", "judge").order_by("created_at"),
        "clusters": cluster_stats(),
        "judge_api_url": judge_api_url_for_display(),
        "judge_api_source": settings.JUDGE_API_SOURCE,
        "judge_summary": judge_api_summary(now),
        "events_hour": events.filter(at__gte=now - timedelta(hours=1)).count(),
        "throttled_hour": events.filter(at__gte=now - timedelta(hours=1), throttled=True).count(),
        "events_day": events.filter(at__gte=now - timedelta(days=1)).count(),
        "recent_events": events[:20],
    }


@require_GET
def ops_status(request: HtmxHttpRequest) -> HttpResponse:
    # The check lives here, not in a template: anonymous users never get this far (login middleware).
    if not request.user.is_staff:
        raise PermissionDenied("The status page is for staff.")
    template_name = "dashboard/ops_status.html"
    if request.htmx:
        template_name += "#ops-panels"
    return render(request, template_name, status_context())


# A link to the status page on the admin's index, for staff who start there. Set here, beside the
# page it links to, because this module is loaded with the URLconf before any request is served.
admin.site.index_template = "dashboard/ops_admin_index.html"

urlpatterns = [
    # No trailing slash: settings.SECURE_REDIRECT_EXEMPT matches "healthz" exactly (probes speak HTTP).
    path("healthz", healthz, name="healthz"),
    path("ops/status/", ops_status, name="ops_status"),
]
