"""django-q2 entry points: a few lines each, ids in, one service call.

Never pass the judge API key (or any secret) as a task argument: django-q2 stores arguments in plain text.
"""

from __future__ import annotations

# --- Datasets -------------------------------------------------------------------------------------


def upload_validate(upload_id: str) -> None:
    from evals.services.uploads import upload_validate as validate

    validate(upload_id=upload_id)


def dataset_import(upload_id: str) -> None:
    from evals.services.uploads import upload_import_rows

    upload_import_rows(upload_id=upload_id)


# --- Runs -----------------------------------------------------------------------------------------


def pump() -> None:
    from evals.pump import pump as pump_runs

    pump_runs()


def wake_pump() -> None:
    """Start a pump task (one already running makes it step aside at once)."""
    from django_q.tasks import async_task

    async_task("evals.tasks.pump", task_name="pump", group="pump")


def watchdog() -> None:
    """Runs every minute (a django-q2 Schedule): restarts the pump if work is waiting and none is alive."""
    from datetime import timedelta

    from django.utils import timezone

    from evals.models import JudgeApiEvent
    from evals.pump import pump_alive, pump_has_work

    if pump_has_work() and not pump_alive():
        wake_pump()
    JudgeApiEvent.objects.filter(at__lt=timezone.now() - timedelta(days=1)).delete()
    watchdog_learn_thresholds()
    watchdog_refresh_judges()
    watchdog_retention()


def run_thresholds_learn(run_id: int) -> None:
    """Enqueued by the pump when a run's first items complete: read one execution log, keep its thresholds."""
    from evals.client import JudgeAPI
    from evals.models import Run
    from evals.services.thresholds import run_thresholds_learn as learn

    run = Run.objects.select_related("judge").filter(pk=run_id).first()
    if run is None:  # deleted since
        return
    with JudgeAPI.from_settings() as api:
        learn(run=run, api=api)


def watchdog_learn_thresholds() -> None:
    """The watchdog's share of threshold learning: runs whose task was lost, and runs from before it existed."""
    import logging

    from evals.services.thresholds import runs_thresholds_learn_due

    try:
        runs_thresholds_learn_due()
    except Exception:  # the watchdog's other duties must still run; the next round tries again
        logging.getLogger("evals.thresholds").exception("the watchdog could not learn thresholds")


def watchdog_refresh_judges() -> None:
    """The watchdog's share of judge syncing: judges a sync listed without their version are read in
    full here, so that judge pages never ask the judge API while they render."""
    import logging

    from evals.services.judges import judges_refresh_due

    try:
        judges_refresh_due()
    except Exception:  # the watchdog's other duties must still run; the next round tries again
        logging.getLogger("evals.judges").exception("the watchdog could not read judges")


def watchdog_retention() -> None:
    """The watchdog's share of retention: runs and datasets past DOCKET_RETENTION_DAYS, abandoned uploads."""
    from evals.services.retention import retention_apply

    retention_apply()
