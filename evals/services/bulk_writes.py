"""One statement per kind of write for a polled batch: its items' changes, their scores, their costs.

Django's `bulk_update` builds a `CASE WHEN pk = ...` per field and row and resolves each through the
ORM: about 90 ms per 100-item batch, half of the worker's CPU (bench/profile_writes.py), against about
1 ms for the same UPDATE sent with `executemany`. Every value is adapted by its own field
(`get_db_prep_save`), so what is stored is exactly what a model save would store, on any backend.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from django.db import connection, models

from evals.models import Item, Score


class NewScore(NamedTuple):
    """A score to insert: the columns of `Score`, without building a model instance per score."""

    item_id: int
    run_id: int
    evaluator_name: str
    evaluator_id: str
    score: float | None
    justification: str
    confidence: float | None


def _fields(model: type[models.Model], names: Sequence[str]) -> list[models.Field[Any, Any]]:
    fields = [model._meta.get_field(name) for name in names]
    return [field for field in fields if isinstance(field, models.Field)]


def items_update(items: Sequence[Item], names: Sequence[str]) -> None:
    """Write `names` of each item (by primary key), in one executemany."""
    if not items:
        return
    quote = connection.ops.quote_name
    fields = _fields(Item, names)
    assignments = ", ".join(f"{quote(field.column or field.attname)} = %s" for field in fields)
    sql = f"UPDATE {quote(Item._meta.db_table)} SET {assignments} WHERE {quote('id')} = %s"  # noqa: S608
    rows = [
        [field.get_db_prep_save(getattr(item, field.attname), connection) for field in fields] + [item.pk]
        for item in items
    ]
    with connection.cursor() as cursor:
        cursor.executemany(sql, rows)


_SCORE_COLUMNS = ("item", "run", *NewScore._fields[2:])


def scores_insert(scores: Sequence[NewScore]) -> None:
    """Insert scores in one executemany; a score already there (same item and evaluator) is left as it is."""
    if not scores:
        return
    quote = connection.ops.quote_name
    fields = _fields(Score, _SCORE_COLUMNS)
    columns = ", ".join(quote(field.column or field.attname) for field in fields)
    placeholders = ", ".join(["%s"] * len(fields))
    # ON CONFLICT DO NOTHING: SQLite (3.24+) and PostgreSQL both take it, as bulk_create(ignore_conflicts).
    sql = (
        f"INSERT INTO {quote(Score._meta.db_table)} ({columns}) VALUES ({placeholders}) "  # noqa: S608
        "ON CONFLICT DO NOTHING"
    )
    rows = [
        [field.get_db_prep_save(value, connection) for field, value in zip(fields, score, strict=True)]
        for score in scores
    ]
    with connection.cursor() as cursor:
        cursor.executemany(sql, rows)
