"""Every change of a `RemoteBatch`, as a named transition.

claim -> submitted | looked up | backed off | failed | cancelled -> polled ... -> finished. Each
transition that records the outcome of a call is one conditional UPDATE on `(pk, lease_owner)` and the
counts it changes, in one transaction, and says whether it applied. A pump whose lease ran out under a
slow call, and was taken over by another pump, is a stale writer: its outcome is dropped and counted
nowhere (the other pump's call gives the same answer, or a newer one).

Every transition locks the run row first (`lock_run`): the run is the root of everything deleted
with it, so a run deleted while the call was out makes the transition raise `RowsGone` instead of half
writing. None of this does HTTP: the pump performs the calls, then applies their outcomes here.

One unit over 450 lines: every transition of one state machine, each under the same lease condition
and run lock; read together they show that no path writes a batch twice.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Exists, F, OuterRef, Q, QuerySet
from django.utils import timezone

from evals.client import Batch, JudgeError, LogCost
from evals.models import BackoffKind, Item, RemoteBatch, Run
from evals.services.bulk_writes import NewScore, items_update, scores_insert
from evals.services.runs import bump_change_seq, run_finish_if_done

REMOTE_TO_ITEM = {
    "pending": Item.Status.PENDING,
    "processing": Item.Status.PROCESSING,
    "completed": Item.Status.COMPLETED,
    "failed": Item.Status.FAILED,
}
REMOTE_TO_BATCH = {
    "completed": RemoteBatch.Status.COMPLETED,
    "partial": RemoteBatch.Status.PARTIAL,
    "failed": RemoteBatch.Status.FAILED,
}
# A batch the judge ran (some of) and answered for: its execution logs hold what it cost.
FINISHED_REMOTELY = (RemoteBatch.Status.COMPLETED, RemoteBatch.Status.PARTIAL, RemoteBatch.Status.FAILED)
KNOWN_BATCH_STATUSES = {"pending", "processing", "running", "queued", *REMOTE_TO_BATCH}
# A batch status Docket does not know is polled this long (it may be a state that passes), then given up.
UNKNOWN_STATUS_GRACE = timedelta(minutes=10)
# A quota is not a passing throttle: look again this much later, and fail nothing meanwhile.
QUOTA_RETRY_SECONDS = 300.0
# A batch is split at most this many times to cut out rows the judge refuses.
MAX_SPLITS = 3
ITEM_FIELDS = ["status", "error_message", "execution_log_id", "started_at", "completed_at", "change_seq"]
# What a poll reads of its batch's items: the fields it may change and what it needs to decide.
POLLED_FIELDS = ["index_in_batch", "run_id", "cost", *ITEM_FIELDS]
BAD_ROW = re.compile(r"inputs\[(\d+)\]")
# What the pump reads of a batch it claimed to make its call (the tag, the create's options, the log
# page size); any other field is still there, read when first used. A run's JSON totals are not read.
CLAIMED_FIELDS = (
    "run_id",
    "position",
    "size",
    "splits",
    "status",
    "remote_id",
    "attempts",
    "submitted_at",
    "run__uid",
    "run__status",
    "run__judge_id",
    "run__judge_version_id",
    "run__tags",
    "run__evaluators",
    "run__evaluator_ids",
    "run__project_id",
    "run__judge__remote_id",
    "run__judge__evaluators",
)


class RowsGone(Exception):
    """The run (or the batch) an answer is for was deleted while the call was out: nothing to record."""


LOCKED_RUN_FIELDS = (
    "pk",
    "completed_count",
    "thresholds_learned_at",
    "cancel_requested_at",
    "backoff_until",
    "backoff_kind",
    "change_seq",
)


def lock_run(run_id: int, *fields: str) -> Run:
    """Lock the run for the rest of the transaction, or raise RowsGone if it was deleted.

    What it reads (LOCKED_RUN_FIELDS and `fields`) stays true until this transaction changes it: no
    other writer gets at the row before commit (SELECT ... FOR UPDATE; SQLite's IMMEDIATE transaction
    holds the whole database), so the transitions decide from it without reading the row again.
    """
    run = Run.objects.select_for_update().only(*LOCKED_RUN_FIELDS, *fields).filter(pk=run_id).first()
    if run is None:
        raise RowsGone
    return run


def owned(batch_id: int, owner: str) -> QuerySet[RemoteBatch]:
    """The batch, if this pump still holds its lease and it is not finished.

    Every transition lets the lease go (lease_owner ""), so a second answer to the same claim, or a
    late one after another pump took the batch over, finds nothing here.
    """
    return RemoteBatch.objects.filter(pk=batch_id, lease_owner=owner, status__in=RemoteBatch.UNFINISHED)


# --- Claim --------------------------------------------------------------------------------------------


def batches_claim(
    candidates: QuerySet[RemoteBatch], *, owner: str, limit: int, **updates: Any
) -> list[RemoteBatch]:
    """Lease up to `limit` of the candidates to `owner`; another pump taking the same rows gets none.

    Where the database can (PostgreSQL), rows another pump is claiming right now are skipped
    (FOR UPDATE SKIP LOCKED); elsewhere each row is taken by a conditional UPDATE that only one
    pump can win. Either way the lease, not the lock, is what keeps the batch ours afterwards.
    """
    if limit <= 0:
        return []
    now = timezone.now()
    updates = {
        "lease_until": now + batch_lease(),
        "lease_owner": owner,
        "attempts": F("attempts") + 1,
        **updates,
    }
    if connection.features.has_select_for_update_skip_locked:
        with transaction.atomic():
            ids = list(candidates.select_for_update(skip_locked=True).values_list("pk", flat=True)[:limit])
            RemoteBatch.objects.filter(pk__in=ids).update(**updates)
    else:
        free = Q(lease_until__isnull=True) | Q(lease_until__lt=now)
        ids = []
        for pk, status in candidates.values_list("pk", "status")[:limit]:
            if RemoteBatch.objects.filter(pk=pk, status=status).filter(free).update(**updates):
                ids.append(pk)
    if not ids:
        return []
    batches = RemoteBatch.objects.filter(pk__in=ids).select_related("run", "run__judge").only(*CLAIMED_FIELDS)
    return sorted(batches, key=lambda batch: ids.index(batch.pk))


def batch_lease() -> timedelta:
    # Longer than any one call can take, so a lease never runs out under a call in progress.
    return timedelta(seconds=2 * settings.JUDGE_API_TIMEOUT + 30)


# --- Outcomes of calls --------------------------------------------------------------------------------


def batch_submitted(*, batch_id: int, run_id: int, owner: str, remote_id: str) -> bool:
    """The judge accepted the create (or a lookup found it): poll it from now on."""
    now = timezone.now()
    with transaction.atomic():
        run = lock_run(run_id)
        applied = owned(batch_id, owner).update(
            status=RemoteBatch.Status.RUNNING,
            remote_id=remote_id,
            attempts=0,
            last_error="",
            next_action_at=now + timedelta(seconds=settings.DOCKET_POLL_MIN_SECONDS),
            poll_interval=settings.DOCKET_POLL_MIN_SECONDS,
            lease_until=None,
            lease_owner="",
        )
        if applied:
            run_backoff_clear(run)
    return bool(applied)


def batch_looked_up(*, batch_id: int, run_id: int, owner: str, remote_id: str | None) -> bool:
    """A create whose outcome was unknown was looked up: found, it is polled; not found, sent again."""
    if remote_id is not None:
        return batch_submitted(batch_id=batch_id, run_id=run_id, owner=owner, remote_id=remote_id)
    with transaction.atomic():
        run = lock_run(run_id)
        if run.cancel_requested_at:
            # The create never happened and the run was cancelled meanwhile: nothing to send.
            return batches_cancel(run_id=run_id, batch_id=batch_id, owner=owner) > 0
        applied = owned(batch_id, owner).update(
            status=RemoteBatch.Status.WAITING, next_action_at=timezone.now(), lease_until=None, lease_owner=""
        )
    return bool(applied)


@dataclass
class Polled:
    applied: bool
    completed: int = 0
    learn_thresholds: bool = False
    held_for_costs: bool = False


def batch_polled(
    *,
    batch_id: int,
    run_id: int,
    owner: str,
    remote: Batch,
    next_poll_seconds: Callable[[RemoteBatch, bool], float],
    hold_for_costs: bool = False,
    logs: Sequence[LogCost] | None = None,
) -> Polled:
    """Record what a poll saw: items that changed, their scores and the run's counts, all or nothing.

    `hold_for_costs`: the pump read the batch's costs too, in the same round trip (`logs`, None if the
    read failed). A batch this poll finishes, with costs to read (batches_costs_due), has them recorded
    here, as batch_costs_recorded would, when `logs` lists every completed item's log. Otherwise it
    stays leased to the pump, which records that read as a costs action's first try (backing off).
    """
    now = timezone.now()
    with transaction.atomic():
        run = lock_run(run_id, "evaluators", "score_summary", "cost_by_evaluator")
        # Locked and read inside the transaction: a stale writer finds nothing, a current one reads
        # the items as they are now, not as they were before its call.
        batch = locked_batch(owned(batch_id, owner), batch_id)
        if batch is None:
            return Polled(applied=False)
        unknown_since = None
        if remote.status not in KNOWN_BATCH_STATUSES:
            # Perhaps a state that passes (a new "paused"?): polled on, but not for ever.
            unknown_since = batch.unknown_status_since or now
            if now - unknown_since >= UNKNOWN_STATUS_GRACE:
                message = f'The judge returned status "{remote.status[:40]}" for this batch, which Docket does not know.'
                batch_fail(batch_id=batch_id, run_id=run_id, owner=owner, message=message)
                return Polled(applied=True)
        items = {item.index_in_batch: item for item in Item.objects.filter(batch=batch).only(*POLLED_FIELDS)}
        changed, scores, completed, failed = _changed_items(items, remote, now=now)
        # The run's first completed items: time to learn its thresholds from one of their logs.
        learn = completed > 0 and run.completed_count == 0 and run.thresholds_learned_at is None
        interval = next_poll_seconds(batch, bool(changed))
        batch_update: dict[str, Any] = {
            "remote_status": remote.status[:16],
            "attempts": 0,
            "last_error": "",
            "polls": F("polls") + 1,
            "lease_until": None,
            "lease_owner": "",
            "poll_interval": interval,
            "next_action_at": now + timedelta(seconds=interval),
            "unknown_status_since": unknown_since,
        }
        held = False
        costed: list[list[Any]] = []
        if remote.is_finished:
            # Due at once: what is left to do is reading the batch's costs (batch_costs_recorded).
            batch_update.update(status=REMOTE_TO_BATCH[remote.status], finished_at=now, next_action_at=now)
            ran = [
                item
                for item in items.values()
                if item.status == Item.Status.COMPLETED and item.execution_log_id
            ]
            if hold_for_costs and ran:
                listed = {log.id for log in logs} if logs is not None else set()
                if logs is not None and all(item.execution_log_id in listed for item in ran):
                    # Read whole: recorded now, in this transaction and this write of the run row.
                    uncosted = [
                        (item.pk, item.execution_log_id)
                        for item in items.values()
                        if item.cost is None and item.execution_log_id
                    ]
                    costed = items_costed(uncosted, logs)
                    batch_update.update(logs_fetched_at=now, cost=_total(costed) if costed else None)
                else:
                    # As batches_claim would take it for the read: same lease, first attempt.
                    del batch_update["lease_until"], batch_update["lease_owner"]
                    batch_update["attempts"] = 1
                    held = True
        seq = run.change_seq + 1  # the run is locked: as bump_change_seq would number it
        run_update: dict[str, Any] = {"change_seq": seq}
        if changed:
            for item in changed:
                item.change_seq = seq
            items_update(
                ITEM_FIELDS, [[*(getattr(item, name) for name in ITEM_FIELDS), item.pk] for item in changed]
            )
            scores_insert(scores)
            run_update["completed_count"] = F("completed_count") + completed
            run_update["failed_count"] = F("failed_count") + failed
            if scores:
                run_update["score_summary"], run_update["evaluators"] = _summary_with(run, scores)
        if costed:
            items_update(COST_FIELDS, [[cost, costs, seq, pk] for cost, costs, pk in costed])
            run_update.update(_cost_totals(run, costed))
        if changed or costed:
            # The change number, the counts, the score and cost totals in one write of the locked row.
            Run.objects.filter(pk=run_id).update(**run_update)
        RemoteBatch.objects.filter(pk=batch_id).update(**batch_update)
        run_backoff_clear(run)
        if remote.is_finished:
            run_budget_recheck(run)
            run_finish_if_done(run_id=run_id)
    return Polled(
        applied=True,
        completed=completed,
        learn_thresholds=learn,
        held_for_costs=held,
    )


def _changed_items(
    items: dict[int, Item], remote: Batch, *, now: datetime
) -> tuple[list[Item], list[NewScore], int, int]:
    changed: list[Item] = []
    scores: list[NewScore] = []
    completed = failed = 0
    for remote_item in remote.items:
        item = items.get(remote_item.index)
        if item is None or item.is_finished:
            continue
        status = REMOTE_TO_ITEM.get(remote_item.status)
        if status is None:
            # A status Docket does not know: recorded as such (shown on the item), still unfinished.
            note = f'The judge reports this item as "{remote_item.status[:40]}".'
            if item.error_message != note:
                item.error_message = note
                changed.append(item)
            continue
        if status == item.status:
            continue
        item.status = status
        item.started_at = remote_item.started_at or item.started_at
        item.error_message = ""  # an unfinished item's only message is an unknown status's note
        if status == Item.Status.COMPLETED:
            item.completed_at = remote_item.completed_at or now
            item.execution_log_id = remote_item.execution_log_id or ""
            scores.extend(scores_for(item, remote_item.evaluator_results or ()))
            completed += 1
        elif status == Item.Status.FAILED:
            item.completed_at = remote_item.completed_at or now
            item.execution_log_id = remote_item.execution_log_id or ""
            item.error_message = (
                remote_item.error_message or "The judge reported this item as failed without a message."
            )
            failed += 1
        changed.append(item)
    if remote.is_finished:
        # Anything the judge left unfinished in a finished batch will never finish: say so.
        changed_ids = {item.pk for item in changed}
        for item in items.values():
            if item.status in Item.FINISHED:
                continue
            item.status = Item.Status.FAILED
            item.completed_at = now
            item.error_message = (
                f"The judge finished the batch ({remote.status}) without a result for this item."
            )
            failed += 1
            if item.pk not in changed_ids:
                changed.append(item)
    return changed, scores, completed, failed


def batch_backed_off(
    *,
    batch_id: int,
    run_id: int,
    owner: str,
    status: RemoteBatch.Status,
    error: JudgeError,
    delay: float,
    kind: BackoffKind,
) -> bool:
    """A call failed in a way worth trying again after `delay` seconds; the run shows why it waits.

    A throttle or a quota is the server asking us to wait, not a failure: it uses up no attempt, so
    neither the give-up limit nor the exponent of the next error's back-off grows with it.
    """
    now = timezone.now()
    with transaction.atomic():
        run = lock_run(run_id)
        if status == RemoteBatch.Status.WAITING and run.cancel_requested_at:
            # The create did not happen and the run was cancelled meanwhile: do not wait to send it.
            return batches_cancel(run_id=run_id, batch_id=batch_id, owner=owner) > 0
        update: dict[str, Any] = {
            "status": status,
            "last_error": error.message[:2000],
            "next_action_at": now + timedelta(seconds=delay),
            "lease_until": None,
            "lease_owner": "",
        }
        if kind in (BackoffKind.THROTTLED, BackoffKind.QUOTA):
            update["attempts"] = F("attempts") - 1
        applied = owned(batch_id, owner).update(**update)
        if applied:
            reason = kind.label if kind != BackoffKind.ERROR else f"judge API error: {error.message[:200]}"
            run_backoff_set(run_id, until=now + timedelta(seconds=delay), reason=reason, kind=kind)
    return bool(applied)


def batch_fail(
    *, batch_id: int, run_id: int, owner: str | None, message: str, permanent: bool = False
) -> bool:
    """Give up on a batch: its unfinished items fail with `message`.

    `permanent`: the judge rejected what the batch sent (a 400 or 422), so sending the same items again
    cannot help; retries skip them (Item.error_is_permanent).
    """
    now = timezone.now()
    with transaction.atomic():
        run = lock_run(run_id)
        batches = owned(batch_id, owner) if owner is not None else RemoteBatch.objects.filter(pk=batch_id)
        applied = batches.filter(status__in=RemoteBatch.UNFINISHED).update(
            status=RemoteBatch.Status.FAILED,
            last_error=message[:2000],
            finished_at=now,
            lease_until=None,
            lease_owner="",
            # Reading the costs of what the judge did run of it counts its own tries.
            attempts=0,
            next_action_at=now,
        )
        if not applied:
            return False
        seq = bump_change_seq(run_id)
        failed = (
            Item.objects.filter(batch_id=batch_id)
            .exclude(status__in=Item.FINISHED)
            .update(
                status=Item.Status.FAILED,
                error_message=message,
                completed_at=now,
                change_seq=seq,
                error_is_permanent=permanent,
            )
        )
        Run.objects.filter(pk=run_id).update(
            failed_count=F("failed_count") + failed, last_error=message[:2000]
        )
        run_budget_recheck(run)
        run_finish_if_done(run_id=run_id)
    return True


def batch_split(*, batch_id: int, run_id: int, owner: str, error: JudgeError) -> bool:
    """The judge refused rows of a create by index (`inputs[4]...`): fail those items, send the rest.

    The rest goes under a new tag (`<tag>.<splits>`), so a lookup for a create whose outcome is unknown
    never mistakes the refused create for it. False when the error names no row of this batch or the
    batch was split MAX_SPLITS times already: then the whole batch fails, as before.
    """
    problems = row_problems(error)
    now = timezone.now()
    with transaction.atomic():
        run = lock_run(run_id)
        batch = owned(batch_id, owner).filter(status=RemoteBatch.Status.SUBMITTING).first()
        if not problems or batch is None or batch.splits >= MAX_SPLITS:
            return False
        items = list(
            Item.objects.filter(batch=batch).exclude(status__in=Item.FINISHED).order_by("index_in_batch")
        )
        bad = [item for item in items if item.index_in_batch in problems]
        if len(bad) != len(problems):
            return False  # it names rows this batch did not send: not ours to interpret
        seq = bump_change_seq(run_id)
        for item in bad:
            item.status = Item.Status.FAILED
            item.error_message = f"The judge API rejected this row: {problems[item.index_in_batch]}"[:2000]
            item.completed_at = now
            item.change_seq = seq
            item.error_is_permanent = True
            # Kept on its batch (the page links it) at an index the judge never sends back (at most 100).
            item.index_in_batch = 1000 + item.index_in_batch
        # The rest are renumbered, so the judge's item indexes keep matching ours.
        rest = [item for item in items if item not in bad]
        for number, item in enumerate(rest):
            item.index_in_batch = number
        Item.objects.bulk_update(
            [*bad, *rest],
            ["status", "error_message", "completed_at", "change_seq", "error_is_permanent", "index_in_batch"],
        )
        Run.objects.filter(pk=run_id).update(failed_count=F("failed_count") + len(bad))
        RemoteBatch.objects.filter(pk=batch_id).update(
            status=RemoteBatch.Status.WAITING if rest else RemoteBatch.Status.FAILED,
            finished_at=None if rest else now,
            splits=F("splits") + 1,
            size=len(rest),
            attempts=0,
            last_error=error.message[:2000],
            next_action_at=now,
            lease_until=None,
            lease_owner="",
        )
        if rest and run.cancel_requested_at is not None:
            batches_cancel(run_id=run_id, batch_id=batch_id)
        run_finish_if_done(run_id=run_id)
    return True


def row_problems(error: JudgeError) -> dict[int, str]:
    """What a 400 says about each row it names (`inputs[4].turns[1].contexts: ...`), by index.

    The row's index in the create means nothing on the run's page, where the item is the row: each
    problem is worded from the row's point of view (`input.turns[1].contexts: ...`).
    """
    if error.status != 400:
        return {}
    matches = list(BAD_ROW.finditer(error.message))
    problems: dict[int, list[str]] = {}
    for match, following in zip(matches, [*matches[1:], None], strict=False):
        end = following.start() if following else len(error.message)
        text = error.message[match.start() : end].strip(" ;,")
        problems.setdefault(int(match.group(1)), []).append(BAD_ROW.sub("input", text))
    return {index: " ".join(parts) for index, parts in problems.items()}


def batches_cancel(*, run_id: int, batch_id: int | None = None, owner: str | None = None) -> int:
    """Cancel what of a run was not sent: every waiting batch, or the one `owner` holds. Items cancelled.

    The one cancel of batches, for the run service (every batch of the run whose lease is free) and for
    the pump (a batch it holds whose create failed or was not found). A batch in any unfinished state
    may be cancelled this way as long as its create is known not to have reached the judge; a batch
    the judge accepted is collected instead, as the items it runs are paid for.
    """
    now = timezone.now()
    with transaction.atomic():
        batches = RemoteBatch.objects.filter(run_id=run_id, status__in=RemoteBatch.UNFINISHED)
        if batch_id is not None:
            batches = batches.filter(pk=batch_id)
        if owner is not None:
            batches = batches.filter(lease_owner=owner)
        else:
            # Not leased: a pump that claimed one a moment ago keeps it, and cancels it when its
            # create fails or turns out not to have happened.
            batches = batches.filter(status=RemoteBatch.Status.WAITING).filter(
                Q(lease_until__isnull=True) | Q(lease_until__lt=now)
            )
        ids = list(batches.values_list("pk", flat=True))
        if not ids:
            return 0
        RemoteBatch.objects.filter(pk__in=ids).update(
            status=RemoteBatch.Status.CANCELLED, finished_at=now, lease_until=None, lease_owner=""
        )
        seq = bump_change_seq(run_id)
        cancelled = (
            Item.objects.filter(batch_id__in=ids)
            .exclude(status__in=Item.FINISHED)
            .update(
                status=Item.Status.CANCELLED, error_message="Cancelled before it was sent.", change_seq=seq
            )
        )
        Run.objects.filter(pk=run_id).update(cancelled_count=F("cancelled_count") + cancelled)
        run_budget_recheck(run_id)  # a cancelled run waits for no budget
        run_finish_if_done(run_id=run_id)
    return cancelled


# --- Costs -------------------------------------------------------------------------------------------


def batches_costs_due(now: datetime | None = None) -> QuerySet[RemoteBatch]:
    """Finished batches whose execution logs are still to be read: the judge ran some of their items.

    With `now`, only those due then and not leased (what the pump may claim). A batch the judge ran
    nothing of (refused, cancelled, every item failed) has no cost to read and is never due.
    """
    ran = Item.objects.filter(batch=OuterRef("pk"), status=Item.Status.COMPLETED).exclude(execution_log_id="")
    batches = (
        RemoteBatch.objects.filter(status__in=FINISHED_REMOTELY, logs_fetched_at__isnull=True)
        .exclude(remote_id="")
        .filter(Exists(ran))
    )
    if now is not None:
        batches = batches.filter(
            Q(next_action_at__isnull=True) | Q(next_action_at__lte=now),
            Q(lease_until__isnull=True) | Q(lease_until__lt=now),
        )
    return batches


def owned_for_costs(batch_id: int, owner: str) -> QuerySet[RemoteBatch]:
    """The finished batch, if this pump holds its lease and its costs were not recorded yet."""
    return RemoteBatch.objects.filter(
        pk=batch_id, lease_owner=owner, status__in=FINISHED_REMOTELY, logs_fetched_at__isnull=True
    )


def locked_batch(held: QuerySet[RemoteBatch], batch_id: int) -> RemoteBatch | None:
    """The batch `held` finds, locked; None when this pump is a stale writer; RowsGone once the run is deleted."""
    batch = held.select_for_update().first()
    if batch is None and not RemoteBatch.objects.filter(pk=batch_id).exists():
        raise RowsGone
    return batch


def held_for_costs(
    *, batch_id: int, run_id: int, owner: str, fields: Sequence[str] = ()
) -> tuple[Run, RemoteBatch | None]:
    """Lock the run (reading `fields` too), then the finished batch whose costs this pump holds: None
    for a stale writer."""
    run = lock_run(run_id, *fields)
    return run, locked_batch(owned_for_costs(batch_id, owner), batch_id)


def batch_costs_recorded(*, batch_id: int, run_id: int, owner: str, logs: Sequence[LogCost]) -> bool:
    """Record what a finished batch's execution logs say it cost: items, the batch and the run's totals.

    Each item's cost is its judge-level log's (`id == item.execution_log_id`), its evaluators' costs
    those of that log's children (`parent_execution_log_id`). Once per batch (`logs_fetched_at`), so a
    stale or repeated answer adds nothing to the run's totals. An item whose log is missing, or says
    no cost, stays unknown (None) and is not counted in `cost_items`.
    """
    now = timezone.now()
    with transaction.atomic():
        run, batch = held_for_costs(
            batch_id=batch_id, run_id=run_id, owner=owner, fields=["cost_by_evaluator"]
        )
        if batch is None:
            return False
        uncosted = Item.objects.filter(batch_id=batch_id, cost__isnull=True).exclude(execution_log_id="")
        costed = items_costed(uncosted.values_list("pk", "execution_log_id"), logs)
        if costed:
            seq = run.change_seq + 1  # the run is locked: as bump_change_seq would number it
            items_update(COST_FIELDS, [[cost, costs, seq, pk] for cost, costs, pk in costed])
            Run.objects.filter(pk=run_id).update(change_seq=seq, **_cost_totals(run, costed))
        run_budget_recheck(run)
        RemoteBatch.objects.filter(pk=batch_id).update(
            logs_fetched_at=now,
            cost=_total(costed) if costed else None,
            attempts=0,
            lease_until=None,
            lease_owner="",
        )
    return True


# What a costs read writes of an item.
COST_FIELDS = ["cost", "evaluator_costs", "change_seq"]


def items_costed(rows: Iterable[tuple[int, str]], logs: Sequence[LogCost]) -> list[list[Any]]:
    """[cost, evaluator costs, pk] of each item (pk, its log id) whose cost `logs` now tell.

    Each item's cost is its judge-level log's (`id == item.execution_log_id`), its evaluators' costs
    those of that log's children (`parent_execution_log_id`). An item whose log is missing, or says no
    cost, stays unknown and is left out.
    """
    by_id = {log.id: log for log in logs}
    children: dict[str, list[LogCost]] = {}
    for log in logs:
        if log.parent_execution_log_id:
            children.setdefault(log.parent_execution_log_id, []).append(log)
    costed: list[list[Any]] = []
    for pk, log_id in rows:
        evaluator_costs = named_costs(children.get(log_id, []))
        own = by_id.get(log_id)
        cost = own.cost if own is not None else None
        if cost is None and evaluator_costs:
            # No judge-level figure (or no judge-level log): what its evaluators cost is the item's.
            cost = sum(evaluator_costs.values())
        if cost is not None:
            costed.append([cost, evaluator_costs, pk])
    return costed


def _total(costed: Sequence[list[Any]]) -> float:
    return sum(cost for cost, _, _ in costed)


def _cost_totals(run: Run, costed: Sequence[list[Any]]) -> dict[str, Any]:
    """The run's cost totals with `costed` added (the run is locked and read with cost_by_evaluator)."""
    merged = dict(run.cost_by_evaluator)
    for _, evaluator_costs, _ in costed:
        for name, value in evaluator_costs.items():
            merged[name] = merged.get(name, 0.0) + value
    return {
        "cost_total": F("cost_total") + _total(costed),
        "cost_items": F("cost_items") + len(costed),
        "cost_by_evaluator": merged,
    }


