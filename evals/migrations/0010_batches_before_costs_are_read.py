"""Batches that finished before Docket read costs are marked as read: their logs may be long gone, and
reading every one after an upgrade would send one call per old batch for nothing."""

from __future__ import annotations

from typing import Any

from django.db import migrations
from django.db.models import F
from django.db.models.functions import Coalesce, Now


def mark_old_batches_read(apps: Any, schema_editor: Any) -> None:
    RemoteBatch = apps.get_model("evals", "RemoteBatch")
    RemoteBatch.objects.filter(
        status__in=["completed", "partial", "failed", "cancelled"], logs_fetched_at__isnull=True
    ).update(logs_fetched_at=Coalesce(F("finished_at"), Now()))


class Migration(migrations.Migration):
    dependencies = [("evals", "0009_costs_budgets_evaluator_sets_row_ids")]

    operations = [migrations.RunPython(mark_old_batches_read, migrations.RunPython.noop)]
