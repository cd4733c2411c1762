"""Runs: check a dataset against a judge, create the run and its remote batches, cancel, retry."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from django.contrib.auth.models import AnonymousUser, User
from django.db import transaction
from django.db.models import Exists, F, OuterRef, Q, QuerySet
from django.utils import timezone

from evals.client import JudgeError
from evals.models import MAX_BATCH_SIZE, Dataset, Example, Item, Judge, RemoteBatch, Run
from evals.services.judges import judge_refresh

INPUT_FIELDS = ("request", "response", "contexts", "expected_output", "turns", "system_prompt")
MAX_TAG_LENGTH = 200
RESERVED_TAG_PREFIX = "docket:"
WRITE_CHUNK = 2_000


class RunError(Exception):
    """A run that cannot be started or changed; the message is for the user."""


@dataclass(frozen=True)
class Preflight:
    rows: int
    batches: int
    batch_size: int
    evaluators: list[str]
    required_inputs: list[str]
    missing_inputs: list[str]
    # Inputs the dataset has for only some rows: those rows will fail at the judge.
    partial_inputs: dict[str, int] = field(default_factory=dict)
    estimated_seconds: float | None = None
    estimate_basis: str = ""

    @property
    def blocked(self) -> bool:
        return bool(self.missing_inputs) or self.rows == 0


def dataset_input_counts(dataset: Dataset) -> dict[str, int]:
    """How many rows carry each judge input field."""
    examples = dataset.examples.all()
    counts = {}
    for name in INPUT_FIELDS:
        if name in ("contexts", "turns"):
            filled = examples.exclude(**{f"{name}__isnull": True}).exclude(**{name: []})
        else:
            filled = examples.exclude(**{name: ""})
        counts[name] = filled.count()
    return counts


def run_preflight(*, dataset: Dataset, judge: Judge, batch_size: int = MAX_BATCH_SIZE) -> Preflight:
    rows = dataset.examples.count()
    counts = dataset_input_counts(dataset) if rows else dict.fromkeys(INPUT_FIELDS, 0)
    required = judge.required_inputs
    # A judge input the dataset has in no row at all blocks the run: every item would fail.
    missing = [name for name in required if name in counts and counts[name] == 0]
    # Turns can stand in for request/response (the judge reads the conversation).
    if counts.get("turns"):
        missing = [name for name in missing if name not in ("request", "response")]
    partial = {name: rows - counts[name] for name in required if name in counts and 0 < counts[name] < rows}
    estimated, basis = _estimate_seconds(judge=judge, rows=rows)
    return Preflight(
        rows=rows,
        batches=math.ceil(rows / batch_size) if rows else 0,
        batch_size=batch_size,
        evaluators=judge.evaluator_names,
        required_inputs=required,
        missing_inputs=missing,
        partial_inputs=partial,
        estimated_seconds=estimated,
        estimate_basis=basis,
    )


def _estimate_seconds(*, judge: Judge, rows: int) -> tuple[float | None, str]:
    """From the throughput of this judge's last finished run, if there is one."""
    last = (
        Run.objects.filter(judge=judge, status__in=[Run.Status.COMPLETED, Run.Status.PARTIAL])
        .exclude(started_at=None)
        .exclude(finished_at=None)
        .filter(completed_count__gte=10)
        .order_by("-finished_at")
        .first()
    )
    if last is None or last.started_at is None or last.finished_at is None:
        return None, "No finished run of this judge yet to estimate from."
    seconds = max((last.finished_at - last.started_at).total_seconds(), 0.001)
    rate = last.done_count / seconds
    return rows / rate, f"At the pace of the last run of this judge ({rate:.1f} items/s)."


def validate_tags(tags: Sequence[str]) -> list[str]:
    cleaned = []
    for tag in tags:
        tag = tag.strip()
        if not tag:
            continue
        if tag.lower().startswith(RESERVED_TAG_PREFIX):
            raise RunError(
                f'Tag "{tag}": tags starting with "docket:" are reserved for Docket\'s own bookkeeping.'
            )
        if len(tag) > MAX_TAG_LENGTH:
            raise RunError(f'Tag "{tag[:40]}…" is longer than {MAX_TAG_LENGTH} characters.')
        if tag not in cleaned:
            cleaned.append(tag)
    return cleaned


