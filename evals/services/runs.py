"""Runs: check a dataset against a judge, create the run and its remote batches, cancel, retry."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence

from django.conf import settings
from django.contrib.auth.models import AnonymousUser, User
from django.db import transaction
from django.db.models import F, QuerySet
from django.utils import timezone

from evals.client import JudgeError
from evals.models import MAX_BATCH_SIZE, Dataset, Example, Item, Judge, RemoteBatch, Run
from evals.services.bulk_writes import rows_insert
from evals.services.judges import judge_refresh
from evals.services.run_options import (
    UNSET,
    RunError,
    Unset,
    clean_max_cost,
    clean_project_id,
    evaluator_set,
    run_preflight,
    validate_tags,
)
from evals.tasks import wake_pump

WRITE_CHUNK = 2_000
# What a new item is given; every other field of it starts at its default (bulk_writes.rows_insert).
ITEM_GIVEN = ("run", "example", "batch", "position", "index_in_batch")


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
    threshold_overrides: Mapping[str, float] | None = None,
    noise_of: Run | None = None,
    noise_repeat: int = 0,
    evaluator_ids: Sequence[str] | None = None,
    project_id: str | None = None,
    max_cost: float | None | Unset = UNSET,
) -> Run:
    """Create a run with one item per example and its remote batches, then wake the pump.

    `threshold_overrides` ({evaluator: value}) are this run's pass thresholds for good, over the judge's.
    `noise_of`/`noise_repeat`: this run is repeat r of a noise check of that run (evals.services.noise).
    `evaluator_ids`: an evaluator set (remote ids or names of the judge's evaluators); None or all of
    them is the whole judge. `project_id`: the judge API project ("" = the judge's own), by default
    SCORABLE_PROJECT_ID. `max_cost`: the spending cap (None = none), by default DOCKET_DEFAULT_MAX_COST.

    A retry or a noise check re-judges rows of a source run, so unless told otherwise it takes the
    source's evaluator set and project (the verdicts must be comparable) and its cap: a cap bounds
    what one run may spend, and a retry or a repeat sends no more rows than its source did. (The
    alternative, what is left of the source's cap, can be nothing and would start a run that can
    send nothing.)
    """
    if dataset.status != Dataset.Status.READY:
        raise RunError(f'Dataset "{dataset.name}" is not ready yet ({dataset.get_status_display().lower()}).')
    if not 1 <= batch_size <= MAX_BATCH_SIZE:
        raise RunError(f"Batch size must be between 1 and {MAX_BATCH_SIZE}.")
    tags = validate_tags(tags)
    source = retry_of or noise_of
    if evaluator_ids is None and source is not None:
        evaluator_ids = source.evaluator_ids
    if project_id is None:
        project_id = (
            source.project_id
            if source is not None
            else clean_project_id(str(settings.SCORABLE_PROJECT_ID or ""), from_settings=True)
        )
    project_id = clean_project_id(project_id)
    if isinstance(max_cost, Unset):
        if source is not None:
            max_cost = source.max_cost
        else:
            max_cost = clean_max_cost(settings.DOCKET_DEFAULT_MAX_COST, from_settings=True)
    max_cost = clean_max_cost(max_cost)
    judge_version_id = judge_version_id.strip()
    if not judge_version_id:
        # Pin the judge's current version so every batch of the run is judged alike.
        if not judge.version_id:
            # If the API cannot say, no version means "the latest" to it.
            with contextlib.suppress(JudgeError):
                judge = judge_refresh(judge=judge)
        judge_version_id = judge.version_id
    # After the refresh above: the set is checked against the judge's evaluators as they are now.
    chosen = evaluator_set(judge=judge, chosen=evaluator_ids)
    if examples is None:
        preflight = run_preflight(
            dataset=dataset, judge=judge, batch_size=batch_size, evaluator_ids=chosen.ids
        )
        if preflight.rows == 0:
            raise RunError(f'Dataset "{dataset.name}" has no rows.')
        if preflight.blocked:
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
            evaluators=chosen.names,
            threshold_overrides=dict(threshold_overrides or {}),
            noise_of=noise_of,
            noise_repeat=noise_repeat,
            evaluator_ids=chosen.ids,
            project_id=project_id,
            max_cost=max_cost,
        )
        batches = RemoteBatch.objects.bulk_create(
            RemoteBatch(run=run, position=index, size=len(positions[start : start + batch_size]))
            for index, start in enumerate(range(0, len(positions), batch_size))
        )
        for start in range(0, len(positions), WRITE_CHUNK):
            rows_insert(
                Item,
                ITEM_GIVEN,
                (
                    (run.pk, example_id, batches[offset // batch_size].pk, position, offset % batch_size)
                    for offset, (example_id, position) in enumerate(
                        positions[start : start + WRITE_CHUNK], start=start
                    )
                ),
            )
        transaction.on_commit(wake_pump)
    return run


def run_cancel(*, run: Run) -> Run:
    """Stop submitting: unsent items become cancelled; batches already sent are still collected.

    A batch whose create is out right now is cancelled by the pump when that create fails or turns
    out not to have happened (evals.services.batches.batches_cancel, the one cancel of batches).
    """
    from evals.services.batches import batches_cancel  # batches builds on this module

    if run.is_finished:
        raise RunError("This run has already finished.")
    now = timezone.now()
    with transaction.atomic():
        Run.objects.filter(pk=run.pk, cancel_requested_at=None).update(cancel_requested_at=now)
        if not batches_cancel(run_id=run.pk):
            bump_change_seq(run)
        run_finish_if_done(run_id=run.pk)
    run.refresh_from_db()
    return run


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
