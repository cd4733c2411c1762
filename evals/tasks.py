"""django-q2 entry points: a few lines each, ids in, one service call.

Never pass the judge API key (or any secret) as a task argument: django-q2 stores arguments in plain text.
"""

from __future__ import annotations

# --- Datasets -------------------------------------------------------------------------------------


def upload_validate(upload_id: str) -> None:
    from evals.services.datasets import upload_validate as validate

    validate(upload_id=upload_id)


def dataset_import(upload_id: str) -> None:
    from evals.services.datasets import upload_import_rows

    upload_import_rows(upload_id=upload_id)


# --- Runs -----------------------------------------------------------------------------------------


def pump() -> None:
    from evals.pump import pump as pump_runs

    pump_runs()


def watchdog() -> None:
    """Runs every minute (a django-q2 Schedule): restarts the pump if work is waiting and none is alive."""
    from datetime import timedelta

    from django.utils import timezone

    from evals.models import JudgeApiEvent, RemoteBatch
    from evals.pump import pump_alive
    from evals.services.runs import wake_pump

    if RemoteBatch.objects.unfinished().exists() and not pump_alive():
        wake_pump()
    JudgeApiEvent.objects.filter(at__lt=timezone.now() - timedelta(days=1)).delete()
