from __future__ import annotations

import logging
from typing import Any

from django.apps import AppConfig
from django.db.models.signals import post_migrate

WATCHDOG_NAME = "docket-watchdog"
logger = logging.getLogger("evals")


def ensure_watchdog_schedule(**kwargs: Any) -> None:
    """The pump's watchdog: created (or corrected) after every migrate, never duplicated."""
    from django_q.models import Schedule

    Schedule.objects.update_or_create(
        name=WATCHDOG_NAME,
        defaults={
            "func": "evals.tasks.watchdog",
            "schedule_type": Schedule.MINUTES,
            "minutes": 1,
            "repeats": -1,
        },
    )


def wake_pump_on_worker_start(**kwargs: Any) -> None:
    """A worker process just started (a new or restarted qcluster): if runs are waiting, start a pump now
    rather than at the watchdog's next round. A pump already running makes the new one step aside."""
    from evals.models import RemoteBatch
    from evals.tasks import wake_pump

    try:
        if RemoteBatch.objects.unfinished().exists():
            wake_pump()
    except Exception:  # the worker must start even when the database is not there yet
        logger.exception("could not check for waiting runs when a worker started")


class EvalsConfig(AppConfig):
    name = "evals"
    verbose_name = "Evaluations"

    def ready(self) -> None:
        from django_q.signals import post_spawn

        post_migrate.connect(ensure_watchdog_schedule, sender=self, dispatch_uid="docket-watchdog-schedule")
        post_spawn.connect(wake_pump_on_worker_start, dispatch_uid="docket-wake-pump-on-worker-start")