def batch_logs_missing(*, batch_id: int, logs: Sequence[LogCost]) -> int:
    """How many of the batch's completed items have no judge-level log among `logs`."""
    listed = {log.id for log in logs}
    ids = (
        Item.objects.filter(batch_id=batch_id, status=Item.Status.COMPLETED)
        .exclude(execution_log_id="")
        .values_list("execution_log_id", flat=True)
    )
    return sum(1 for log_id in ids if log_id not in listed)


def named_costs(logs: Sequence[LogCost]) -> dict[str, float]:
    """{evaluator name: cost} of an item's child logs, named as `scores_for` names the item's scores."""
    costs: dict[str, float] = {}
    names: set[str] = set()
    for log in logs:
        name = log.executed_item_name or "evaluator"
        suffix = 2
        while name in names:
            name = f"{log.executed_item_name} ({suffix})"
            suffix += 1
        names.add(name)
        if log.cost is not None:
            costs[name[:512]] = log.cost
    return costs


def batch_costs_backed_off(
    *, batch_id: int, run_id: int, owner: str, error: JudgeError, delay: float
) -> bool:
    """Reading the logs failed in a way worth trying again after `delay` seconds. The items stay as
    they are (completed, cost unknown) and the run does not wait on it: it may even have finished."""
    now = timezone.now()
    with transaction.atomic():
        lock_run(run_id)
        update: dict[str, Any] = {
            "next_action_at": now + timedelta(seconds=delay),
            "lease_until": None,
            "lease_owner": "",
        }
        if error.throttled and not is_quota(error):
            update["attempts"] = F("attempts") - 1  # the server asked us to wait: not a failed try
        applied = owned_for_costs(batch_id, owner).update(**update)
    return bool(applied)


