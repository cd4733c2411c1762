"""The pump: sends every run's remote batches to the judge API and polls them until all items are done.

A reconciliation loop over `RemoteBatch` rows that are due. Each row is claimed by a lease (a
conditional UPDATE), so several pumps on several machines never work the same batch at once. HTTP
calls go out concurrently from a thread pool over one httpx client; every database write happens in
the pump's own thread, one short transaction per outcome.

Crash safety: a batch is marked SUBMITTING (and committed) before its create is sent. A create whose
outcome is unknown (a timeout, a dropped connection, a 5xx, a pump that died mid-call) leaves it
SUBMITTING, and the next attempt first looks for the batch's tag `docket:<run uid>:<position>` in
the judge's batch list. It is sent again only if it is not there: no batch is ever created twice.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import time
import uuid
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any, Literal

from django.conf import settings
from django.db import DatabaseError, close_old_connections, connection, transaction
from django.db.models import Count, F, Min, Q, QuerySet, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from evals.client import Batch, BatchCreated, JudgeAPI, JudgeError
from evals.models import Item, JudgeApiEvent, PumpSlot, RemoteBatch, Run, Score
from evals.services.runs import bump_change_seq, run_finish_if_done, wake_pump

logger = logging.getLogger("evals.pump")

# A dead pump's slot frees this long after its last heartbeat (renewed every SLOT_RENEW_SECONDS).
SLOT_LEASE_SECONDS = 15.0
# Batches claimed per round when calls run inline (concurrency 1).
INLINE_CLAIMS = 8
SLOT_RENEW_SECONDS = 5.0
# Look back this far (plus the batch's first send) when searching for a create that may have happened.
LOOKUP_SLACK = timedelta(minutes=10)
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
THROTTLED = "judge API throttled"
ITEM_FIELDS = ["status", "error_message", "execution_log_id", "started_at", "completed_at", "change_seq"]


class RowsGone(Exception):
    """The run (or the batch) an answer is for was deleted while the call was out: nothing to record."""


def pump_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def batch_lease() -> timedelta:
    # Longer than any one call can take, so a lease never runs out under a call in progress.
    return timedelta(seconds=2 * settings.JUDGE_API_TIMEOUT + 30)


# --- Slots: how many pumps may run at once ------------------------------------------------------------


def slot_acquire(owner: str) -> int | None:
    now = timezone.now()
    for number in range(settings.DOCKET_PUMP_SLOTS):
        PumpSlot.objects.get_or_create(slot=number)
        taken = (
            PumpSlot.objects.filter(slot=number)
            .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
            .update(owner=owner, lease_until=now + timedelta(seconds=SLOT_LEASE_SECONDS), beat_at=now)
        )
        if taken:
            return number
    return None


def slot_renew(number: int, owner: str, *, worked: int = 0) -> bool:
    now = timezone.now()
    return bool(
        PumpSlot.objects.filter(slot=number, owner=owner).update(
            lease_until=now + timedelta(seconds=SLOT_LEASE_SECONDS),
            beat_at=now,
            batches_worked=F("batches_worked") + worked,
        )
    )


def slot_release(number: int, owner: str) -> None:
    PumpSlot.objects.filter(slot=number, owner=owner).update(lease_until=None, beat_at=timezone.now())


def slot_wait_for_expiry(owner: str) -> int | None:
    """When every slot is held, wait once for the first lease to run out, then try again.

    A pump that died (a killed worker) keeps its slot until the lease runs out; a pump started by
    the restarted worker waits for that instead of leaving the runs idle until the watchdog's next
    round. A live pump renews its lease, so the second try fails and this pump steps aside.
    """
    first_expiry = PumpSlot.objects.filter(lease_until__isnull=False).aggregate(at=Min("lease_until"))["at"]
    if first_expiry is None:
        return None
    wait_seconds = (first_expiry - timezone.now()).total_seconds()
    if not 0 < wait_seconds <= SLOT_LEASE_SECONDS:
        return None
    time.sleep(wait_seconds + 0.5)
    return slot_acquire(owner)


def pump_alive() -> bool:
    return PumpSlot.objects.filter(lease_until__gte=timezone.now()).exists()


# --- Actions: what one claimed batch needs, done off the database thread ------------------------------


@dataclass
class Action:
    kind: Literal["create", "lookup", "poll"]
    batch_id: int
    run_id: int
    attempt: int
    judge_remote_id: str
    tag: str
    remote_id: str = ""
    judge_version_id: str = ""
    tags: list[str] = field(default_factory=list)
    inputs: list[dict[str, Any]] = field(default_factory=list)
    since: datetime | None = None


@dataclass
class Outcome:
    action: Action
    result: BatchCreated | Batch | None = None
    error: JudgeError | None = None


def perform(api: JudgeAPI, action: Action) -> Outcome:
    try:
        if action.kind == "create":
            created = api.create_batch(
                action.judge_remote_id,
                inputs=action.inputs,
                tags=action.tags,
                judge_version_id=action.judge_version_id or None,
                attempt=action.attempt,
            )
            return Outcome(action, created)
        if action.kind == "lookup":
            assert action.since is not None
            found = api.find_batch_by_tag(judge_id=action.judge_remote_id, tag=action.tag, since=action.since)
            return Outcome(action, found)
        return Outcome(action, api.get_batch(action.remote_id, attempt=action.attempt))
    except JudgeError as error:
        return Outcome(action, error=error)
    except Exception as error:  # a bug must not kill the pump; it is shown on the batch instead
        logger.exception("pump action %s on batch %s failed", action.kind, action.batch_id)
        message = f"Unexpected error: {type(error).__name__}: {error}"
        return Outcome(action, error=JudgeError(message, outcome_unknown=action.kind == "create"))


# --- The pump -----------------------------------------------------------------------------------------


@dataclass
class PumpReport:
    owner: str
    slot: int | None
    actions: int = 0
    seconds: float = 0.0


class Pump:
    def __init__(self, *, api: JudgeAPI, owner: str, concurrency: int | None = None) -> None:
        self.api = api
        self.owner = owner
        self.concurrency = max(concurrency or settings.DOCKET_HTTP_CONCURRENCY, 1)
        # With one lane, calls run inline: simpler to follow, and tests stay on one connection.
        self.executor = ThreadPoolExecutor(self.concurrency, "pump") if self.concurrency > 1 else None
        self.in_progress: dict[Future[Outcome], Action] = {}
        self.actions = 0

    def close(self) -> None:
        if self.executor:
            self.executor.shutdown(wait=True)

    def work(self, *, deadline: float, slot: int | None = None) -> None:
        """Claim, call and record until `deadline` (monotonic) or until there is nothing left to do."""
        next_renew = time.monotonic() + SLOT_RENEW_SECONDS
        worked_since_renew = 0
        while True:
            claiming = time.monotonic() < deadline
            try:
                saturated = False
                if claiming:
                    room = self.concurrency - len(self.in_progress) if self.executor else INLINE_CLAIMS
                    actions = self.claim(limit=room)
                    for action in actions:
                        self.dispatch(action)
                    worked_since_renew += len(actions)
                    # A full claim may have left more work due right now: go again without waiting.
                    saturated = room > 0 and len(actions) == room
                if not self.in_progress and (not claiming or not RemoteBatch.objects.unfinished().exists()):
                    return
                if saturated and self.executor is None:
                    continue
                self.collect(timeout=self.wait_seconds())
                if slot is not None and time.monotonic() >= next_renew:
                    if not slot_renew(slot, self.owner, worked=worked_since_renew):
                        logger.warning("pump %s lost its slot; stopping", self.owner)
                        deadline = 0.0
                    next_renew = time.monotonic() + SLOT_RENEW_SECONDS
                    worked_since_renew = 0
            except DatabaseError:
                # The database went away (a restart, a failover): wait and reconnect. Calls in
                # flight keep their leases; whatever could not be recorded is picked up again later.
                logger.exception("pump %s: database error; retrying in a second", self.owner)
                close_old_connections()
                time.sleep(1.0)

    def wait_seconds(self) -> float:
        """Until the next batch is due, at most a second (new runs and cancels are noticed that fast)."""
        next_due = (
            RemoteBatch.objects.unfinished()
            .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=timezone.now()))
            .aggregate(at=Min("next_action_at"))["at"]
        )
        if next_due is None:
            return 1.0
        return min(max((next_due - timezone.now()).total_seconds(), 0.02), 1.0)

    def dispatch(self, action: Action) -> None:
        self.actions += 1
        if self.executor is None:
            self.record(perform(self.api, action))
        else:
            self.in_progress[self.executor.submit(perform, self.api, action)] = action

    def collect(self, *, timeout: float) -> None:
        if not self.in_progress:
            time.sleep(timeout)
            return
        done, _ = wait(list(self.in_progress), timeout=timeout, return_when=FIRST_COMPLETED)
        for future in done:
            self.in_progress.pop(future)
            self.record(future.result())

    # --- Claiming -----------------------------------------------------------------------------------

    def claim(self, *, limit: int) -> list[Action]:
        if limit <= 0:
            return []
        now = timezone.now()
        lease = {"lease_until": now + batch_lease(), "lease_owner": self.owner, "attempts": F("attempts") + 1}
        due = RemoteBatch.objects.due(now)
        actions: list[Action] = []

        # Batches already sent (or maybe sent) come first: they hold the judge's capacity.
        sent = due.filter(status__in=[RemoteBatch.Status.SUBMITTING, RemoteBatch.Status.RUNNING])
        for batch in self.take(sent.order_by("next_action_at"), limit=limit, **lease):
            actions.append(self.action_for(batch, now=now))
        limit -= len(actions)
        if limit <= 0:
            return actions

        if Run.objects.filter(backoff_until__gt=now, backoff_reason=THROTTLED).exists():
            # The judge API is shared: while it throttles one run, no run sends new batches.
            return actions
        in_flight = RemoteBatch.objects.in_flight()
        total_free = settings.DOCKET_MAX_IN_FLIGHT - in_flight.count()
        per_run = dict(in_flight.values_list("run").annotate(n=Count("id")).values_list("run", "n"))
        runs = (
            Run.objects.active()
            .filter(cancel_requested_at=None)
            .filter(Q(backoff_until__isnull=True) | Q(backoff_until__lte=now))
            .filter(batches__status=RemoteBatch.Status.WAITING)
            .distinct()
            .order_by("created_at", "pk")
        )
        for run in runs:
            room = min(settings.DOCKET_MAX_IN_FLIGHT_PER_RUN - per_run.get(run.pk, 0), total_free, limit)
            if total_free <= 0 or limit <= 0:
                break
            if room <= 0:
                continue
            waiting = due.filter(run=run, status=RemoteBatch.Status.WAITING).order_by("position")
            taken = self.take(
                waiting,
                limit=room,
                status=RemoteBatch.Status.SUBMITTING,
                submitted_at=Coalesce(F("submitted_at"), Value(now)),
                **lease,
            )
            if taken and run.status == Run.Status.QUEUED:
                Run.objects.filter(pk=run.pk, status=Run.Status.QUEUED).update(
                    status=Run.Status.RUNNING, started_at=now, change_seq=F("change_seq") + 1
                )
            for batch in taken:
                actions.append(self.create_action(batch))
            total_free -= len(taken)
            limit -= len(taken)
        return actions

    def take(self, candidates: QuerySet[RemoteBatch], *, limit: int, **updates: Any) -> list[RemoteBatch]:
        """Lease up to `limit` of the candidates; another pump taking the same rows gets none of them.

        Where the database can (PostgreSQL), rows another pump is claiming right now are skipped
        (FOR UPDATE SKIP LOCKED); elsewhere each row is taken by a conditional UPDATE that only one
        pump can win. Either way the lease, not the lock, is what keeps the batch ours afterwards.
        """
        if limit <= 0:
            return []
        if connection.features.has_select_for_update_skip_locked:
            with transaction.atomic():
                ids = list(
                    candidates.select_for_update(skip_locked=True).values_list("pk", flat=True)[:limit]
                )
                RemoteBatch.objects.filter(pk__in=ids).update(**updates)
        else:
            now = timezone.now()
            free = Q(lease_until__isnull=True) | Q(lease_until__lt=now)
            ids = []
            for pk, status in candidates.values_list("pk", "status")[:limit]:
                if RemoteBatch.objects.filter(pk=pk, status=status).filter(free).update(**updates):
                    ids.append(pk)
        batches = RemoteBatch.objects.filter(pk__in=ids).select_related("run", "run__judge")
        return sorted(batches, key=lambda batch: ids.index(batch.pk))

    def action_for(self, batch: RemoteBatch, *, now: datetime) -> Action:
        common = {
            "batch_id": batch.pk,
            "run_id": batch.run_id,
            "attempt": batch.attempts,
            "judge_remote_id": batch.run.judge.remote_id,
            "tag": batch.tag,
        }
        if batch.status == RemoteBatch.Status.RUNNING:
            return Action(kind="poll", remote_id=batch.remote_id, **common)  # type: ignore[arg-type]
        since = (batch.submitted_at or now) - LOOKUP_SLACK
        return Action(kind="lookup", since=since, **common)  # type: ignore[arg-type]

    def create_action(self, batch: RemoteBatch) -> Action:
        items = Item.objects.filter(batch=batch).select_related("example").order_by("index_in_batch")
        return Action(
            kind="create",
            batch_id=batch.pk,
            run_id=batch.run_id,
            attempt=batch.attempts,
            judge_remote_id=batch.run.judge.remote_id,
            judge_version_id=batch.run.judge_version_id,
            tag=batch.tag,
            tags=[batch.tag, *batch.run.tags],
            inputs=[item.example.as_judge_input() for item in items],
        )

    # --- Recording outcomes -------------------------------------------------------------------------

    def record(self, outcome: Outcome) -> None:
        action = outcome.action
        try:
            self.record_outcome(outcome)
        except RowsGone:
            logger.info("pump dropped the %s of batch %s: its run was deleted", action.kind, action.tag)
        except Exception:
            # A delete that raced the write (a lock or a foreign key that lost) is still a deletion.
            if not RemoteBatch.objects.filter(pk=action.batch_id).exists():
                logger.info("pump dropped the %s of batch %s: its run was deleted", action.kind, action.tag)
                return
            # The batch keeps its lease until it runs out, then another attempt picks it up.
            logger.exception("pump could not record %s of batch %s", action.kind, action.tag)

    def record_outcome(self, outcome: Outcome) -> None:
        action = outcome.action
        if outcome.error is not None:
            self.record_error(action, outcome.error)
        elif action.kind == "create":
            assert isinstance(outcome.result, BatchCreated)
            self.record_created(action, remote_id=outcome.result.id)
        elif action.kind == "lookup":
            assert outcome.result is None or isinstance(outcome.result, Batch)
            self.record_lookup(action, outcome.result)
        else:
            assert isinstance(outcome.result, Batch)
            self.record_poll(action, outcome.result)

    def record_created(self, action: Action, *, remote_id: str) -> None:
        now = timezone.now()
        with transaction.atomic():
            lock_run(action)
            RemoteBatch.objects.filter(pk=action.batch_id).update(
                status=RemoteBatch.Status.RUNNING,
                remote_id=remote_id,
                attempts=0,
                last_error="",
                next_action_at=now + timedelta(seconds=settings.DOCKET_POLL_MIN_SECONDS),
                poll_interval=settings.DOCKET_POLL_MIN_SECONDS,
                lease_until=None,
            )
            clear_backoff(action.run_id)
        logger.info("batch %s created remotely as %s", action.tag, remote_id)

    def record_lookup(self, action: Action, found: Batch | None) -> None:
        now = timezone.now()
        with transaction.atomic():
            lock_run(action)
            if found is not None:
                logger.info(
                    "batch %s was created after all (as %s); not sending it again", action.tag, found.id
                )
                RemoteBatch.objects.filter(pk=action.batch_id).update(
                    status=RemoteBatch.Status.RUNNING,
                    remote_id=found.id,
                    attempts=0,
                    last_error="",
                    next_action_at=now,
                    lease_until=None,
                )
                clear_backoff(action.run_id)
                return
            run = Run.objects.get(pk=action.run_id)
            if run.cancel_requested_at:
                cancel_batch(action.batch_id, run_id=action.run_id)
                return
            # Not there: the create never happened, so it is safe to send it.
            RemoteBatch.objects.filter(pk=action.batch_id).update(
                status=RemoteBatch.Status.WAITING, next_action_at=now, lease_until=None
            )

    def record_poll(self, action: Action, remote: Batch) -> None:
        now = timezone.now()
        batch = RemoteBatch.objects.filter(pk=action.batch_id).first()
        if batch is None:
            raise RowsGone
        items = {item.index_in_batch: item for item in Item.objects.filter(batch=batch)}
        changed: list[Item] = []
        scores: list[Score] = []
        completed = failed = 0
        for remote_item in remote.items:
            item = items.get(remote_item.index)
            if item is None or item.is_finished:
                continue
            status = REMOTE_TO_ITEM.get(remote_item.status, Item.Status.PENDING)
            if status == item.status:
                continue
            item.status = status
            item.started_at = remote_item.started_at or item.started_at
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

        interval = self.next_poll_seconds(batch, remote, now=now, progressed=bool(changed))
        with transaction.atomic():
            run = lock_run(action)
            # The run's first completed items: time to learn its thresholds from one of their logs.
            learn = completed > 0 and run.completed_count == 0 and run.thresholds_learned_at is None
            if not RemoteBatch.objects.filter(pk=batch.pk).exists():
                raise RowsGone
            batch_update: dict[str, Any] = {
                "remote_status": remote.status,
                "attempts": 0,
                "last_error": "",
                "polls": F("polls") + 1,
                "lease_until": None,
                "poll_interval": interval,
                "next_action_at": now + timedelta(seconds=interval),
            }
            if remote.is_finished:
                batch_update.update(status=REMOTE_TO_BATCH[remote.status], finished_at=now)
            if changed:
                seq = bump_change_seq(action.run_id)
                for item in changed:
                    item.change_seq = seq
                Item.objects.bulk_update(changed, ITEM_FIELDS)
                Score.objects.bulk_create(scores, ignore_conflicts=True)
                Run.objects.filter(pk=action.run_id).update(
                    completed_count=F("completed_count") + completed, failed_count=F("failed_count") + failed
                )
                if scores:
                    add_to_summary(action.run_id, scores)
            RemoteBatch.objects.filter(pk=batch.pk).update(**batch_update)
            clear_backoff(action.run_id)
            if remote.is_finished:
                run_finish_if_done(run_id=action.run_id)
            if learn:
                transaction.on_commit(partial(learn_thresholds_later, action.run_id))

    def next_poll_seconds(
        self, batch: RemoteBatch, remote: Batch, *, now: datetime, progressed: bool
    ) -> float:
        """When to look again: at the predicted end of the batch, else a little later than last time."""
        low, high = settings.DOCKET_POLL_MIN_SECONDS, settings.DOCKET_POLL_MAX_SECONDS
        done = remote.completed_count + remote.failed_count
        if remote.started_at and done:
            rate = done / max((now - remote.started_at).total_seconds(), 0.001)
            predicted = (remote.total_count - done) / rate
            return min(max(predicted, low), high)
        if progressed:
            return low
        return min(max(batch.poll_interval * 1.6, low), high)

    def record_error(self, action: Action, error: JudgeError) -> None:
        now = timezone.now()
        limit = (
            settings.DOCKET_MAX_POLL_ATTEMPTS
            if action.kind == "poll"
            else settings.DOCKET_MAX_CREATE_ATTEMPTS
        )
        with transaction.atomic():
            # First: a failed call for a run deleted meanwhile is no failure worth a warning or an event.
            lock_run(action)
            logger.warning(
                "batch %s: %s failed (attempt %d%s): %s",
                action.tag,
                action.kind,
                action.attempt,
                ", permanent" if error.permanent else "",
                error.message,
            )
            JudgeApiEvent.objects.create(
                action=action.kind,
                status=error.reason,
                throttled=error.throttled,
                message=error.message[:2000],
                attempt=action.attempt,
                run_id=action.run_id,
            )
            if error.permanent or action.attempt >= limit:
                if error.permanent:
                    message = f"The judge API rejected this batch: {error.message}"
                else:
                    message = f"Gave up after {action.attempt} attempts. Last error: {error.message}"
                # The judge refused what was sent (a 400 or 422 on the batch): the same items sent again
                # are refused again. Not a refused key (fixed in settings), nor a poll's error (a batch
                # the judge lost can be sent anew), nor giving up after passing failures.
                unfixable = error.permanent and action.kind == "create" and error.status not in (401, 403)
                fail_batch(action.batch_id, run_id=action.run_id, message=message, permanent=unfixable)
                return
            delay = backoff_seconds(action.attempt, error.retry_after)
            if action.kind == "create":
                # Unknown outcome: stay SUBMITTING, so the next attempt looks the batch up first.
                status = (
                    RemoteBatch.Status.SUBMITTING if error.outcome_unknown else RemoteBatch.Status.WAITING
                )
            elif action.kind == "lookup":
                status = RemoteBatch.Status.SUBMITTING
            else:
                status = RemoteBatch.Status.RUNNING
            RemoteBatch.objects.filter(pk=action.batch_id).update(
                status=status,
                last_error=error.message[:2000],
                next_action_at=now + timedelta(seconds=delay),
                lease_until=None,
            )
            reason = THROTTLED if error.throttled else f"judge API error: {error.message[:200]}"
            set_backoff(action.run_id, until=now + timedelta(seconds=delay), reason=reason)


def backoff_seconds(attempt: int, retry_after: float | None) -> float:
    """Exponential back-off with jitter; the server's Retry-After wins when it asks for longer."""
    base = min(2 ** max(attempt - 1, 0), settings.DOCKET_BACKOFF_MAX_SECONDS)
    delay = base * random.uniform(0.8, 1.2)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return min(delay, max(settings.DOCKET_BACKOFF_MAX_SECONDS, retry_after or 0.0))


