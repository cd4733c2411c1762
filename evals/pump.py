"""The pump: sends every run's remote batches to the judge API and polls them until all items are done.

A reconciliation loop over `RemoteBatch` rows: claim what is due (a lease, so several pumps never work
one batch at once), perform the calls from a thread pool over one httpx client, apply each outcome as
a transition of evals/services/batches.py in the pump's own thread, then sleep until the next thing
can be due. The transitions own every change of a batch; this module owns only timing and HTTP.

Crash safety: a batch is marked SUBMITTING (and committed) before its create is sent. A create whose
outcome is unknown (a timeout, a dropped connection, a 5xx, a pump that died mid-call) leaves it
SUBMITTING, and the next attempt first looks for the batch's tag `docket:<run uid>:<position>` in
the judge's batch list. It is sent again only if it is not there: no batch is ever created twice.

Throttling is per judge API: a 429 on any call pauses every run's new creates until its Retry-After
(polls of batches already sent go on), and creates then resume under an additive-increase /
multiplicative-decrease window of batches in flight.

Costs: once a batch has finished, its execution logs are read in one list call (`batch_execution_id`)
and recorded once (`logs_fetched_at`), even after its run finished. A run with a cap (`max_cost`)
sends a batch only while spent, plus what is out, plus the batch, at the estimated cost per item,
stays within it; else the run is paused (evals/services/costs.py) and sends nothing until it is raised.

One unit over 450 lines: one state machine (claim, perform, apply, sleep) and the window, lease and
timing state it keeps between turns; its transitions are in batches.py.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Literal, TypedDict

from django.conf import settings
from django.db import DatabaseError, close_old_connections, transaction
from django.db.models import Count, F, Min, Q, QuerySet, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from evals.client import Batch, BatchCreated, JudgeAPI, JudgeError, LogCost
from evals.models import (
    JUDGE_INPUT_FIELDS,
    BackoffKind,
    Example,
    Item,
    JudgeApiEvent,
    PumpSlot,
    RemoteBatch,
    Run,
)
from evals.services.batches import (
    QUOTA_RETRY_SECONDS,
    RowsGone,
    backoff_seconds,
    batch_backed_off,
    batch_costs_backed_off,
    batch_costs_given_up,
    batch_costs_recorded,
    batch_fail,
    batch_logs_missing,
    batch_looked_up,
    batch_polled,
    batch_split,
    batch_submitted,
    batches_claim,
    batches_costs_due,
    creates_paused_until,
    is_quota,
    lock_run,
)
from evals.services.costs import budget_check, run_budget_pause
from evals.services.judges import judge_api
from evals.tasks import wake_pump

logger = logging.getLogger("evals.pump")

# A dead pump's slot frees this long after its last heartbeat (renewed every SLOT_RENEW_SECONDS).
SLOT_LEASE_SECONDS = 15.0
SLOT_RENEW_SECONDS = 5.0
# A holder that beat this recently is alive: a newcomer steps aside at once instead of waiting.
SLOT_FRESH_SECONDS = SLOT_RENEW_SECONDS + 2.0
# Batches claimed per round when calls run inline (concurrency 1).
INLINE_CLAIMS = 8
# The longest sleep between claim rounds: new runs and cancels are noticed this fast.
MAX_WAIT_SECONDS = 1.0
# Look back this far (plus the batch's first send) when searching for a create that may have happened.
LOOKUP_SLACK = timedelta(minutes=10)
# Reading a finished batch's execution logs is given up after this many failed tries: its cost stays
# unknown (the items are judged and kept either way).
COST_READ_ATTEMPTS = 5
# Page sizes of the execution log list. A batch writes a log per item plus one per evaluator and item
# (400 logs for 100 items and 3 evaluators): a page sized to that reads a batch in one call. A server
# with a lower maximum caps the page size (as DRF does) and the cursor reads the rest.
LOG_PAGE_SIZE = 100
LOG_PAGE_SIZE_MAX = 1000


def pump_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


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
    """When every slot is held by a pump that stopped beating, wait for its lease to run out, then retry.

    A pump that died (a killed worker) keeps its slot until the lease runs out; a pump started by
    the restarted worker waits for that instead of leaving the runs idle until the watchdog's next
    round. A holder whose heartbeat is fresh is alive and sees new work within a second: then this
    pump returns at once and frees its worker (every run create and worker start wakes a pump).
    """
    now = timezone.now()
    held = PumpSlot.objects.filter(lease_until__gte=now)
    if held.filter(beat_at__gte=now - timedelta(seconds=SLOT_FRESH_SECONDS)).count() >= held.count():
        return None
    first_expiry = held.aggregate(at=Min("lease_until"))["at"]
    if first_expiry is None:
        return None
    wait_seconds = (first_expiry - now).total_seconds()
    if not 0 < wait_seconds <= SLOT_LEASE_SECONDS:
        return None
    time.sleep(wait_seconds + 0.5)
    return slot_acquire(owner)


def pump_alive() -> bool:
    return PumpSlot.objects.filter(lease_until__gte=timezone.now()).exists()


def pump_seen_within(seconds: float) -> bool:
    """A pump holds a slot, or beat or released one in the last `seconds`.

    A pump ends each slice by releasing its slot (stamping `beat_at`) and enqueueing the next slice, which
    a worker picks up a moment later: between the two no slot is held, yet the worker is alive. Waiting
    clients that took "no slot held" for "no worker" worked runs themselves on every handover (56 times
    in a 100,000-item run, bench/pipeline.py --zero-latency).
    """
    now = timezone.now()
    recent = Q(beat_at__gte=now - timedelta(seconds=seconds))
    return PumpSlot.objects.filter(Q(lease_until__gte=now) | recent).exists()


def pump_has_work() -> bool:
    """Batches to send or poll, or finished batches whose costs are still to be read.

    The waiting batches of a run paused by its budget are not work: nothing is sent until someone
    raises its cap (which wakes the pump), so a pump must not stay up for them.
    """
    paused = Q(status=RemoteBatch.Status.WAITING, run__backoff_kind=BackoffKind.BUDGET)
    return RemoteBatch.objects.unfinished().exclude(paused).exists() or batches_costs_due().exists()


# --- Actions: what one claimed batch needs, done off the database thread ------------------------------


@dataclass
class Action:
    kind: Literal["create", "lookup", "poll", "costs"]
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
    # An evaluator set runs these evaluators instead of the judge; "" project: the judge's own.
    evaluator_ids: list[str] = field(default_factory=list)
    project_id: str = ""
    page_size: int = LOG_PAGE_SIZE


class Held(TypedDict):
    """Which batch an outcome is for and who holds its lease: what every transition is conditional on."""

    batch_id: int
    run_id: int
    owner: str


@dataclass
class Outcome:
    action: Action
    result: BatchCreated | Batch | list[LogCost] | None = None
    error: JudgeError | None = None
    # A poll that found the batch finished read its costs too, in the same round trip: that read's outcome.
    costs: Outcome | None = None


def perform(api: JudgeAPI, action: Action) -> Outcome:
    try:
        if action.kind == "create":
            created = api.create_batch(
                None if action.evaluator_ids else action.judge_remote_id,
                inputs=action.inputs,
                tags=action.tags,
                judge_version_id=action.judge_version_id or None,
                evaluator_ids=action.evaluator_ids or None,
                project_id=action.project_id or None,
                attempt=action.attempt,
            )
            return Outcome(action, created)
        if action.kind == "lookup":
            assert action.since is not None
            found = api.find_batch_by_tag(
                judge_id=None if action.evaluator_ids else action.judge_remote_id,
                tag=action.tag,
                since=action.since,
                project_id=action.project_id or None,
            )
            return Outcome(action, found)
        if action.kind == "costs":
            logs = api.list_execution_log_costs(
                batch_execution_id=action.remote_id,
                page_size=action.page_size,
                project_id=action.project_id or None,
            )
            return Outcome(action, list(logs))
        polled = Outcome(action, api.get_batch(action.remote_id, attempt=action.attempt))
        if costs_ready(polled.result):
            # Its costs are what a finished batch needs next: read them now, and record them with the
            # poll (batch_polled), rather than in a claim round and a transaction of their own (a
            # claim, two locks and seven queries per batch; issue 16).
            polled.costs = perform(api, replace(action, kind="costs", attempt=1))
        return polled
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
        # Batches in flight this pump lets the judge API have: halved on a 429, +1 per accepted create.
        self.window = float(settings.DOCKET_MAX_IN_FLIGHT)
        # One cut per throttle: the 429s of creates sent together are one signal, not several.
        self.window_cut_until = 0.0

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
                if not self.in_progress and (not claiming or not pump_has_work()):
                    return
                if saturated and self.executor is None:
                    continue
                self.collect(timeout=self.wait_seconds(claiming=claiming))
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

    def wait_seconds(self, *, claiming: bool = True) -> float:
        """Until the next claim can take something, at most a second; a reply in progress wakes us sooner."""
        if not claiming or (self.executor and len(self.in_progress) >= self.concurrency):
            return MAX_WAIT_SECONDS  # only a reply can change anything now, and collect wakes on it
        now = timezone.now()
        # With replies on their way, each one wakes the loop into a claim round: only a poll coming due
        # before them is worth waking for, and one query finds it. (Every kind of work took six, as
        # often as replies came: a tenth of the worker's CPU per item, issue 16.) Whatever else comes
        # due meanwhile waits for the next reply, or MAX_WAIT_SECONDS at most.
        next_at = self.next_poll_at(now) if self.in_progress else self.next_claim_at(now)
        if next_at is None:
            return MAX_WAIT_SECONDS
        return min(max((next_at - now).total_seconds(), 0.01), MAX_WAIT_SECONDS)

    def next_poll_at(self, now: datetime) -> datetime | None:
        """When the first batch already sent that no pump holds comes due (now, if one has no time)."""
        free = Q(lease_until__isnull=True) | Q(lease_until__lt=now)
        sent = RemoteBatch.objects.in_flight().filter(free)
        at: datetime | None = sent.aggregate(at=Min(Coalesce("next_action_at", Value(now))))["at"]
        return at

    def next_claim_at(self, now: datetime) -> datetime | None:
        """The earliest time `claim` can take a batch: the same rules as claim, read without taking.

        A past-due batch that claim cannot take (its run at the in-flight cap, creates paused by a
        throttle, its run cancelled) does not count, or the pump would spin on it.
        """
        free = Q(lease_until__isnull=True) | Q(lease_until__lt=now)
        times: list[datetime] = []
        sent_at = self.next_poll_at(now)
        if sent_at is not None:
            times.append(sent_at)
        costs_at = (
            batches_costs_due().filter(free).aggregate(at=Min(Coalesce("next_action_at", Value(now))))["at"]
        )
        if costs_at is not None:
            times.append(costs_at)
        room = self.create_room(now)
        if isinstance(room, datetime):
            times.append(room)
        elif room is not None:
            total_free, per_run = room
            waiting = (
                RemoteBatch.objects.filter(status=RemoteBatch.Status.WAITING)
                .filter(free)
                .filter(
                    run__in=Run.objects.active()
                    .filter(cancel_requested_at=None)
                    .exclude(backoff_kind=BackoffKind.BUDGET)
                )
                .values("run_id", "run__backoff_until")
                .annotate(at=Min(Coalesce("next_action_at", Value(now))))
            )
            for row in waiting:
                if per_run.get(row["run_id"], 0) < settings.DOCKET_MAX_IN_FLIGHT_PER_RUN:
                    times.append(max(row["at"], row["run__backoff_until"] or now))
        return min(times) if times else None

    def create_room(self, now: datetime) -> tuple[int, dict[int, int]] | datetime | None:
        """Batches that may be sent now (in all, and in flight per run); the end of a pause; or None."""
        paused_until = creates_paused_until(now)
        if paused_until is not None:
            return paused_until
        # One query for both: every batch in flight belongs to a run.
        in_flight = RemoteBatch.objects.in_flight().values_list("run").annotate(n=Count("id"))
        per_run = dict(in_flight.values_list("run", "n"))
        total_free = min(settings.DOCKET_MAX_IN_FLIGHT, int(self.window)) - sum(per_run.values())
        if total_free <= 0:
            return None  # a batch finishing frees room: its poll is a time of its own
        return total_free, per_run

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
        due = RemoteBatch.objects.due(now)
        actions: list[Action] = []

        # Batches already sent (or maybe sent) come first: they hold the judge's capacity.
        sent = due.filter(status__in=[RemoteBatch.Status.SUBMITTING, RemoteBatch.Status.RUNNING])
        for batch in batches_claim(sent.order_by("next_action_at"), owner=self.owner, limit=limit):
            actions.append(self.action_for(batch, now=now))
        limit -= len(actions)
        # Then the costs of finished batches: one log read each, and what the budgets of runs rest on.
        costs = batches_costs_due(now).order_by("finished_at", "pk")
        for batch in batches_claim(costs, owner=self.owner, limit=limit):
            actions.append(self.costs_action(batch))
            limit -= 1
        if limit <= 0:
            return actions
        room = self.create_room(now)
        if room is None or isinstance(room, datetime):
            return actions
        total_free, per_run = room
        runs = (
            Run.objects.active()
            .filter(cancel_requested_at=None)
            .filter(Q(backoff_until__isnull=True) | Q(backoff_until__lte=now))
            .exclude(backoff_kind=BackoffKind.BUDGET)
            .filter(batches__status=RemoteBatch.Status.WAITING)
            .distinct()
            .order_by("created_at", "pk")
            # Read every claim round: not the totals and thresholds a create never looks at.
            .defer("score_summary", "thresholds", "threshold_overrides", "cost_by_evaluator", "tags")
        )
        for run in runs:
            if total_free <= 0 or limit <= 0:
                break
            run_room = min(settings.DOCKET_MAX_IN_FLIGHT_PER_RUN - per_run.get(run.pk, 0), total_free, limit)
            if run_room <= 0:
                continue
            waiting = due.filter(run=run, status=RemoteBatch.Status.WAITING).order_by("position")
            taken = self.claim_creates(run, waiting, limit=run_room, now=now)
            if taken and run.status == Run.Status.QUEUED:
                Run.objects.filter(pk=run.pk, status=Run.Status.QUEUED).update(
                    status=Run.Status.RUNNING, started_at=now, change_seq=F("change_seq") + 1
                )
            actions.extend(self.create_action(batch) for batch in taken)
            total_free -= len(taken)
            limit -= len(taken)
        return actions

    def claim_creates(
        self, run: Run, waiting: QuerySet[RemoteBatch], *, limit: int, now: datetime
    ) -> list[RemoteBatch]:
        """Lease up to `limit` of the run's waiting batches for a create; a capped run, only as many as
        its budget allows (else it is paused, and sends nothing until the cap is raised)."""
        claim: dict[str, Any] = {
            "status": RemoteBatch.Status.SUBMITTING,
            "submitted_at": Coalesce(F("submitted_at"), Value(now)),
        }
        if run.max_cost is None:
            return batches_claim(waiting, owner=self.owner, limit=limit, **claim)
        try:
            with transaction.atomic():
                # Under the run's lock: two pumps never both count the same room under the cap.
                lock_run(run.pk)
                budget = budget_check(run)
                if budget is None:  # the cap was removed a moment ago
                    return batches_claim(waiting, owner=self.owner, limit=limit, **claim)
                sizes = list(waiting.values_list("size", flat=True)[:limit])
                allowed = budget.fits(sizes)
                if allowed == 0 and sizes:
                    if run_budget_pause(run_id=run.pk, budget=budget):
                        logger.info("run %s: %s (%s)", run.pk, budget.pause_reason, budget.basis)
                    return []
                return batches_claim(waiting, owner=self.owner, limit=allowed, **claim)
        except RowsGone:
            return []  # deleted since the claim round began

    def action_for(self, batch: RemoteBatch, *, now: datetime) -> Action:
        common = {
            "batch_id": batch.pk,
            "run_id": batch.run_id,
            "attempt": batch.attempts,
            "judge_remote_id": batch.run.judge.remote_id,
            "tag": batch.tag,
            "evaluator_ids": list(batch.run.evaluator_ids or []),
            "project_id": batch.run.project_id,
        }
        if batch.status == RemoteBatch.Status.RUNNING:
            # The page size is for the costs read of a poll that finds the batch finished (perform).
            return Action(
                kind="poll",
                remote_id=batch.remote_id,
                page_size=log_page_size(batch),
                **common,  # type: ignore[arg-type]
            )
        since = (batch.submitted_at or now) - LOOKUP_SLACK
        return Action(kind="lookup", since=since, **common)  # type: ignore[arg-type]

    def costs_action(self, batch: RemoteBatch) -> Action:
        return Action(
            page_size=log_page_size(batch),
            kind="costs",
            batch_id=batch.pk,
            run_id=batch.run_id,
            attempt=batch.attempts,
            judge_remote_id=batch.run.judge.remote_id,
            tag=batch.tag,
            remote_id=batch.remote_id,
            project_id=batch.run.project_id,
        )

    def create_action(self, batch: RemoteBatch) -> Action:
        # Rows cut out of the batch (refused by the judge) are finished and not sent again. Only the
        # examples, and only what they send (JUDGE_INPUT_FIELDS, which as_judge_input reads): no Item
        # objects, no metadata.
        unsent = [status for status in Item.Status if status not in Item.FINISHED]
        examples = (
            Example.objects.filter(items__batch=batch, items__status__in=unsent)
            .order_by("items__index_in_batch")
            .only(*JUDGE_INPUT_FIELDS)
        )
        return Action(
            kind="create",
            batch_id=batch.pk,
            run_id=batch.run_id,
            attempt=batch.attempts,
            judge_remote_id=batch.run.judge.remote_id,
            judge_version_id=batch.run.judge_version_id,
            tag=batch.tag,
            tags=[batch.tag, *batch.run.tags],
            inputs=[example.as_judge_input() for example in examples],
            evaluator_ids=list(batch.run.evaluator_ids or []),
            project_id=batch.run.project_id,
        )

    # --- Applying outcomes --------------------------------------------------------------------------

    def record(self, outcome: Outcome) -> None:
        action = outcome.action
        try:
            applied = self.apply(outcome)
        except RowsGone:
            logger.info("pump dropped the %s of batch %s: its run was deleted", action.kind, action.tag)
            return
        except Exception:
            # A delete that raced the write (a lock or a foreign key that lost) is still a deletion.
            if not RemoteBatch.objects.filter(pk=action.batch_id).exists():
                logger.info("pump dropped the %s of batch %s: its run was deleted", action.kind, action.tag)
                return
            # The batch keeps its lease until it runs out, then another attempt picks it up.
            logger.exception("pump could not record %s of batch %s", action.kind, action.tag)
            return
        if not applied:
            logger.info(
                "pump dropped a stale %s of batch %s: its lease passed to another", action.kind, action.tag
            )

    def apply(self, outcome: Outcome) -> bool:
        action = outcome.action
        ids = Held(batch_id=action.batch_id, run_id=action.run_id, owner=self.owner)
        if outcome.error is not None:
            if action.kind == "costs":
                return self.apply_costs_error(action, outcome.error)
            return self.apply_error(action, outcome.error)
        if action.kind == "costs":
            assert isinstance(outcome.result, list)
            missing = batch_logs_missing(batch_id=action.batch_id, logs=outcome.result)
            if missing and action.attempt < COST_READ_ATTEMPTS:
                # A judge may list a batch's logs a little after it reports the batch finished: look
                # again rather than leave those items' cost unknown for good. The last try keeps what it got.
                note = JudgeError(
                    f"The judge listed no execution log yet for {missing} of the batch's items."
                )
                logger.info("batch %s: %s", action.tag, note.message)
                return batch_costs_backed_off(error=note, delay=settings.DOCKET_POLL_MAX_SECONDS, **ids)
            return batch_costs_recorded(logs=outcome.result, **ids)
        if action.kind == "create":
            assert isinstance(outcome.result, BatchCreated)
            applied = batch_submitted(remote_id=outcome.result.id, **ids)
            if applied:
                self.window = min(self.window + 1, float(settings.DOCKET_MAX_IN_FLIGHT))
                logger.info("batch %s created remotely as %s", action.tag, outcome.result.id)
            return applied
        if action.kind == "lookup":
            assert outcome.result is None or isinstance(outcome.result, Batch)
            found = outcome.result.id if outcome.result is not None else None
            if found:
                logger.info("batch %s was created after all (as %s); not sending it again", action.tag, found)
            return batch_looked_up(remote_id=found, **ids)
        assert isinstance(outcome.result, Batch)
        remote = outcome.result
        costs = outcome.costs
        logs = costs.result if costs is not None and isinstance(costs.result, list) else None
        polled = batch_polled(
            remote=remote,
            next_poll_seconds=lambda batch, progressed: next_poll_seconds(
                batch, remote, now=timezone.now(), progressed=progressed
            ),
            hold_for_costs=costs is not None,
            logs=logs,
            **ids,
        )
        if polled.learn_thresholds:
            # Committed already: the task reads one execution log of the run, off the pump's loop.
            transaction.on_commit(lambda: learn_thresholds_later(action.run_id))
        if polled.held_for_costs and costs is not None:
            # Finished and still ours, its costs not recorded (the read failed, or missed some logs):
            # that read is recorded as a costs action's first try would be, backing off.
            self.record(costs)
        return polled.applied

    def apply_error(self, action: Action, error: JudgeError) -> bool:
        ids = Held(batch_id=action.batch_id, run_id=action.run_id, owner=self.owner)
        limit = (
            settings.DOCKET_MAX_POLL_ATTEMPTS
            if action.kind == "poll"
            else settings.DOCKET_MAX_CREATE_ATTEMPTS
        )
        with transaction.atomic():
            if error.throttled and action.kind == "create" and time.monotonic() >= self.window_cut_until:
                self.window = max(self.window / 2, 1.0)
                self.window_cut_until = time.monotonic() + max(error.retry_after or 1.0, 1.0)
            if action.kind == "create" and error.permanent and batch_split(error=error, **ids):
                applied = True  # the rows the judge named failed alone; the rest is sent again
            elif error.permanent or (not error.throttled and action.attempt >= limit):
                if error.permanent:
                    message = f"The judge API rejected this batch: {error.message}"
                else:
                    message = f"Gave up after {action.attempt} attempts. Last error: {error.message}"
                # The judge refused what was sent (a 400 or 422 on the batch): the same items sent again
                # are refused again. Not a refused key (fixed in settings), nor a poll's error (a batch
                # the judge lost can be sent anew), nor giving up after passing failures.
                unfixable = error.permanent and action.kind == "create" and error.status not in (401, 403)
                applied = batch_fail(message=message, permanent=unfixable, **ids)
            else:
                if action.kind == "create" and not error.outcome_unknown:
                    status = RemoteBatch.Status.WAITING
                elif action.kind == "poll":
                    status = RemoteBatch.Status.RUNNING
                else:
                    # Unknown outcome: stay SUBMITTING, so the next attempt looks the batch up first.
                    status = RemoteBatch.Status.SUBMITTING
                if is_quota(error):
                    kind, delay = BackoffKind.QUOTA, QUOTA_RETRY_SECONDS
                elif error.throttled:
                    kind, delay = BackoffKind.THROTTLED, backoff_seconds(action.attempt, error.retry_after)
                else:
                    kind, delay = BackoffKind.ERROR, backoff_seconds(action.attempt, error.retry_after)
                if status == RemoteBatch.Status.SUBMITTING and error.reason == "timeout":
                    # We stopped waiting, the judge may not have: the create can still be under way (a
                    # slow commit), and a lookup too soon would miss it and send, and pay for, the batch
                    # twice. Look it up once the judge has had twice our timeout to finish it.
                    delay = max(delay, 2 * settings.JUDGE_API_TIMEOUT)
                applied = batch_backed_off(status=status, error=error, delay=delay, kind=kind, **ids)
            if not applied:
                return False
            logger.warning(
                "batch %s: %s failed (attempt %d%s): %s",
                action.tag,
                action.kind,
                action.attempt,
                ", permanent" if error.permanent else "",
                error.message,
            )
            failure_record(action=action.kind, failed=action, error=error)
        return True

    def apply_costs_error(self, action: Action, error: JudgeError) -> bool:
        """A log read failed: try again later, or give up and leave the cost unknown. The items are
        judged already; nothing of the run fails or waits for it."""
        ids = Held(batch_id=action.batch_id, run_id=action.run_id, owner=self.owner)
        with transaction.atomic():
            # A passing throttle is the server asking to wait, not a failed try; a spent quota is one.
            waited = error.throttled and not is_quota(error)
            if error.permanent or (action.attempt >= COST_READ_ATTEMPTS and not waited):
                tries = "" if error.permanent else f" after {action.attempt} tries"
                message = (
                    f"Cost unknown: Docket could not read this batch's execution logs{tries}. {error.message}"
                )
                applied = batch_costs_given_up(message=message, **ids)
            else:
                if is_quota(error):
                    delay = QUOTA_RETRY_SECONDS
                else:
                    delay = backoff_seconds(action.attempt, error.retry_after)
                applied = batch_costs_backed_off(error=error, delay=delay, **ids)
            if not applied:
                return False
            logger.warning(
                "batch %s: reading its logs failed (attempt %d): %s",
                action.tag,
                action.attempt,
                error.message,
            )
            failure_record(action="logs", failed=action, error=error)
        return True


def failure_record(*, action: str, failed: Action, error: JudgeError) -> None:
    """One failed judge API call, for the status page."""
    JudgeApiEvent.objects.create(
        action=action,
        status=error.reason,
        throttled=error.throttled,
        message=error.message[:2000],
        attempt=failed.attempt,
        run_id=failed.run_id,
    )


def costs_ready(remote: object) -> bool:
    """A polled batch whose costs can be read now: finished, with an item the judge ran (it has a log)."""
    return (
        isinstance(remote, Batch)
        and remote.is_finished
        and any(item.status == "completed" and item.execution_log_id for item in remote.items)
    )


def log_page_size(batch: RemoteBatch) -> int:
    """Enough rows for every log of the batch: one per item, and one per evaluator of each item."""
    run = batch.run
    evaluators = len(run.evaluator_ids) if run.evaluator_ids else len(run.judge.evaluators or [])
    wanted = max(batch.size, 1) * (1 + max(evaluators, len(run.evaluators), 1))
    return min(max(wanted, LOG_PAGE_SIZE), LOG_PAGE_SIZE_MAX)


def next_poll_seconds(batch: RemoteBatch, remote: Batch, *, now: datetime, progressed: bool) -> float:
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


def learn_thresholds_later(run_id: int) -> None:
    """A task that reads one execution log of the run and keeps its thresholds (off the pump's loop:
    the pump only records; a lost task is made up for by the watchdog)."""
    from django_q.tasks import async_task

    async_task("evals.tasks.run_thresholds_learn", run_id, task_name="thresholds", group="thresholds")


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
    try:
        with judge_api(api) as client:
            worker = Pump(api=client, owner=owner, concurrency=concurrency)
            try:
                budget = settings.DOCKET_PUMP_SLICE_SECONDS if budget_seconds is None else budget_seconds
                worker.work(deadline=started + budget, slot=report.slot)
            finally:
                worker.close()
    finally:
        slot_release(report.slot, owner)
    report.actions = worker.actions
    report.seconds = time.monotonic() - started
    # After releasing the slot, so a run created meanwhile is never left without a pump.
    if requeue and pump_has_work():
        wake_pump()
    return report
