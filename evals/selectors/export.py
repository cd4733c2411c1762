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

Reviews. When people reviewed scores of the run, each score carries the review that counts (the most
recently changed one, `human_verdicts`): CSV columns `<name> human label`, `<name> human score`,
`<name> reviewer`, `<name> review comment`; in JSON Lines a `review` object per score ({label, score,
reviewer, comment, reviews}, null where nobody reviewed it). A run nobody reviewed exports exactly as
before. Who reviewed and what they wrote go with the internal ids: a share link never gets them (its
export keeps the human label and score). With `corrected` the file says so in its name and each score
also carries its value with human corrections (`<name> corrected score`, `corrected_score`): the
reviewer's corrected score where the review that counts gave one, else the judge's.

Cost. Once the judge's logs gave the run (or, in the latest-verdict view, one of its retries) a cost,
each row carries what it cost: CSV columns `cost` (the item) and `<name> cost` (each evaluator's share);
in JSON Lines `cost` per record and `cost` inside each score. Empty (null) where the item's cost is not
known. A run with no known cost exports exactly as before.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from django.utils.text import slugify

from evals.models import Item, Review, Run
from evals.selectors.results import ResultsQuery, results_iter
from evals.selectors.runs import run_chain
from evals.selectors.visibility import ALL, TEXT_FIELDS, Visibility
from evals.services.reviews import HumanVerdict, human_verdicts

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


# Per evaluator, after its score and justification: the review that counts, when the run has reviews.
REVIEW_COLUMNS = ("human label", "human score", "reviewer", "review comment")
# ...and the score with human corrections, when asked for.
CORRECTED_COLUMN = "corrected score"
# What the item cost, and each evaluator's share, once the run has a known cost.
COST_COLUMN = "cost"
# What a share link may not see of a review: who wrote it, and what they wrote (it may quote the text).
PRIVATE_REVIEW_COLUMNS = ("reviewer", "review comment")
PRIVATE_REVIEW_KEYS = ("reviewer", "comment")


class ExportError(ValueError):
    """An export that cannot be made as asked; the message is for the user."""


def neutralise(value: str) -> str:
    """A text cell a spreadsheet will show as text, never run as a formula."""
    return "'" + value if value.startswith(FORMULA_STARTS) else value


def evaluator_headers(
    name: str, *, reviews: bool = False, corrected: bool = False, costs: bool = False
) -> list[str]:
    """One evaluator's columns: score and justification, its cost, then the corrected score and the review."""
    headers = [f"{name} score", f"{name} justification"]
    if costs:
        headers.append(f"{name} {COST_COLUMN}")
    if corrected:
        headers.append(f"{name} {CORRECTED_COLUMN}")
    if reviews:
        headers += [f"{name} {column}" for column in REVIEW_COLUMNS]
    return headers


def metadata_headers(
    run: Run, evaluators: list[str], *, reviews: bool = False, corrected: bool = False, costs: bool = False
) -> list[tuple[str, str]]:
    """(metadata column, CSV header): the column's own name unless it would clash with another header."""
    taken = set(FIXED_COLUMNS)
    if costs:
        taken.add(COST_COLUMN)
    for name in evaluators:
        taken.update(evaluator_headers(name, reviews=reviews, corrected=corrected, costs=costs))
    return [
        (column, f"metadata.{column}" if column in taken else column)
        for column in run.dataset.metadata_columns
    ]


def export_headers(
    run: Run,
    visibility: Visibility = ALL,
    *,
    reviews: bool = False,
    corrected: bool = False,
    costs: bool = False,
) -> list[str]:
    """The CSV header; `reviews`: the run has reviews (their columns), `corrected`: the corrected scores,
    `costs`: the run has a known cost (the item's and each evaluator's)."""
    evaluators = list(run.evaluators)
    headers = list(FIXED_COLUMNS)
    if costs:
        headers.append(COST_COLUMN)
    headers += [
        header
        for _, header in metadata_headers(run, evaluators, reviews=reviews, corrected=corrected, costs=costs)
    ]
    for name in evaluators:
        headers += evaluator_headers(name, reviews=reviews, corrected=corrected, costs=costs)
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
        # Who reviewed goes with who started the run: a share link sees neither, nor the comments.
        hidden.update(f"{name} {column}" for name in run.evaluators for column in PRIVATE_REVIEW_COLUMNS)
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
    for verdict in record["scores"].values():
        if not visibility.justifications:
            verdict.pop("justification", None)
        if not visibility.internal_ids and verdict.get("review"):
            for key in PRIVATE_REVIEW_KEYS:
                verdict["review"].pop(key, None)
    return record


def export_has_reviews(run: Run, query: ResultsQuery) -> bool:
    """Whether any item the export may hold was reviewed (across the retries in the latest-verdict view)."""
    runs = run_chain(run) if query.latest else [run.pk]
    return Review.objects.filter(run_id__in=runs).exists()


def export_has_costs(run: Run, query: ResultsQuery) -> bool:
    """Whether the judge's logs gave a cost to any item the export may hold (the run's totals say so)."""
    runs = run_chain(run) if query.latest else [run.pk]
    return Run.objects.filter(pk__in=runs, cost_items__gt=0).exists()


def export_filename(run: Run, fmt: str, *, query: ResultsQuery | None = None, corrected: bool = False) -> str:
    """A file name safe in any Content-Disposition header and any file system: ASCII, no quotes."""
    slug = slugify(run.name)[:60].strip("-")
    parts = ["docket-run", str(run.pk)]
    if slug:
        parts.append(slug)
    if query is not None and query.is_filtered:
        parts.append("filtered")
    if query is not None and query.latest:
        parts.append("latest")
    if corrected:
        parts.append("corrected")
    return "-".join(parts) + f".{fmt}"


def _review(verdict: HumanVerdict | None) -> dict[str, Any] | None:
    if verdict is None:
        return None
    return {
        "label": verdict.label,
        "score": verdict.score,
        "reviewer": verdict.reviewer,
        "comment": verdict.comment,
        "reviews": verdict.reviews,
    }


def _record(
    item: Item,
    evaluators: list[str],
    metadata: list[tuple[str, str]],
    *,
    verdicts: dict[tuple[int, str], HumanVerdict] | None = None,
    corrected: bool = False,
    costs: bool = False,
) -> dict[str, Any]:
    """One item as a JSON Lines record; `verdicts` (the run has reviews): each score's review too;
    `costs`: what the item cost, and each evaluator's share."""
    example = item.example
    scores = {score.evaluator_name: score for score in item.scores.all()}
    # Prefetched scores point back at their item: a reference cycle that only the garbage collector
    # frees, several pages later. Dropping the cache frees each item as soon as it is written.
    getattr(item, "_prefetched_objects_cache", {}).clear()
    # Evaluators the run did not list up front (rare: added as seen) still get their columns in JSONL.
    names = evaluators + sorted(name for name in scores if name not in evaluators)
    verdicts_by_name: dict[str, dict[str, Any]] = {
        name: _verdict(item, name, scores, verdicts, corrected=corrected) for name in names
    }
    record: dict[str, Any] = {
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
        "scores": verdicts_by_name,
    }
    if costs:
        record["cost"] = item.cost
        shares = item.evaluator_costs if isinstance(item.evaluator_costs, dict) else {}
        for name, entry in verdicts_by_name.items():
            entry["cost"] = shares.get(name)
    return record


def _verdict(
    item: Item,
    name: str,
    scores: dict[str, Any],
    verdicts: dict[tuple[int, str], HumanVerdict] | None,
    *,
    corrected: bool,
) -> dict[str, Any]:
    score = scores[name].score if name in scores else None
    entry: dict[str, Any] = {
        "score": score,
        "justification": scores[name].justification if name in scores else "",
    }
    verdict = verdicts.get((item.pk, name)) if verdicts is not None else None
    if corrected:
        entry["corrected_score"] = verdict.score if verdict and verdict.score is not None else score
    if verdicts is not None:
        entry["review"] = _review(verdict)
    return entry


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


def _csv_row(
    record: dict[str, Any],
    evaluators: list[str],
    metadata: list[tuple[str, str]],
    *,
    reviews: bool = False,
    corrected: bool = False,
    costs: bool = False,
) -> list[Any]:
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
    if costs:
        row.append(_csv_cell(record.get("cost")))
    row += [_csv_cell(record["metadata"].get(column)) for column, _ in metadata]
    for name in evaluators:
        verdict = record["scores"].get(name) or {}
        row.append(_csv_cell(verdict.get("score")))
        row.append(_csv_cell(verdict.get("justification", "")))
        if costs:
            row.append(_csv_cell(verdict.get("cost")))
        if corrected:
            row.append(_csv_cell(verdict.get("corrected_score")))
        if reviews:
            review = verdict.get("review") or {}
            row += [_csv_cell(review.get(key)) for key in ("label", "score", "reviewer", "comment")]
    return row


def export_stream(run: Run, query: ResultsQuery, *, fmt: str, corrected: bool = False) -> Iterator[str]:
    """The export as pieces of text, produced as they are read: hand it to a streaming response.

    `corrected`: each score also with human corrections (and the file name says so: `export_filename`).
    """
    if fmt not in FORMATS:
        raise ExportError(f'Unknown format "{fmt}": choose csv or jsonl.')
    evaluators = list(run.evaluators)
    reviews = export_has_reviews(run, query)
    costs = export_has_costs(run, query)
    shape = _Shape(
        evaluators=evaluators,
        metadata=metadata_headers(run, evaluators, reviews=reviews, corrected=corrected, costs=costs),
        reviews=reviews,
        corrected=corrected,
        costs=costs,
    )
    return _csv_stream(run, query, shape) if fmt == "csv" else _jsonl_stream(run, query, shape)


@dataclass(frozen=True)
class _Shape:
    """What each record holds: the run's evaluators and metadata columns, the reviews, the corrected scores."""

    evaluators: list[str]
    metadata: list[tuple[str, str]]
    reviews: bool
    corrected: bool
    costs: bool = False


def _records(run: Run, query: ResultsQuery, shape: _Shape) -> Iterator[dict[str, Any]]:
    """The view's items as records, in order; with reviews, a chunk of items shares one query for them."""
    items = results_iter(run, query)
    if not shape.reviews and not shape.corrected:
        for item in items:
            yield _record(item, shape.evaluators, shape.metadata, costs=shape.costs)
        return
    chunk: list[Item] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= ROWS_PER_CHUNK:
            yield from _chunk_records(chunk, shape)
            chunk = []
    yield from _chunk_records(chunk, shape)


def _chunk_records(items: list[Item], shape: _Shape) -> Iterator[dict[str, Any]]:
    verdicts = human_verdicts(item.pk for item in items) if shape.reviews and items else {}
    for item in items:
        yield _record(
            item,
            shape.evaluators,
            shape.metadata,
            verdicts=verdicts if shape.reviews else None,
            corrected=shape.corrected,
            costs=shape.costs,
        )


def _csv_stream(run: Run, query: ResultsQuery, shape: _Shape) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    headers = export_headers(run, reviews=shape.reviews, corrected=shape.corrected, costs=shape.costs)
    hidden = hidden_columns(run, query.visibility)
    kept = [index for index, header in enumerate(headers) if header not in hidden]
    writer.writerow([neutralise(headers[index]) for index in kept])
    for rows, record in enumerate(_records(run, query, shape), start=1):
        row = _csv_row(
            record,
            shape.evaluators,
            shape.metadata,
            reviews=shape.reviews,
            corrected=shape.corrected,
            costs=shape.costs,
        )
        writer.writerow([row[index] for index in kept])
        if rows % ROWS_PER_CHUNK == 0:
            yield _drain(buffer)
    yield _drain(buffer)


def _jsonl_stream(run: Run, query: ResultsQuery, shape: _Shape) -> Iterator[str]:
    pieces: list[str] = []
    for record in _records(run, query, shape):
        pieces.append(json.dumps(_visible(record, query.visibility), ensure_ascii=False) + "\n")
        if len(pieces) >= ROWS_PER_CHUNK:
            yield "".join(pieces)
            pieces = []
    yield "".join(pieces)


def _drain(buffer: io.StringIO) -> str:
    text = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate(0)
    return text
