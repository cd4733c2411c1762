"""Retry: a new run over the failed and cancelled rows of a run's chain, linked to the chain's root.

A partial unique constraint (`run_one_active_retry`) allows one queued or running retry per root, so a
second request, or two at once, returns to the one in flight; the plan says first how many items go.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth.models import AnonymousUser, User
from django.core.cache import cache
from django.db import IntegrityError
from django.db.models import Q, QuerySet

from evals.models import INPUT_FIELDS, Example, Item, Judge, Run
from evals.selectors.runs import run_chain, run_items_merged, run_root, runs_version
from evals.services.run_options import RunError
from evals.services.runs import run_create

# Rows a retry skips are listed on the retry form; this many are shown by name, the rest counted.
RETRY_EXCLUDED_SHOWN = 20
RETRY_PLAN_CACHE_SECONDS = 24 * 3600


def _missing_input(judge: Judge) -> Q | None:
    """Items whose row lacks an input the judge requires: the same rule as `run_preflight`.

    Turns stand in for request and response (the judge reads the conversation).
    """
    no_turns = Q(example__turns__isnull=True) | Q(example__turns=[])
    missing: Q | None = None
    for name in judge.required_inputs:
        if name not in INPUT_FIELDS:
            continue
        if name in ("contexts", "turns"):
            lacks = Q(**{f"example__{name}__isnull": True}) | Q(**{f"example__{name}": []})
        else:
            lacks = Q(**{f"example__{name}": ""})
        if name in ("request", "response"):
            lacks &= no_turns
        missing = lacks if missing is None else missing | lacks
    return missing


@dataclass(frozen=True)
class Excluded:
    """A row a retry would not fix, and why."""

    item: Item
    reason: str


@dataclass(frozen=True)
class RetryPlan:
    """What a retry of a chain would send: rows whose latest verdict is failed or cancelled."""

    root: Run
    failed: int
    cancelled: int
    excluded_count: int
    excluded: list[Excluded]
    active_retry: Run | None
    # Why no retry can start now ("" when one can).
    blocked: str = ""

    @property
    def to_send(self) -> int:
        return self.failed + self.cancelled

    @property
    def label(self) -> str:
        """ "Retry 12 failed", "Resume 3,000 cancelled", or both."""
        parts = []
        if self.failed:
            parts.append(f"Retry {self.failed:,} failed")
        if self.cancelled:
            parts.append(f"{'resume' if parts else 'Resume'} {self.cancelled:,} cancelled")
        return ", ".join(parts)


def _retry_candidates(root: Run) -> tuple[QuerySet[Item], Q]:
    """Items of the chain whose latest verdict is failed or cancelled, and what makes one unfixable."""
    latest = run_items_merged(root).filter(status__in=[Item.Status.FAILED, Item.Status.CANCELLED])
    unfixable = Q(error_is_permanent=True)
    missing = _missing_input(root.judge)
    if missing is not None:
        unfixable |= missing
    return latest, unfixable


def _active_retry(root: Run) -> Run | None:
    return Run.objects.active().filter(pk__in=run_chain(root)).exclude(pk=root.pk).order_by("pk").first()


def run_retry_plan(*, run: Run, shown: int = RETRY_EXCLUDED_SHOWN) -> RetryPlan:
    """What "retry" would send for the chain `run` belongs to, what it skips and why."""
    root = run_root(run)
    active = _active_retry(root)
    blocked = ""
    if active is not None:
        blocked = f"{active} is already retrying this run's failed items."
    elif not root.is_finished:
        blocked = "Wait for the run to finish (or cancel it) before retrying its failed items."
    latest, unfixable = _retry_candidates(root)
    skipped = latest.filter(unfixable)
    # Counting reads every failed row of the chain (125 ms for 20,000 of them), on every view of a
    # finished run's page. The counts change only when an item of the chain does, which bumps its
    # run's change_seq, or when the judge's required inputs do: kept per version of both.
    key = f"docket:retry-plan:{runs_version(run_chain(root))}:{','.join(sorted(root.judge.required_inputs))}"
    counts: tuple[int, int, int] | None = cache.get(key)
    if counts is None:
        sendable = latest.exclude(unfixable)
        counts = (
            sendable.filter(status=Item.Status.FAILED).count(),
            sendable.filter(status=Item.Status.CANCELLED).count(),
            skipped.count(),
        )
        cache.set(key, counts, RETRY_PLAN_CACHE_SECONDS)
    failed, cancelled, excluded_count = counts
    excluded = [
        Excluded(item=item, reason=_unfixable_reason(item, root.judge))
        for item in skipped.select_related("example").order_by("position")[:shown]
    ]
    return RetryPlan(
        root=root,
        failed=failed,
        cancelled=cancelled,
        excluded_count=excluded_count,
        excluded=excluded,
        active_retry=active,
        blocked=blocked,
    )


def _unfixable_reason(item: Item, judge: Judge) -> str:
    example = item.example
    has_turns = bool(example.turns)
    lacking = [
        name
        for name in judge.required_inputs
        if name in INPUT_FIELDS
        and not example.has_input(name)
        and not (has_turns and name in ("request", "response"))
    ]
    if lacking:
        names = ", ".join(name.replace("_", " ") for name in lacking)
        return f"The row has no {names}, which the judge requires."
    detail = item.error_message.strip()
    return f"The judge rejected this row: {detail}" if detail else "The judge rejected this row."


def run_retry(*, run: Run, created_by: User | AnonymousUser | None = None) -> tuple[Run, bool]:
    """Start a retry of the chain `run` belongs to, or return the one already queued or running.

    Returns (retry, created). Idempotent under concurrency: the `run_one_active_retry` constraint
    lets one insert win; the loser's savepoint rolls back and it returns the winner's run.
    """
    root = run_root(run)
    active = _active_retry(root)
    if active is not None:
        return active, False
    if not root.is_finished:
        raise RunError("Wait for the run to finish (or cancel it) before retrying its failed items.")
    latest, unfixable = _retry_candidates(root)
    examples = Example.objects.filter(pk__in=latest.exclude(unfixable).values("example_id"))
    if not examples.exists():
        skipped = latest.filter(unfixable).count()
        if skipped:
            raise RunError(
                f"{skipped:,} row{'s' if skipped != 1 else ''} failed for a reason a retry cannot fix: "
                "there is nothing to retry."
            )
        raise RunError("No item of this run failed or was cancelled: there is nothing to retry.")
    number = root.retries.count() + 1
    name = f"Retry of {root}" if number == 1 else f"Retry {number} of {root}"
    try:
        # run_create writes inside its own atomic block (a savepoint when the caller has a transaction),
        # so a losing insert rolls back whole and the caller's transaction stays usable.
        retry = run_create(
            dataset=root.dataset,
            judge=root.judge,
            created_by=created_by,
            name=name[:200],
            tags=root.tags,
            judge_version_id=root.judge_version_id,
            batch_size=root.batch_size,
            examples=examples,
            retry_of=root,
        )
    except IntegrityError:
        # Another request's retry of this chain committed first (the pre-check above raced with it).
        active = _active_retry(root)
        if active is None:
            raise
        return active, False
    return retry, True


def run_retry_failed(*, run: Run, created_by: User | AnonymousUser | None = None) -> Run:
    """The retry of `run`'s failed and cancelled rows: a new one, or the one already under way."""
    return run_retry(run=run, created_by=created_by)[0]