def scores_for(item: Item, results: Any) -> list[Score]:
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
            Score(
                item=item,
                run_id=item.run_id,
                evaluator_name=name[:512],
                evaluator_id=result.evaluator_id[:64],
                score=result.score,
                justification=result.justification,
                confidence=result.confidence,
            )
        )
    return scores


def add_to_summary(run_id: int, scores: list[Score]) -> None:
    """Fold new scores into the run's per-evaluator running totals (the run row is locked already)."""
    run = Run.objects.only("evaluators", "score_summary").get(pk=run_id)
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
    Run.objects.filter(pk=run_id).update(score_summary=summary, evaluators=evaluators)


def set_backoff(run_id: int, *, until: datetime, reason: str) -> None:
    Run.objects.filter(pk=run_id).update(
        backoff_until=until, backoff_reason=reason[:300], change_seq=F("change_seq") + 1
    )


def clear_backoff(run_id: int) -> None:
    Run.objects.filter(pk=run_id).exclude(backoff_until=None).update(
        backoff_until=None, backoff_reason="", change_seq=F("change_seq") + 1
    )


def fail_batch(batch_id: int, *, run_id: int, message: str, permanent: bool = False) -> None:
    """Give up on a batch: its unfinished items fail with `message` (inside a transaction).

    `permanent`: the judge rejected what the batch sent (a 400 or 422), so sending the same items again
    cannot help; retries skip them (Item.error_is_permanent).
    """
    now = timezone.now()
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
    Run.objects.filter(pk=run_id).update(failed_count=F("failed_count") + failed, last_error=message[:2000])
    RemoteBatch.objects.filter(pk=batch_id).update(
        status=RemoteBatch.Status.FAILED, last_error=message[:2000], finished_at=now, lease_until=None
    )
    run_finish_if_done(run_id=run_id)


