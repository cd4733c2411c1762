"""The reviewed items of one run (or of every run of its judge) as a calibration set, CSV or JSON Lines.

One record per (item, evaluator) that a person reviewed: the example's inputs, the human verdict as the
expected answer, and what the judge said. Where several people reviewed the same score, the verdict is
the review that counts everywhere else (`reviews.human_verdicts`: the most recently changed one);
`reviews` says how many there were. `expected_score` is the reviewer's corrected score, else 1 for a
pass and 0 for a fail: a column a judge platform can take as the target.

Items are read a page at a time in (run, position) order and the records leave a page at a time, so
memory stays flat however many reviews there are. CSV text cells go through `export.neutralise`, as
every other export of Docket's, so a request reading "=HYPERLINK(...)" stays text in a spreadsheet.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator, Sequence
from typing import Any

from django.db.models import Exists, OuterRef
from django.utils.text import slugify

from evals.models import Item, Judge, Review, Run, Score
from evals.selectors.export import FORMATS, neutralise
from evals.services.calibration import calibration_run_ids
from evals.services.reviews import HumanVerdict, human_verdicts

COLUMNS = (
    "request",
    "response",
    "contexts",
    "expected_output",
    "system_prompt",
    "turns",
    "evaluator",
    "expected_score",
    "human_label",
    "judge_score",
    "judge_label",
    "reviewer",
    "comment",
    "reviews",
    "run",
    "position",
    "key",
)
# Items per query: their examples, scores and reviews are read together.
ITEMS_PER_PAGE = 200


class CalibrationSetError(ValueError):
    """A calibration set that cannot be made as asked; the message is for the user."""


def calibration_runs(*, run: Run, pooled: bool) -> list[Run]:
    """The runs whose reviews a calibration set (and report) of `run` counts: `run` alone, or with
    `pooled` every run of the same judge that has reviews (and `run` itself), oldest first."""
    if not pooled:
        return [run]
    ids = calibration_run_ids(run, pooled=True)
    runs = {other.pk: other for other in Run.objects.filter(pk__in=ids).select_related("judge")}
    runs[run.pk] = run
    return [runs[pk] for pk in ids]


def judge_runs(judge: Judge) -> list[Run]:
    """Every run of `judge` that has reviews, oldest first."""
    reviewed = Exists(Review.objects.filter(run=OuterRef("pk")))
    return list(Run.objects.filter(judge=judge).filter(reviewed).order_by("pk"))


def judge_lookup(wanted: str) -> Judge:
    """The judge `wanted` names (Docket's id for it, its remote id, or its name in any case), among every
    judge Docket knows: reviews outlive a judge's listing, and an export never calls the judge API."""
    wanted = wanted.strip()
    if wanted.isascii() and wanted.isdigit() and len(wanted) <= 18:
        by_id = Judge.objects.filter(pk=int(wanted)).first()
        if by_id is not None:
            return by_id
    found = list(Judge.objects.filter(remote_id=wanted)) or list(Judge.objects.filter(name__iexact=wanted))
    if not found:
        raise CalibrationSetError(f'No judge is called "{wanted[:100]}".')
    if len(found) > 1:
        ids = ", ".join(str(judge.pk) for judge in found)
        raise CalibrationSetError(
            f'"{wanted[:100]}" names {len(found)} judges (ids {ids}); give the id instead.'
        )
    return found[0]


def reviewed_evaluators(runs: Sequence[Run]) -> list[str]:
    """The evaluators these runs have, in the first run's order, then the others' new ones."""
    names: dict[str, None] = {}
    for run in runs:
        names.update(dict.fromkeys(run.evaluators))
    return list(names)


def calibration_set_filename(*, run: Run, pooled: bool, fmt: str, evaluator: str | None = None) -> str:
    """ASCII, no quotes: safe in any Content-Disposition header and file system."""
    if pooled:
        parts = ["docket-judge", str(run.judge_id), slugify(run.judge.name)[:60].strip("-")]
    else:
        parts = ["docket-run", str(run.pk), slugify(run.name)[:60].strip("-")]
    if evaluator:
        parts.append(slugify(evaluator)[:40].strip("-"))
    parts.append("calibration-set")
    return "-".join(part for part in parts if part) + f".{fmt}"


def calibration_set_stream(*, runs: Sequence[Run], fmt: str, evaluator: str | None = None) -> Iterator[str]:
    """The calibration set as pieces of text, produced as they are read: hand it to a streaming response.

    `evaluator` keeps only that evaluator's records. Raises CalibrationSetError for an unknown format
    (at once, before anything is written).
    """
    if fmt not in FORMATS:
        raise CalibrationSetError(f'Unknown format "{fmt[:40]}": choose csv or jsonl.')
    records = _records(runs, evaluator)
    return _csv_stream(records) if fmt == "csv" else _jsonl_stream(records)


def calibration_set_size(*, runs: Sequence[Run], evaluator: str | None = None) -> int:
    """How many records the calibration set of these runs holds: reviewed (item, evaluator) pairs."""
    reviews = Review.objects.filter(run__in=[run.pk for run in runs])
    if evaluator is not None:
        reviews = reviews.filter(evaluator_name=evaluator)
    return reviews.order_by().values("item_id", "evaluator_name").distinct().count()


def _records(runs: Sequence[Run], evaluator: str | None) -> Iterator[list[dict[str, Any]]]:
    """The records, a page of items at a time (each page a list of records), runs oldest first."""
    for run in sorted(runs, key=lambda run: run.pk):
        order = {name: index for index, name in enumerate(run.evaluators)}
        for items, judge_scores in _reviewed_item_pages(run, evaluator):
            verdicts = human_verdicts(item.pk for item in items)
            by_item: dict[int, list[str]] = {item.pk: [] for item in items}
            for item_id, name in verdicts:
                if evaluator in (None, name):
                    by_item[item_id].append(name)
            yield [
                _record(run, item, name, verdicts[(item.pk, name)], judge_scores[item.pk].get(name))
                for item in items
                for name in sorted(by_item[item.pk], key=lambda name: (order.get(name, len(order)), name))
            ]


def _reviewed_item_pages(
    run: Run, evaluator: str | None
) -> Iterator[tuple[list[Item], dict[int, dict[str, float | None]]]]:
    """The run's items with a review (of `evaluator`, when given), a page at a time by position, with
    the judge's scores of each: {item id: {evaluator: score}}."""
    reviews = Review.objects.filter(item=OuterRef("pk"))
    if evaluator is not None:
        reviews = reviews.filter(evaluator_name=evaluator)
    items = (
        Item.objects.filter(run=run).filter(Exists(reviews)).select_related("example").order_by("position")
    )
    after = -1
    while True:
        page = list(items.filter(position__gt=after)[:ITEMS_PER_PAGE])
        if not page:
            return
        judge_scores: dict[int, dict[str, float | None]] = {item.pk: {} for item in page}
        scores = Score.objects.filter(item_id__in=list(judge_scores))
        if evaluator is not None:
            scores = scores.filter(evaluator_name=evaluator)
        for item_id, name, value in scores.values_list("item_id", "evaluator_name", "score"):
            judge_scores[item_id][name] = value
        yield page, judge_scores
        if len(page) < ITEMS_PER_PAGE:
            return
        after = page[-1].position


def _record(
    run: Run, item: Item, name: str, verdict: HumanVerdict, judge_score: float | None
) -> dict[str, Any]:
    example = item.example
    passed = run.passes(name, judge_score)
    return {
        "request": example.request,
        "response": example.response,
        "contexts": list(example.contexts or []),
        "expected_output": example.expected_output,
        "system_prompt": example.system_prompt,
        "turns": example.turns,
        "evaluator": name,
        # The target a judge platform learns from: the reviewer's own score, else the verdict as 1 or 0.
        "expected_score": verdict.score if verdict.score is not None else (1.0 if verdict.passed else 0.0),
        "human_label": verdict.label,
        "judge_score": judge_score,
        "judge_label": None if passed is None else ("pass" if passed else "fail"),
        "reviewer": verdict.reviewer,
        "comment": verdict.comment,
        "reviews": verdict.reviews,
        "run": run.pk,
        "position": item.position + 1,
        "key": example.key,
    }


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value
    if isinstance(value, list | dict):
        return neutralise(json.dumps(value, ensure_ascii=False)) if value else ""
    return neutralise(str(value))


def _csv_stream(pages: Iterator[list[dict[str, Any]]]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(COLUMNS)
    yield _drain(buffer)
    for records in pages:
        for record in records:
            writer.writerow([_csv_cell(record[column]) for column in COLUMNS])
        if records:
            yield _drain(buffer)


def _jsonl_stream(pages: Iterator[list[dict[str, Any]]]) -> Iterator[str]:
    for records in pages:
        if records:
            yield "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records)


def _drain(buffer: io.StringIO) -> str:
    text = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate(0)
    return text
