"""Export a run's results (the whole run or a filtered view) as CSV or JSON Lines, streamed.

Rows come from `results_iter`, a page of items at a time in the view's order, and leave as text a
batch of rows at a time: memory stays the same for 1,000 or 1,000,000 items.

Spreadsheet formulas: a CSV text cell that begins with `=`, `+`, `-`, `@`, a tab or a carriage return
would run as a formula in Excel, LibreOffice or Google Sheets, so it is written with a leading `'`
(OWASP's "CSV injection" advice). Only text cells are touched: scores, positions and numeric metadata
are written as numbers, so `-0.5` stays a number a spreadsheet can add up, while a response that
reads "-0.5" is text and gets its `'`. JSON Lines is data, not a spreadsheet, and is left as it is.

An export holds what its reader may see (`query.visibility`): through a share link that hides the text
the text columns are left out (the rows never held it), and so are the justification columns unless the
link shows them; a share link never gets the execution log ids.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import Any

from django.utils.text import slugify

from evals.models import Item, Run
from evals.selectors import ALL, TEXT_FIELDS, ResultsQuery, Visibility, results_iter

FORMATS = ("csv", "jsonl")
CONTENT_TYPES = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson; charset=utf-8"}
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# Rows per piece of output: fewer, larger writes, still a few hundred kilobytes at most.
ROWS_PER_CHUNK = 200

FIXED_COLUMNS = (
    "position",
    # The key column mapped at upload ("" for rows paired by a hash of their inputs): joins exports of
    # two uploads row by row, as compare pairs them.
    "key",
    "request",
    "response",
    "contexts",
    "expected_output",
    "turns",
    "system_prompt",
    "status",
    "error",
    "execution_log_id",
)


class ExportError(ValueError):
    """An export that cannot be made as asked; the message is for the user."""


def neutralise(value: str) -> str:
    """A text cell a spreadsheet will show as text, never run as a formula."""
    return "'" + value if value.startswith(FORMULA_STARTS) else value


def metadata_headers(run: Run, evaluators: list[str]) -> list[tuple[str, str]]:
    """(metadata column, CSV header): the column's own name unless it would clash with another header."""
    taken = set(FIXED_COLUMNS)
    for name in evaluators:
        taken.update({f"{name} score", f"{name} justification"})
    return [
        (column, f"metadata.{column}" if column in taken else column)
        for column in run.dataset.metadata_columns
    ]


def export_headers(run: Run, visibility: Visibility = ALL) -> list[str]:
    evaluators = list(run.evaluators)
    headers = list(FIXED_COLUMNS)
    headers += [header for _, header in metadata_headers(run, evaluators)]
    for name in evaluators:
        headers += [f"{name} score", f"{name} justification"]
    hidden = hidden_columns(run, visibility)
    return [header for header in headers if header not in hidden]


def hidden_columns(run: Run, visibility: Visibility) -> set[str]:
    """The headers (and JSON Lines keys) left out for a reader who may not see them.

    No metadata column can clash with these: `metadata_headers` renames any that would.
    """
    hidden: set[str] = set()
    if not visibility.texts:
        hidden.update((*TEXT_FIELDS, "key"))
    if not visibility.internal_ids:
        hidden.add("execution_log_id")
    if not visibility.justifications:
        hidden.update(f"{name} justification" for name in run.evaluators)
    return hidden


def _visible(record: dict[str, Any], visibility: Visibility) -> dict[str, Any]:
    """A JSON Lines record without the keys its reader may not see."""
    if visibility.everything:
        return record
    hidden = [
        *(() if visibility.texts else (*TEXT_FIELDS, "key")),
        *(() if visibility.internal_ids else ("execution_log_id",)),
    ]
    for key in hidden:
        record.pop(key, None)
    if not visibility.justifications:
        for verdict in record["scores"].values():
            verdict.pop("justification", None)
    return record


def export_filename(run: Run, fmt: str, *, query: ResultsQuery | None = None) -> str:
    """A file name safe in any Content-Disposition header and any file system: ASCII, no quotes."""
    slug = slugify(run.name)[:60].strip("-")
    parts = ["docket-run", str(run.pk)]
    if slug:
        parts.append(slug)
    if query is not None and query.is_filtered:
        parts.append("filtered")
    if query is not None and query.latest:
        parts.append("latest")
    return "-".join(parts) + f".{fmt}"


