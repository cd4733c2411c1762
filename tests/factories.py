"""Builders of test data shared by every suite: a judge and a finished run made directly in the database."""

from __future__ import annotations

import itertools
import math
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.utils import timezone

from evals.client import Batch, JudgeAPI
from evals.models import Dataset, Example, Item, Judge, RemoteBatch, Run, Score
from evals.pump import pump
from evals.services.reviews import review_save
from tests.conftest import subprocess_database_url

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


def judge_batches_by_tag(run: Run) -> Counter[str]:
    """What the offline judge's own batch list says it created for this run."""
    with JudgeAPI.from_settings() as api:
        tags = [
            tag for batch in api.list_batches() for tag in batch.tags if tag.startswith(f"docket:{run.uid}:")
        ]
    return Counter(tags)


def assert_counts_match_items(run: Run) -> None:
    statuses = Counter(run.items.values_list("status", flat=True))
    assert run.completed_count == statuses[Item.Status.COMPLETED]
    assert run.failed_count == statuses[Item.Status.FAILED]
    assert run.cancelled_count == statuses[Item.Status.CANCELLED]
    assert run.total_count == sum(statuses.values())


# --- from tests/evals/test_worker_e2e.py ---


def start_worker(judge_url: str, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **{key: value for key, value in os.environ.items() if not key.startswith(("DOCKET_", "SCORABLE_"))},
        "DATABASE_URL": subprocess_database_url(),
        "SCORABLE_API_URL": judge_url,
        "SCORABLE_API_KEY": settings.OFFLINE_JUDGE_API_KEY,
        # The key this test process signs its tasks with: on a checkout where `ensure_var` never ran, each
        # process makes up its own, and the worker would refuse every task until the watchdog woke a pump.
        "SECRET_KEY": settings.SECRET_KEY,
        "JUDGE_API_TIMEOUT": "1",
        "DOCKET_POLL_MIN_SECONDS": "0.2",
        "DOCKET_POLL_MAX_SECONDS": "1",
        "DOCKET_BACKOFF_MAX_SECONDS": "1",
        "DOCKET_WORKERS": "2",
    }
    return subprocess.Popen(
        [sys.executable, str(Path(settings.BASE_DIR) / "manage.py"), "qcluster"],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        # To the cluster's main process only: it stops its workers itself (a group-wide TERM stalls it).
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def items_of(run: Run) -> list[Item]:
    return list(Item.objects.filter(run=run).order_by("position"))


NAME = "Helpfulness"


def review_all(
    run: Run,
    labels: Sequence[str | None],
    *,
    reviewer: AbstractBaseUser,
    evaluator: str = NAME,
    scores: Sequence[float | None] | None = None,
) -> None:
    """One review by `reviewer` per item of the run in row order; None leaves an item unreviewed."""
    for index, (item, label) in enumerate(zip(items_of(run), labels, strict=False)):
        if label is None:
            continue
        score = scores[index] if scores is not None else None
        review_save(item=item, evaluator=evaluator, reviewer=reviewer, label=label, score=score)


def worked_example_run() -> Run:
    """50 items: the judge passes the first 25 (score 0.8) and fails the rest (0.2), threshold 0.5."""
    return build_run({NAME: [0.8] * 25 + [0.2] * 25}, thresholds={NAME: 0.5})


# The 2x2 table of the worked example: a = 20 both pass, b = 5 judge pass / reviewer fail,
# c = 10 judge fail / reviewer pass, d = 15 both fail.
WORKED_LABELS = ["pass"] * 20 + ["fail"] * 5 + ["pass"] * 10 + ["fail"] * 15


QUESTIONS = [f"What is the refund policy for order {number}?" for number in range(100)]


def run_over(
    questions: Sequence[str],
    *,
    judge: Judge | None = None,
    scores: dict[str, Sequence[float | None]] | None = None,
    name: str = "",
    responses: Sequence[str] | None = None,
) -> Run:
    """A finished run over a new dataset with these questions (the rows pair by a hash of the question)."""
    return build_run(
        scores or {"Politeness": [0.5] * len(questions)},
        requests=questions,
        responses=responses,
        judge=judge or make_judge(evaluators=["Politeness"]),
        name=name,
    )


def finish(run: Run) -> Run:
    for _ in range(20):
        pump(budget_seconds=30, concurrency=1, requeue=False)
        run.refresh_from_db()
        if run.is_finished:
            return run
    raise AssertionError("run did not finish")


def finished_remotely(api: JudgeAPI, batch: RemoteBatch) -> Batch:
    """The offline judge runs items as time passes (1 ms each here): ask until it says it is done."""
    for _ in range(10_000):
        remote = api.get_batch(batch.remote_id)
        if remote.is_finished:
            return remote
    raise AssertionError("the offline judge never finished the batch")
