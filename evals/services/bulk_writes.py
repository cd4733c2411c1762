"""One statement per kind of write for a polled batch (its items' changes, their scores, their costs)
and for a new run's items.

Django's `bulk_update` builds a `CASE WHEN pk = ...` per field and row and resolves each through the
ORM: about 90 ms per 100-item batch, half of the worker's CPU (bench/profile_writes.py), against about
1 ms for the same UPDATE sent with `executemany`. Every value is adapted as its field's
`get_db_prep_save` would adapt it, so what is stored is exactly what a model save would store, on any
backend. A value that call would return as it is (a str for a text column, a float, a row id) skips
it, and an int or an aware datetime goes straight to the backend's adapter: the per-value call
through the ORM was then most of a write's CPU (400 scores and 600 item values a batch).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
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


# What `get_db_prep_save` returns unchanged, by the field's internal type, on every backend: any str
# of a text column (CharField.to_python keeps it), a float of a float column. Not a plain int of an
# integer column: PostgreSQL wraps it in a sized type (adapt_integerfield_value).
_TEXT_FIELDS = ("CharField", "TextField")
_ROW_ID_FIELDS = ("AutoField", "BigAutoField")
_INTEGER_FIELDS = (
    "IntegerField",
    "BigIntegerField",
    "SmallIntegerField",
    "PositiveIntegerField",
    "PositiveBigIntegerField",
    "PositiveSmallIntegerField",
)


def _fields(model: type[models.Model], names: Sequence[str]) -> list[models.Field[Any, Any]]:
    fields = [model._meta.get_field(name) for name in names]
    return [field for field in fields if isinstance(field, models.Field)]


def value_adapter(field: models.Field[Any, Any]) -> Callable[[Any], Any]:
    """`field.get_db_prep_save(value, connection)` for this connection, without the ORM's calls where
    they would change nothing."""

    def prep(value: Any) -> Any:
        return field.get_db_prep_save(value, connection)

    kind = field.get_internal_type()
    if kind in _TEXT_FIELDS:
        return lambda value: value if value is None or isinstance(value, str) else prep(value)
    if kind == "FloatField":
        return lambda value: value if value is None or type(value) is float else prep(value)
    if isinstance(field, models.ForeignKey) and field.target_field.get_internal_type() in _ROW_ID_FIELDS:
        # A row id goes through the target's get_prep_value (int()) and, on SQLite and PostgreSQL,
        # validate_autopk_value as it is.
        return lambda value: value if value is None or type(value) is int else prep(value)
    if kind in _INTEGER_FIELDS:
        adapt_integer = connection.ops.adapt_integerfield_value
        # An int passes IntegerField.get_prep_value (int()) as it is; only the backend adapts it.
        return lambda value: adapt_integer(value, kind) if type(value) is int else prep(value)
    if kind == "DateTimeField":
        adapt = connection.ops.adapt_datetimefield_value
        # An aware datetime passes DateTimeField.get_prep_value as it is; only the backend adapts it.
        return lambda value: (
            adapt(value) if type(value) is datetime and value.tzinfo is not None else prep(value)
        )
    return prep


def items_update(names: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """Write `names` of items by primary key, in one executemany: each row is those values, then the pk."""
    quote = connection.ops.quote_name
    fields = _fields(Item, names)
    adapters = [value_adapter(field) for field in fields]
    values = [
        [adapt(value) for adapt, value in zip(adapters, row[:-1], strict=True)] + [row[-1]] for row in rows
    ]
    if not values:
        return
    table = quote(Item._meta.db_table)
    columns = [quote(field.column or field.attname) for field in fields]
    if connection.vendor == "postgresql":
        # One statement over one array per column: psycopg's executemany sends a statement per row, and
        # its per-row work was a fifth of the worker's CPU on PostgreSQL (issue 16).
        key = quote("id")
        sets = ", ".join(f"{column} = v.{column}" for column in columns)
        rows_sql = _unnest([*fields, Item._meta.pk])
        sql = (
            f"UPDATE {table} SET {sets} FROM {rows_sql} AS v({', '.join(columns)}, {key}) "  # noqa: S608
            f"WHERE {table}.{key} = v.{key}"
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, _columns_of(values))
        return
    assignments = ", ".join(f"{column} = %s" for column in columns)
    sql = f"UPDATE {table} SET {assignments} WHERE {quote('id')} = %s"  # noqa: S608
    with connection.cursor() as cursor:
        cursor.executemany(sql, values)


def _unnest(fields: Sequence[models.Field[Any, Any] | Any]) -> str:
    """PostgreSQL: rows from one array parameter per field, each cast to its column's type."""
    return "unnest({})".format(", ".join(f"%s::{field.db_type(connection)}[]" for field in fields))


def _columns_of(rows: Sequence[Sequence[Any]]) -> list[list[Any]]:
    return [list(column) for column in zip(*rows, strict=True)]


_SCORE_COLUMNS = ("item", "run", *NewScore._fields[2:])


def scores_insert(scores: Sequence[NewScore]) -> None:
    """Insert scores in one executemany; a score already there (same item and evaluator) is left as it is."""
    if not scores:
        return
    quote = connection.ops.quote_name
    fields = _fields(Score, _SCORE_COLUMNS)
    adapters = [value_adapter(field) for field in fields]
    columns = ", ".join(quote(field.column or field.attname) for field in fields)
    rows = [[adapt(value) for adapt, value in zip(adapters, score, strict=True)] for score in scores]
    # ON CONFLICT DO NOTHING: SQLite (3.24+) and PostgreSQL both take it, as bulk_create(ignore_conflicts).
    table = quote(Score._meta.db_table)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            sql = f"INSERT INTO {table} ({columns}) SELECT * FROM {_unnest(fields)} ON CONFLICT DO NOTHING"  # noqa: S608
            cursor.execute(sql, _columns_of(rows))
        else:
            placeholders = ", ".join(["%s"] * len(fields))
            sql = f"INSERT INTO {table} ({columns}) VALUES ({placeholders}) ON CONFLICT DO NOTHING"  # noqa: S608
            cursor.executemany(sql, rows)


def rows_insert(model: type[models.Model], given: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """Insert rows of `model`: the `given` fields from each row, every other field its default, as a
    new instance would have it. COPY on PostgreSQL, one executemany elsewhere.

    bulk_create compiled a multi-row INSERT value by value: 0.8 s of a 10,000-item run's creation, most
    of the waiting CLI's own CPU (issue 16). A field filled in on save (auto_now) must be given.
    """
    quote = connection.ops.quote_name
    fields = [field for field in model._meta.concrete_fields if not field.primary_key]
    by_name = {field.name: field for field in fields}
    named = [by_name[name] for name in given]
    rest = [field for field in fields if field.name not in given]
    for field in rest:
        if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
            raise ValueError(f"{model.__name__}.{field.name} is set on save: give it")
    adapters = [value_adapter(field) for field in named]
    # The same default for every row: adapted once (a mutable default is never shared: it is sent, not kept).
    defaults = [value_adapter(field)(field.get_default()) for field in rest]
    values = [
        [*(adapt(value) for adapt, value in zip(adapters, row, strict=True)), *defaults] for row in rows
    ]
    if not values:
        return
    columns = ", ".join(quote(field.column or field.attname) for field in [*named, *rest])
    table = quote(model._meta.db_table)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            with cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                for row in values:
                    copy.write_row(row)
        else:
            placeholders = ", ".join(["%s"] * len(fields))
            cursor.executemany(f"INSERT INTO {table} ({columns}) VALUES ({placeholders})", values)  # noqa: S608