def run_create(
    *,
    dataset: Dataset,
    judge: Judge,
    created_by: User | AnonymousUser | None = None,
    name: str = "",
    tags: Sequence[str] = (),
    judge_version_id: str = "",
    batch_size: int = MAX_BATCH_SIZE,
    examples: QuerySet[Example] | None = None,
    retry_of: Run | None = None,
) -> Run:
    """Create a run with one item per example and its remote batches, then wake the pump."""
    if dataset.status != Dataset.Status.READY:
        raise RunError(f'Dataset "{dataset.name}" is not ready yet ({dataset.get_status_display().lower()}).')
    if not 1 <= batch_size <= MAX_BATCH_SIZE:
        raise RunError(f"Batch size must be between 1 and {MAX_BATCH_SIZE}.")
    tags = validate_tags(tags)
    judge_version_id = judge_version_id.strip()
    if not judge_version_id:
        # Pin the judge's current version so every batch of the run is judged alike.
        if not judge.version_id:
            # If the API cannot say, no version means "the latest" to it.
            with contextlib.suppress(JudgeError):
                judge = judge_refresh(judge=judge)
        judge_version_id = judge.version_id
    if examples is None:
        preflight = run_preflight(dataset=dataset, judge=judge, batch_size=batch_size)
        if preflight.rows == 0:
            raise RunError(f'Dataset "{dataset.name}" has no rows.')
        if preflight.missing_inputs:
            names = ", ".join(f'"{name}"' for name in preflight.missing_inputs)
            raise RunError(f"The judge needs {names}, which no row of this dataset has. Map a column to it.")
        examples = dataset.examples.all()

    user = created_by if isinstance(created_by, User) else None
    positions = list(examples.order_by("position").values_list("id", "position"))
    if not positions:
        raise RunError("There is nothing to run.")
    with transaction.atomic():
        run = Run.objects.create(
            name=name.strip()[:200],
            dataset=dataset,
            judge=judge,
            judge_version_id=judge_version_id,
            tags=tags,
            batch_size=batch_size,
            total_count=len(positions),
            created_by=user,
            retry_of=retry_of,
            evaluators=judge.evaluator_names,
        )
        batches = RemoteBatch.objects.bulk_create(
            RemoteBatch(run=run, position=index, size=len(positions[start : start + batch_size]))
            for index, start in enumerate(range(0, len(positions), batch_size))
        )
        items = []
        for offset, (example_id, position) in enumerate(positions):
            batch_index, index_in_batch = divmod(offset, batch_size)
            items.append(
                Item(
                    run=run,
                    example_id=example_id,
                    batch=batches[batch_index],
                    position=position,
                    index_in_batch=index_in_batch,
                )
            )
            if len(items) >= WRITE_CHUNK:
                Item.objects.bulk_create(items)
                items = []
        Item.objects.bulk_create(items)
        transaction.on_commit(wake_pump)
    return run


def wake_pump() -> None:
    from django_q.tasks import async_task

    async_task("evals.tasks.pump", task_name="pump", group="pump")


def run_cancel(*, run: Run) -> Run:
    """Stop submitting: unsent items become cancelled; batches already sent are still collected."""
    if run.is_finished:
        raise RunError("This run has already finished.")
    now = timezone.now()
    with transaction.atomic():
        Run.objects.filter(pk=run.pk, cancel_requested_at=None).update(cancel_requested_at=now)
        waiting = list(
            RemoteBatch.objects.filter(run=run, status=RemoteBatch.Status.WAITING).values_list(
                "pk", flat=True
            )
        )
        # Conditional on WAITING: a pump that claimed one of these a moment ago keeps it.
        cancelled_batches = RemoteBatch.objects.filter(
            pk__in=waiting, status=RemoteBatch.Status.WAITING
        ).update(status=RemoteBatch.Status.CANCELLED, finished_at=now, lease_until=None)
        if cancelled_batches:
            seq = bump_change_seq(run)
            count = Item.objects.filter(
                batch__in=waiting, batch__status=RemoteBatch.Status.CANCELLED, status=Item.Status.PENDING
            ).update(
                status=Item.Status.CANCELLED, change_seq=seq, error_message="Cancelled before it was sent."
            )
            Run.objects.filter(pk=run.pk).update(cancelled_count=F("cancelled_count") + count)
        else:
            bump_change_seq(run)
        run_finish_if_done(run_id=run.pk)
    run.refresh_from_db()
    return run


