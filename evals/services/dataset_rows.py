"""The bulk writer: a checked file's rows into an importing dataset, all or nothing, and out again.

Rows go in with one executemany per bounded transaction (bulk_create cost 5x the database's own work,
bench/ingest.py); a dataset is `importing`, so nothing else reads it, until one UPDATE makes it `ready`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from django.conf import settings
from django.db import connection, models, transaction
from django.db.models import F

from evals import ingest
from evals.ingest import IngestError, InvalidRow, ParsedRow, ReadSpec
from evals.models import Dataset, Example

# Rows per write transaction, and text per transaction: big enough to be fast (each commit rewrites
# the index pages it touched, and input_key hashes are random), small enough that other writers
# (the pump, other requests) wait a fraction of a second at most.
WRITE_BATCH_ROWS = 5000


WRITE_BATCH_CHARS = 8_000_000


class ImportCancelled(Exception):
    """The dataset was deleted while its rows were being written."""


def metadata_columns(columns: Iterable[str], mapping: dict[str, str], extra: Iterable[str]) -> list[str]:
    """The header's metadata columns in file order, then keys met only in JSON rows, each once.

    A dict, not a list, for the "seen" test: with a list this was quadratic, 60 s for a file with
    100,000 columns, and it ran inside a write transaction that locked out every other writer.
    """
    kept = dict.fromkeys(
        column for column in columns if mapping.get(column, ingest.METADATA) == ingest.METADATA
    )
    kept.update(dict.fromkeys(extra))
    return list(kept)


def dataset_fill(
    *,
    dataset: Dataset,
    spec: ReadSpec,
    mapping: dict[str, str],
    skip_invalid: bool,
    batch_rows: int | None = None,
) -> tuple[int, list[str]]:
    """Write every valid row of a file into an importing dataset, then mark it ready.

    All or nothing: rows are committed in bounded transactions into a dataset whose status is
    `importing`, which every page, form and run_create leave alone, and it becomes `ready` in one
    UPDATE at the end; on any failure every row written is deleted before the error is raised again.
    Reading, checking and building each batch happen with no transaction open: only a built batch's
    INSERT holds the write lock, so other users' writes (logins, renames, the pump) wait a moment at most.
    """
    delete_examples(dataset.pk)  # rows from an earlier attempt that died
    Dataset.objects.filter(pk=dataset.pk).update(rows_done=0)
    position = 0
    try:
        with ingest.checked_rows(spec, mapping, max_rows=settings.DOCKET_MAX_ROWS) as (
            _table,
            checker,
            outcomes,
        ):
            batches = _example_batches(
                dataset.pk,
                outcomes,
                skip_invalid=skip_invalid,
                batch_rows=batch_rows or WRITE_BATCH_ROWS,
                adapt_json=_json_adapter(),
            )
            for params in batches:
                _write_examples(dataset.pk, params)
                position += len(params)
            extra = list(checker.extra_columns)
        columns = metadata_columns(dataset.columns, mapping, [*dataset.metadata_columns, *extra])
        # The flip to ready: one conditional UPDATE, atomic on its own, so no transaction is held while
        # Python works. A dataset deleted meanwhile (status no longer importing) is not brought back.
        updated = Dataset.objects.filter(pk=dataset.pk, status=Dataset.Status.IMPORTING).update(
            status=Dataset.Status.READY,
            row_count=position,
            rows_done=position,
            metadata_columns=columns,
            import_error="",
        )
        if not updated:
            raise ImportCancelled
    except BaseException:
        delete_examples(dataset.pk)
        raise
    return position, extra


ExampleParams = tuple[Any, ...]


def _example_batches(
    dataset_id: int,
    outcomes: Iterator[ParsedRow | InvalidRow],
    *,
    skip_invalid: bool,
    batch_rows: int,
    adapt_json: Callable[[Any], Any],
) -> Iterator[list[ExampleParams]]:
    """The INSERT parameters of the valid rows, in batches of at most batch_rows rows and about
    WRITE_BATCH_CHARS characters, with positions in file order."""
    make_input_key = Example.make_input_key
    batch: list[ExampleParams] = []
    chars = 0
    position = 0
    for row in outcomes:
        if isinstance(row, InvalidRow):
            if skip_invalid:
                continue
            raise IngestError(f"{row.problems[0]}; the file no longer matches its check.")
        turns = row.turns
        contexts_json = adapt_json(row.contexts)
        turns_json = None if turns is None else adapt_json(turns)
        metadata_json = adapt_json(row.metadata)
        batch.append(
            (
                dataset_id,
                position,
                row.line,
                row.request,
                row.response,
                contexts_json,
                row.expected_output,
                turns_json,
                row.system_prompt,
                metadata_json,
                make_input_key(
                    key=row.key,
                    request=row.request,
                    contexts=row.contexts,
                    expected_output=row.expected_output,
                    turns=turns,
                    system_prompt=row.system_prompt,
                ),
                row.user_id,
                row.session_id,
            )
        )
        position += 1
        # Every text written counts, metadata too: a wide file's rows are mostly metadata, and the
        # transaction that inserts a batch lasts as long as its text takes to write.
        chars += (
            len(row.request)
            + len(row.response)
            + len(row.expected_output)
            + len(row.system_prompt)
            + _text_length(row.contexts)
            + _text_length(turns)
            + _text_length(row.metadata)
        )
        if len(batch) >= batch_rows or chars >= WRITE_BATCH_CHARS:
            yield batch
            batch = []
            chars = 0
    if batch:
        yield batch


def _text_length(value: Any) -> int:
    """About the characters a JSON value writes: its strings and keys (other scalars count 8).

    Read from the parsed value, not the adapted one, so every backend counts alike (PostgreSQL adapts
    JSON to an object, SQLite to text). Nesting is bounded by DOCKET_MAX_JSON_DEPTH at ingest.
    """
    if value is None:
        return 0
    if isinstance(value, str):
        return len(value)
    if isinstance(value, dict):
        return sum(len(str(key)) + _text_length(item) for key, item in value.items())
    if isinstance(value, list | tuple):
        return sum(_text_length(item) for item in value)
    return 8


_EXAMPLE_COLUMNS = (
    "dataset",
    "position",
    "source_line",
    "request",
    "response",
    "contexts",
    "expected_output",
    "turns",
    "system_prompt",
    "metadata",
    "input_key",
    "user_id",
    "session_id",
)


def _example_table_columns() -> str:
    quote = connection.ops.quote_name
    fields = [Example._meta.get_field(name) for name in _EXAMPLE_COLUMNS]
    columns = ", ".join(
        quote(field.column or field.name) for field in fields if isinstance(field, models.Field)
    )
    return f"{quote(Example._meta.db_table)} ({columns})"


def _insert_examples_sql() -> str:
    placeholders = ", ".join(["%s"] * len(_EXAMPLE_COLUMNS))
    return f"INSERT INTO {_example_table_columns()} VALUES ({placeholders})"


def _copy_examples_sql() -> str:
    return f"COPY {_example_table_columns()} FROM STDIN"


def _json_adapter() -> Callable[[Any], Any]:
    """What JSONField does to a value before saving it, for this database: json.dumps() text on SQLite,
    a Jsonb object on PostgreSQL. The same text a model save writes, so every row reads alike.

    An encoder cached through private stdlib API saved 0.6 s per 300,000 rows, and orjson (other text:
    no spaces, no \\u escapes) 0.9 s, of an import that takes 10-15 s (bench/ingest.py): not worth it.
    """
    adapt = connection.ops.adapt_json_value
    return lambda value: adapt(value, None)


def _write_examples(dataset_id: int, params: list[ExampleParams]) -> None:
    """Insert one batch of rows in one transaction with the progress count: COPY on PostgreSQL, one
    executemany elsewhere.

    bulk_create builds a model instance per row and prepares each value through its field, which cost
    5x the SQLite work itself (bench/ingest.py); this writes the same columns, with JSON adapted as
    JSONField would. A dataset deleted meanwhile stops the import here.
    """
    with transaction.atomic():
        updated = Dataset.objects.filter(pk=dataset_id, status=Dataset.Status.IMPORTING).update(
            rows_done=F("rows_done") + len(params)
        )
        if not updated:
            raise ImportCancelled
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                # COPY streams the rows in one statement, through the same adapters as a query's
                # parameters (Jsonb for JSON). Importing 100,000 rows took 23-26 s and 3.2 s of Python CPU,
                # against 34-36 s and 5.0-5.4 s with executemany (the import path, a loaded machine).
                with cursor.copy(_copy_examples_sql()) as copy:
                    for row in params:
                        copy.write_row(row)
            else:
                cursor.executemany(_insert_examples_sql(), params)


def delete_examples(dataset_id: int, *, chunk: int = 5000) -> None:
    """Delete a dataset's rows in bounded transactions, by position range (no rows are loaded).

    Plain SQL because QuerySet.delete() loads every row to look for Items pointing at them; a dataset
    being deleted has no runs (Run.dataset is PROTECT), so no Items do.
    """
    table = connection.ops.quote_name(Example._meta.db_table)
    last = (
        Example.objects.filter(dataset_id=dataset_id)
        .order_by("-position")
        .values_list("position", flat=True)
        .first()
    )
    if last is None:
        return
    for start in range(0, last + 1, chunk):
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                f"DELETE FROM {table} WHERE dataset_id = %s AND position >= %s AND position < %s",  # noqa: S608
                [dataset_id, start, start + chunk],
            )