def lock_run(action: Action) -> Run:
    """Lock the action's run for the rest of the transaction, or raise RowsGone if it was deleted.

    Every write of an outcome takes this lock first, the run being the root of everything deleted with
    it: a delete that holds it makes the late answer find nothing here, instead of half writing it.
    """
    run = (
        Run.objects.select_for_update()
        .only("pk", "completed_count", "thresholds_learned_at")
        .filter(pk=action.run_id)
        .first()
    )
    if run is None:
        raise RowsGone
    return run


def learn_thresholds_later(run_id: int) -> None:
    """A task that reads one execution log of the run and keeps its thresholds (off the pump's loop:
    the pump only records; a lost task is made up for by the watchdog)."""
    from django_q.tasks import async_task

    async_task("evals.tasks.run_thresholds_learn", run_id, task_name="thresholds", group="thresholds")


def cancel_batch(batch_id: int, *, run_id: int) -> None:
    now = timezone.now()
    seq = bump_change_seq(run_id)
    cancelled = (
        Item.objects.filter(batch_id=batch_id)
        .exclude(status__in=Item.FINISHED)
        .update(status=Item.Status.CANCELLED, error_message="Cancelled before it was sent.", change_seq=seq)
    )
    Run.objects.filter(pk=run_id).update(cancelled_count=F("cancelled_count") + cancelled)
    RemoteBatch.objects.filter(pk=batch_id).update(
        status=RemoteBatch.Status.CANCELLED, finished_at=now, lease_until=None
    )
    run_finish_if_done(run_id=run_id)


def pump(
    *,
    budget_seconds: float | None = None,
    api: JudgeAPI | None = None,
    concurrency: int | None = None,
    requeue: bool = True,
) -> PumpReport:
    """Work every run for a bounded time, then hand over to a fresh task while work remains."""
    owner = pump_owner()
    slot = slot_acquire(owner)
    if slot is None:
        slot = slot_wait_for_expiry(owner)
    report = PumpReport(owner=owner, slot=slot)
    if report.slot is None:
        return report  # every slot is held by a live pump, which will see any new work within a second
    started = time.monotonic()
    own_api = api is None
    api = api or JudgeAPI.from_settings()
    worker = Pump(api=api, owner=owner, concurrency=concurrency)
    try:
        budget = settings.DOCKET_PUMP_SLICE_SECONDS if budget_seconds is None else budget_seconds
        worker.work(deadline=started + budget, slot=report.slot)
    finally:
        worker.close()
        if own_api:
            api.close()
        slot_release(report.slot, owner)
    report.actions = worker.actions
    report.seconds = time.monotonic() - started
    # After releasing the slot, so a run created meanwhile is never left without a pump.
    if requeue and RemoteBatch.objects.unfinished().exists():
        wake_pump()
    return report