def batch_costs_given_up(*, batch_id: int, run_id: int, owner: str, message: str) -> bool:
    """The logs could not be read: the batch's cost stays unknown, and its last error says why."""
    now = timezone.now()
    with transaction.atomic():
        run, batch = held_for_costs(batch_id=batch_id, run_id=run_id, owner=owner)
        if batch is None:
            return False
        # A failed batch keeps its own message first: the cost note comes after it.
        last_error = f"{batch.last_error}\n{message}" if batch.last_error else message
        RemoteBatch.objects.filter(pk=batch_id).update(
            logs_fetched_at=now, last_error=last_error[:4000], lease_until=None, lease_owner=""
        )
        run_budget_recheck(run)
    return True


def run_budget_recheck(run: Run | int) -> None:
    """Lift a budget pause when what it rested on changed (a batch finished, costs came in): the pump
    asks the budget again before its next create, and pauses the run again, with the new figures, if
    it must. Inside the caller's transaction, under the run lock (given the run lock_run read, a run
    that is not paused costs no write)."""
    if isinstance(run, Run) and run.backoff_kind != BackoffKind.BUDGET:
        return
    run_id = run.pk if isinstance(run, Run) else run
    Run.objects.filter(pk=run_id, backoff_kind=BackoffKind.BUDGET).update(
        backoff_kind="", backoff_reason="", backoff_until=None, change_seq=F("change_seq") + 1
    )