def _record(item: Item, evaluators: list[str], metadata: list[tuple[str, str]]) -> dict[str, Any]:
    example = item.example
    scores = {score.evaluator_name: score for score in item.scores.all()}
    # Prefetched scores point back at their item: a reference cycle that only the garbage collector
    # frees, several pages later. Dropping the cache frees each item as soon as it is written.
    getattr(item, "_prefetched_objects_cache", {}).clear()
    # Evaluators the run did not list up front (rare: added as seen) still get their columns in JSONL.
    names = evaluators + sorted(name for name in scores if name not in evaluators)
    return {
        "position": item.position + 1,
        "key": example.key,
        "request": example.request,
        "response": example.response,
        "contexts": list(example.contexts or []),
        "expected_output": example.expected_output,
        "turns": example.turns,
        "system_prompt": example.system_prompt,
        "status": item.status,
        "error": item.error_message,
        "execution_log_id": item.execution_log_id,
        "metadata": {column: (example.metadata or {}).get(column) for column, _ in metadata},
        "scores": {
            name: {
                "score": scores[name].score if name in scores else None,
                "justification": scores[name].justification if name in scores else "",
            }
            for name in names
        },
    }


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return value
    if isinstance(value, list | dict):
        value = json.dumps(value, ensure_ascii=False)
    return neutralise(str(value))


def _csv_row(record: dict[str, Any], evaluators: list[str], metadata: list[tuple[str, str]]) -> list[Any]:
    row: list[Any] = [
        record["position"],
        _csv_cell(record["key"]),
        _csv_cell(record["request"]),
        _csv_cell(record["response"]),
        # Contexts as a JSON list: one cell, and it reads back into the same list.
        _csv_cell(record["contexts"]) if record["contexts"] else "",
        _csv_cell(record["expected_output"]),
        _csv_cell(record["turns"]) if record["turns"] else "",
        _csv_cell(record["system_prompt"]),
        _csv_cell(record["status"]),
        _csv_cell(record["error"]),
        _csv_cell(record["execution_log_id"]),
    ]
    row += [_csv_cell(record["metadata"].get(column)) for column, _ in metadata]
    for name in evaluators:
        verdict = record["scores"].get(name) or {}
        row.append(_csv_cell(verdict.get("score")))
        row.append(_csv_cell(verdict.get("justification", "")))
    return row


def export_stream(run: Run, query: ResultsQuery, *, fmt: str) -> Iterator[str]:
    """The export as pieces of text, produced as they are read: hand it to a streaming response."""
    if fmt not in FORMATS:
        raise ExportError(f'Unknown format "{fmt}": choose csv or jsonl.')
    evaluators = list(run.evaluators)
    metadata = metadata_headers(run, evaluators)
    return (
        _csv_stream(run, query, evaluators, metadata) if fmt == "csv" else _jsonl_stream(run, query, metadata)
    )


def _csv_stream(
    run: Run, query: ResultsQuery, evaluators: list[str], metadata: list[tuple[str, str]]
) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    headers = export_headers(run)
    hidden = hidden_columns(run, query.visibility)
    kept = [index for index, header in enumerate(headers) if header not in hidden]
    writer.writerow([neutralise(headers[index]) for index in kept])
    for rows, item in enumerate(results_iter(run, query), start=1):
        row = _csv_row(_record(item, evaluators, metadata), evaluators, metadata)
        writer.writerow([row[index] for index in kept])
        if rows % ROWS_PER_CHUNK == 0:
            yield _drain(buffer)
    yield _drain(buffer)


def _jsonl_stream(run: Run, query: ResultsQuery, metadata: list[tuple[str, str]]) -> Iterator[str]:
    evaluators = list(run.evaluators)
    pieces: list[str] = []
    for item in results_iter(run, query):
        record = _visible(_record(item, evaluators, metadata), query.visibility)
        pieces.append(json.dumps(record, ensure_ascii=False) + "\n")
        if len(pieces) >= ROWS_PER_CHUNK:
            yield "".join(pieces)
            pieces = []
    yield "".join(pieces)


def _drain(buffer: io.StringIO) -> str:
    text = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate(0)
    return text