def run_retry_failed(*, run: Run, created_by: User | AnonymousUser | None = None) -> Run:
    """A new run over the items of `run` that failed or were cancelled, linked to it."""
    if not run.is_finished:
        raise RunError("Wait for the run to finish (or cancel it) before retrying its failed items.")
    example_ids = run.items.filter(status__in=[Item.Status.FAILED, Item.Status.CANCELLED]).values(
        "example_id"
    )
    examples = Example.objects.filter(pk__in=example_ids)
    if not examples.exists():
        raise RunError("No item of this run failed or was cancelled: there is nothing to retry.")
    return run_create(
        dataset=run.dataset,
        judge=run.judge,
        created_by=created_by,
        name=f"Retry of {run}"[:200],
        tags=run.tags,
        judge_version_id=run.judge_version_id,
        batch_size=run.batch_size,
        examples=examples,
        retry_of=run,
    )


def bump_change_seq(run: Run | int) -> int:
    """Take the next change number of a run, inside the caller's transaction.

    The UPDATE locks the run's row until commit, so writers of one run commit in the order of their
    numbers and a page that has seen number n has seen every change up to n.
    """
    run_id = run if isinstance(run, int) else run.pk
    Run.objects.filter(pk=run_id).update(change_seq=F("change_seq") + 1)
    return Run.objects.filter(pk=run_id).values_list("change_seq", flat=True).get()


def run_finish_if_done(*, run_id: int) -> bool:
    """Give a run its final status once none of its batches is unfinished (inside a transaction)."""
    if RemoteBatch.objects.filter(run_id=run_id).unfinished().exists():
        return False
    run = Run.objects.get(pk=run_id)
    if run.is_finished:
        return False
    if run.cancel_requested_at and run.cancelled_count:
        status = Run.Status.CANCELLED
    elif run.failed_count and not run.completed_count:
        status = Run.Status.FAILED
    elif run.failed_count:
        status = Run.Status.PARTIAL
    else:
        status = Run.Status.COMPLETED
    updated = (
        Run.objects.filter(pk=run_id)
        .exclude(status__in=Run.FINISHED)
        .update(
            status=status,
            finished_at=timezone.now(),
            backoff_until=None,
            backoff_reason="",
            change_seq=F("change_seq") + 1,
        )
    )
    return bool(updated)


def run_chain(run: Run) -> list[int]:
    """The run and every retry made from it (and from those), oldest first."""
    chain = [run.pk]
    frontier = [run.pk]
    while frontier:
        frontier = list(Run.objects.filter(retry_of__in=frontier).order_by("pk").values_list("pk", flat=True))
        chain.extend(frontier)
    return chain


def run_items_merged(run: Run) -> QuerySet[Item]:
    """The latest verdict per row across a run and its retries.

    The newest item that is not cancelled wins (a cancelled retry never ran, so the earlier verdict
    stands); a row cancelled everywhere shows its newest cancelled item.
    """
    chain = run_chain(run)
    same_row = Item.objects.filter(run_id__in=chain, position=OuterRef("position"))
    later_verdict = same_row.filter(run_id__gt=OuterRef("run_id")).exclude(status=Item.Status.CANCELLED)
    later_any = same_row.filter(run_id__gt=OuterRef("run_id"))
    any_verdict = same_row.exclude(status=Item.Status.CANCELLED)
    return Item.objects.filter(run_id__in=chain).filter(
        (~Q(status=Item.Status.CANCELLED) & ~Exists(later_verdict))
        | (Q(status=Item.Status.CANCELLED) & ~Exists(any_verdict) & ~Exists(later_any))
    )