# --- Back-off -----------------------------------------------------------------------------------------


def backoff_seconds(attempt: int, retry_after: float | None) -> float:
    """The server's Retry-After when it sent one; else exponential back-off with jitter."""
    if retry_after is not None:
        return retry_after
    # Half a second first: most failures pass at once, and a run waits on its slowest batch's retries.
    base = min(0.5 * 2 ** max(attempt - 1, 0), settings.DOCKET_BACKOFF_MAX_SECONDS)
    return min(base * random.uniform(0.5, 1.5), settings.DOCKET_BACKOFF_MAX_SECONDS)


def is_quota(error: JudgeError) -> bool:
    """A 429 that is a spent quota, not a passing throttle: it names a quota, or says no time to wait."""
    return error.throttled and ("quota" in error.code.lower() or error.retry_after is None)


def run_backoff_set(run_id: int, *, until: datetime, reason: str, kind: BackoffKind) -> None:
    Run.objects.filter(pk=run_id).update(
        backoff_until=until, backoff_reason=reason[:300], backoff_kind=kind, change_seq=F("change_seq") + 1
    )


def run_backoff_clear(run: Run) -> None:
    """A call went through: the run no longer waits, except for a throttle or quota still in force.

    `run` as lock_run read it: a run that waits for nothing (the usual case) costs no write.
    """
    if run.backoff_until is None:
        return
    now = timezone.now()
    Run.objects.filter(pk=run.pk).exclude(backoff_until=None).filter(
        Q(backoff_until__lte=now) | Q(backoff_kind=BackoffKind.ERROR) | Q(backoff_kind="")
    ).update(backoff_until=None, backoff_reason="", backoff_kind="", change_seq=F("change_seq") + 1)


