from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.db.models.signals import post_migrate

WATCHDOG_NAME = "docket-watchdog"


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


class EvalsConfig(AppConfig):
    name = "evals"
    verbose_name = "Evaluations"

    def ready(self) -> None:
        post_migrate.connect(ensure_watchdog_schedule, sender=self, dispatch_uid="docket-watchdog-schedule")
