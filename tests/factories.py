"""Builders of test data shared by every suite: a judge and a finished run made directly in the database."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any

from django.utils import timezone

from evals.models import Dataset, Example, Item, Judge, RemoteBatch, Run, Score
from evals.pump import pump

_judges = itertools.count(1)


def make_judge(name: str = "Hand judge", *, version: str = "v1", evaluators: Sequence[str] = ()) -> Judge:
    return Judge.objects.create(
        api_url="http://127.0.0.1:8000/judge-api",
        remote_id=f"judge-{next(_judges)}",
        source=Judge.Source.OFFLINE,
        name=name,
        version_id=version,
        evaluators=[{"name": evaluator} for evaluator in evaluators],
    )


def build_run(
    scores: dict[str, Sequence[float | None]],
    *,
    dataset: Dataset | None = None,
    judge: Judge | None = None,
    name: str = "",
    requests: Sequence[str] | None = None,
    responses: Sequence[str] | None = None,
    metadata: Callable[[int], dict[str, Any]] | None = None,
    justification: Callable[[str, int, float], str] | None = None,
    example_fields: Callable[[int], dict[str, Any]] | None = None,
    retry_of: Run | None = None,
    positions: Sequence[int] | None = None,
    chunk: int = 5_000,
    thresholds: dict[str, float] | None = None,
) -> Run:
    """A finished run with these scores per evaluator (None: no score; a row with none at all failed).

    Everything goes in with bulk_create, so 20,000 items take seconds, not a pump's minutes.
    `thresholds`: what the run learned from the judge's log (without: not learned yet, "pending").
    """
    evaluators = list(scores)
    rows = len(next(iter(scores.values()))) if scores else 0
    if positions is None:
        positions = range(rows)
    if dataset is None:
        columns = sorted(metadata(0)) if metadata and rows else []
        dataset = Dataset.objects.create(
            name=f"{name or 'hand'} rows",
            row_count=rows,
            status=Dataset.Status.READY,
            metadata_columns=columns,
        )
        examples = []
        for position in range(rows):
            fields = {
                "request": requests[position]
                if requests
                else f"How do I reset my password? (row {position})",
                "response": responses[position]
                if responses
                else f"Open Settings, then Security ({position}).",
                "contexts": [],
                "expected_output": "",
                "turns": None,
                "system_prompt": "",
                **(example_fields(position) if example_fields else {}),
            }
            examples.append(
                Example(
                    dataset=dataset,
                    position=position,
                    metadata=metadata(position) if metadata else {},
                    input_key=Example.make_input_key(**{k: v for k, v in fields.items() if k != "response"}),
                    **fields,
                )
            )
            if len(examples) >= chunk:
                Example.objects.bulk_create(examples)
                examples = []
        Example.objects.bulk_create(examples)
    if judge is None:
        judge = make_judge(evaluators=evaluators)
    summary: dict[str, dict[str, float]] = {}
    for evaluator, values in scores.items():
        present = [value for value in values if value is not None]
        if present:
            summary[evaluator] = {
                "n": len(present),
                "sum": sum(present),
                "min": min(present),
                "max": max(present),
            }
    failed = sum(1 for index in range(rows) if all(scores[e][index] is None for e in evaluators))
    run = Run.objects.create(
        name=name,
        dataset=dataset,
        judge=judge,
        judge_version_id=judge.version_id,
        status=Run.Status.PARTIAL if failed else Run.Status.COMPLETED,
        total_count=rows,
        completed_count=rows - failed,
        failed_count=failed,
        evaluators=evaluators,
        score_summary=summary,
        retry_of=retry_of,
        thresholds=thresholds or {},
        thresholds_learned_at=timezone.now() if thresholds is not None else None,
    )
    batches = RemoteBatch.objects.bulk_create(
        RemoteBatch(
            run=run, position=index, size=min(100, rows - index * 100), status=RemoteBatch.Status.COMPLETED
        )
        for index in range(math.ceil(rows / 100))
    )
    example_ids = dict(Example.objects.filter(dataset=dataset).values_list("position", "id"))
    for start in range(0, rows, chunk):
        items = []
        for index in range(start, min(start + chunk, rows)):
            position = positions[index]
            ok = any(scores[e][index] is not None for e in evaluators)
            items.append(
                Item(
                    run=run,
                    example_id=example_ids[position],
                    batch=batches[index // 100],
                    position=position,
                    index_in_batch=index % 100,
                    status=Item.Status.COMPLETED if ok else Item.Status.FAILED,
                    error_message="" if ok else "The judge could not score this row.",
                    execution_log_id=f"log-{run.pk}-{position}" if ok else "",
                )
            )
        created = Item.objects.bulk_create(items)
        score_rows = []
        for offset, item in enumerate(created):
            index = start + offset
            for evaluator in evaluators:
                value = scores[evaluator][index]
                if value is None:
                    continue
                text = (
                    justification(evaluator, item.position, value)
                    if justification
                    else f"{evaluator}: {value}"
                )
                score_rows.append(
                    Score(
                        item=item,
                        run=run,
                        evaluator_name=evaluator,
                        score=value,
                        justification=text,
                        confidence=0.9,
                    )
                )
        Score.objects.bulk_create(score_rows, batch_size=2_000)
    return run


# --- Student's t ---------------------------------------------------------------------------------------


def pump_until_finished(run: Run, *, rounds: int = 20, concurrency: int = 1) -> Run:
    for _ in range(rounds):
        pump(budget_seconds=30, concurrency=concurrency, requeue=False)
        run.refresh_from_db()
        if run.is_finished:
            return run
    raise AssertionError(f"run did not finish: {run.status}, {run.done_count}/{run.total_count}")