def creates_paused_until(now: datetime) -> datetime | None:
    """While the judge API throttles (a 429 on any run's call), no run sends new batches until then."""
    return (
        Run.objects.filter(backoff_until__gt=now, backoff_kind=BackoffKind.THROTTLED)
        .order_by("-backoff_until")
        .values_list("backoff_until", flat=True)
        .first()
    )


# --- Scores -------------------------------------------------------------------------------------------


def scores_for(item: Item, results: Any) -> list[NewScore]:
    scores = []
    names: set[str] = set()
    for result in results:
        name = result.evaluator_name
        suffix = 2
        while name in names:
            name = f"{result.evaluator_name} ({suffix})"
            suffix += 1
        names.add(name)
        scores.append(
            NewScore(
                item_id=item.pk,
                run_id=item.run_id,
                evaluator_name=name[:512],
                evaluator_id=result.evaluator_id[:64],
                score=result.score,
                justification=result.justification,
                confidence=result.confidence,
            )
        )
    return scores


def _summary_with(run: Run, scores: list[NewScore]) -> tuple[dict[str, Any], list[str]]:
    """The locked run's per-evaluator running totals and evaluator names with the new scores folded in."""
    summary = run.score_summary
    evaluators = list(run.evaluators)
    for score in scores:
        if score.evaluator_name not in evaluators:
            evaluators.append(score.evaluator_name)
        if score.score is None:
            continue
        entry = summary.setdefault(
            score.evaluator_name, {"n": 0, "sum": 0.0, "min": score.score, "max": score.score}
        )
        entry["n"] += 1
        entry["sum"] += score.score
        entry["min"] = min(entry["min"], score.score)
        entry["max"] = max(entry["max"], score.score)
    return summary, evaluators
