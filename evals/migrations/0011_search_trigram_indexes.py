"""Trigram indexes for the results search on PostgreSQL (pg_trgm); nothing on SQLite.

The search is Django's `icontains`, which PostgreSQL receives as `UPPER(column::text) LIKE UPPER(%s)`:
each index is on that very expression, or the planner could not use it. Built CONCURRENTLY, so that
upgrading a database with millions of scores does not hold up the pump's writes while it builds (hence
a migration outside a transaction). ANALYZE afterwards gives the planner statistics of the indexed
expressions: without them it guesses every search matches 0.5% of rows, and reads the whole index for a
word that is in every row.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations

INDEXES = {
    "example_request_trgm": ("evals_example", "request"),
    "example_response_trgm": ("evals_example", "response"),
    "score_justification_trgm": ("evals_score", "justification"),
}


def create_indexes(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    # A trusted extension since PostgreSQL 13: the database's owner may create it, no superuser needed.
    schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    for name, (table, column) in INDEXES.items():
        # A concurrent build that failed leaves an invalid index behind, which IF NOT EXISTS would keep.
        with schema_editor.connection.cursor() as cursor:
            cursor.execute(
                "SELECT 1 FROM pg_index WHERE indexrelid = to_regclass(%s) AND NOT indisvalid", [name]
            )
            if cursor.fetchone():
                schema_editor.execute(f"DROP INDEX CONCURRENTLY {name}")
        schema_editor.execute(
            f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON {table} USING gin (UPPER({column}) gin_trgm_ops)"
        )
    schema_editor.execute("ANALYZE evals_example, evals_score")


def drop_indexes(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    for name in INDEXES:
        schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("evals", "0010_batches_before_costs_are_read")]

    operations = [migrations.RunPython(create_indexes, drop_indexes)]
