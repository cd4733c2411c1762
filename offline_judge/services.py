"""What the offline judge does: evaluate inputs, schedule items on the lanes, write batches and logs."""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import transaction

from offline_judge import clock
from offline_judge.catalogue import (
    INPUT_REASONS,
    OWNER,
    PROJECT_ID,
    EvaluatorSpec,
    JudgeSpec,
    required_inputs,
)
from offline_judge.evaluators import Verdict
from offline_judge.faults import FaultPlan
from offline_judge.inputs import ItemInput
from offline_judge.models import Batch, BatchItem, BatchTag, ExecutionLog, LaneClock, LogTag, Outcome

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Simulated price and prompt size, so cost grows with the text like a real model call would.
PRICE_PER_TOKEN_USD = 1e-6
PROMPT_TOKENS_PER_EVALUATOR = 200
OUTPUT_TOKENS_PER_EVALUATOR = 60


@dataclass(frozen=True)
class Scored:
    spec: EvaluatorSpec
    verdict: Verdict


@dataclass(frozen=True)
class Runner:
    """What runs an input: a judge, or the evaluators picked for an evaluator-only batch."""

    judge: JudgeSpec | None
    evaluators: tuple[EvaluatorSpec, ...]

    @property
    def name(self) -> str:
        return self.judge.name if self.judge else ", ".join(spec.name for spec in self.evaluators)

    @property
    def required(self) -> tuple[str, ...]:
        return required_inputs(self.evaluators)

    def missing_message(self, item: ItemInput) -> str:
        """Empty when the item has every input the runner needs; otherwise says which and why."""
        sentences = []
        for name in item.missing(self.required):
            if self.judge is not None:
                subject = "this judge"
            else:
                first = next(spec for spec in self.evaluators if name in spec.requires)
                subject = f'the evaluator "{first.name}"'
            sentences.append(
                f'Missing required input "{name}": {INPUT_REASONS[name].format(subject=subject)}.'
            )
        return " ".join(sentences)


def evaluate(runner: Runner, item: ItemInput, plan: FaultPlan | None = None) -> list[Scored]:
    data = item.for_evaluators()
    scored = [Scored(spec, spec.evaluate(data)) for spec in runner.evaluators]
    if plan is None or not plan.noise_sd:
        return scored
    return [Scored(s.spec, _with_noise(s.verdict, plan)) for s in scored]


def _with_noise(verdict: Verdict, plan: FaultPlan) -> Verdict:
    """The verdict with the plan's simulated noise on its score; the justification says so, because
    the rule it describes gave the score before the noise."""
    noisy = plan.add_noise(verdict.score)
    note = (
        f"Simulated judge noise (sd {plan.noise_sd:g}) moved the score from {verdict.score:g} to {noisy:g}."
    )
    return replace(verdict, score=noisy, justification=f"{verdict.justification} {note}".strip())


def evaluator_results(scored: list[Scored]) -> list[dict[str, Any]]:
    """The six-field EvaluatorResult list of the execute reply and of batch items."""
    return [
        {
            "evaluator_name": s.spec.name,
            "score": s.verdict.score,
            "justification": s.verdict.justification,
            "evaluator_id": s.spec.id,
            "evaluator_version_id": s.spec.version_id,
            "confidence": s.verdict.confidence,
        }
        for s in scored
    ]


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 3) if values else None


def evaluator_cost(item: ItemInput, scored: Scored) -> float:
    """One evaluator's simulated model call: its instructions and the text in, its justification out."""
    prompt = PROMPT_TOKENS_PER_EVALUATOR + math.ceil((len(scored.spec.intent) + item.text_length()) / 4)
    output = OUTPUT_TOKENS_PER_EVALUATOR + math.ceil(len(scored.verdict.justification) / 4)
    return round((prompt + output) * PRICE_PER_TOKEN_USD, 9)


def _log_turns(item: ItemInput) -> list[dict[str, Any]] | None:
    if not item.turns:
        return None
    return [
        {
            "role": turn["role"],
            # The log model requires a string; assistant tool-call turns may have sent null.
            "content": turn.get("content") or "",
            "contexts": turn.get("contexts"),
            "tool_call_id": turn.get("tool_call_id"),
            "tool_calls": turn.get("tool_calls"),
            "evaluation_justification": None,
        }
        for turn in item.turns
    ]


def _evaluator_result(s: Scored) -> dict[str, Any]:
    return {
        "evaluator_id": s.spec.id,
        "evaluator_name": s.spec.name,
        "result": s.verdict.score,
        "threshold": s.spec.threshold,
        "status": "finished",
        "justification": s.verdict.justification,
    }


@dataclass(frozen=True)
class LogPlan:
    """The logs one evaluated input writes: the item's log, then one child per evaluator.

    `parent` is everything of ExecutionLogDetails except id, created_at and tags (the row holds those);
    each of `children` holds only what differs from the parent, merged over it when read.
    """

    parent: dict[str, Any]
    children: list[dict[str, Any]]
    request_preview: str
    response_preview: str


def log_plan(*, runner: Runner, item: ItemInput, scored: list[Scored], duration_s: float) -> LogPlan:
    data = item.for_evaluators()
    weights = [1 + len(s.verdict.justification) / 200 for s in scored]
    total_weight = sum(weights) or 1.0
    latencies = [round(duration_s * w / total_weight, 4) for w in weights]
    costs = [evaluator_cost(item, s) for s in scored]
    variables = {"request": data.request, "response": data.response}
    if data.expected_output:
        variables["expected_output"] = data.expected_output
    models_used = list(dict.fromkeys(s.spec.model for s in scored))
    judge = runner.judge
    parent = {
        # The item's cost is what its evaluators' calls cost, so the children add up to the parent.
        "cost": round(sum(costs), 9),
        "turns": _log_turns(item),
        "evaluation_context": {
            "contexts": list(data.contexts) or None,
            "expected_output": data.expected_output or None,
        },
        "evaluator_latencies": [
            {"evaluator_name": s.spec.name, "duration": latency}
            for s, latency in zip(scored, latencies, strict=True)
        ],
        "executed_item_id": judge.id if judge else None,
        "executed_item_name": runner.name,
        "executed_item_version_id": judge.version_id if judge else None,
        "execution_type": "judge" if judge else "evaluator",
        "justification": "\n".join(
            f"{s.spec.name} ({s.verdict.score}): {s.verdict.justification}" for s in scored
        ),
        "llm_output": "\n".join(f"{s.spec.name}: {s.verdict.score}" for s in scored),
        "model_call_duration": round(duration_s, 4),
        "model": ", ".join(models_used),
        "owner": dict(OWNER),
        "parent_execution_log_id": None,
        "scoring_criteria": "\n".join(
            ([judge.intent] if judge else []) + [f"{s.spec.name}: {s.spec.intent}" for s in scored]
        ),
        "score": _mean([s.verdict.score for s in scored]),
        "session_id": item.session_id or "",
        "system_prompt": item.system_prompt or "",
        "user_id": item.user_id or "",
        "evaluator_results": [_evaluator_result(s) for s in scored],
        "variables": variables,
        "classification": None,
        "confidence": _mean([s.verdict.confidence for s in scored]),
    }
    children = [
        {
            "cost": cost,
            "evaluator_latencies": None,
            "executed_item_id": s.spec.id,
            "executed_item_name": s.spec.name,
            "executed_item_version_id": s.spec.version_id,
            "execution_type": "evaluator",
            "justification": s.verdict.justification,
            "llm_output": str(s.verdict.score),
            "model_call_duration": latency,
            "model": s.spec.model,
            "scoring_criteria": s.spec.intent,
            "score": s.verdict.score,
            "evaluator_results": [_evaluator_result(s)],
            "confidence": s.verdict.confidence,
        }
        for s, cost, latency in zip(scored, costs, latencies, strict=True)
    ]
    return LogPlan(
        parent=parent,
        children=children,
        request_preview=data.request[:500],
        response_preview=data.response[:500],
    )


def build_logs(
    plan: LogPlan,
    *,
    created_at: datetime,
    batch: Batch | None,
    judge_id: str | None,
    project_id: str,
    tags: list[str],
    own_tags: bool,
) -> list[ExecutionLog]:
    """The rows of a LogPlan, parent first; ids are set here, so children can point at their parent."""

    def row(detail: dict[str, Any], parent: ExecutionLog | None) -> ExecutionLog:
        return ExecutionLog(
            created_at=created_at,
            batch=batch,
            parent=parent,
            judge_id=judge_id,
            execution_type=detail["execution_type"],
            executed_item_id=detail["executed_item_id"],
            executed_item_name=detail["executed_item_name"],
            executed_item_version_id=detail["executed_item_version_id"],
            project_id=project_id,
            user_id=plan.parent["user_id"],
            session_id=plan.parent["session_id"],
            model=detail["model"],
            request_preview=plan.request_preview,
            response_preview=plan.response_preview,
            score=detail["score"],
            cost=detail["cost"],
            tags=list(tags),
            own_tags=own_tags,
            detail=detail,
        )

    parent = row(plan.parent, None)
    children = [row({**child, "parent_execution_log_id": str(parent.id)}, parent) for child in plan.children]
    return [parent, *children]


def write_own_tags(logs: list[ExecutionLog], tags: list[str]) -> None:
    LogTag.objects.bulk_create(LogTag(log=log, tag=tag) for log in logs for tag in dict.fromkeys(tags))


def from_epoch_us(value: int) -> datetime:
    return EPOCH + timedelta(microseconds=value)


def _to_us(value: datetime) -> int:
    delta = value - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


@dataclass(frozen=True)
class Booking:
    seq: int
    created_at: datetime
    slots: list[tuple[datetime, datetime]]


def schedule(*, count: int, slots: int, plan: FaultPlan) -> Booking:
    """Book `slots` consecutive items on the lanes, each on the lane that frees first; FIFO across batches.

    Must run inside the create's transaction: the clock row is locked until it commits, so concurrent
    creates on PostgreSQL queue up here (SQLite's IMMEDIATE transactions already serialise them).
    """
    lane_clock, _ = LaneClock.objects.select_for_update().get_or_create(id=1)
    # Read under the lock, so creation times follow the order in which creates took the lanes.
    now = clock.now()
    now_us = _to_us(now)
    lanes = sorted(lane_clock.free_at_us)
    if len(lanes) > plan.lane_count:
        # Fewer lanes than before: keep the busiest, so new work never starts before older work allows.
        lanes = lanes[-plan.lane_count :]
    lanes += [now_us] * (plan.lane_count - len(lanes))
    heapq.heapify(lanes)
    item_us = round(plan.item_s * 1_000_000)
    booked: list[tuple[datetime, datetime]] = []
    for _ in range(slots):
        start = max(lanes[0], now_us)
        heapq.heapreplace(lanes, start + item_us)
        booked.append((from_epoch_us(start), from_epoch_us(start + item_us)))
    lane_clock.free_at_us = sorted(lanes)
    lane_clock.batches_created += 1
    lane_clock.save(update_fields=["free_at_us", "batches_created"])
    # A whole-batch failure occupies one slot, and every item shares it.
    return Booking(
        seq=lane_clock.batches_created, created_at=now, slots=booked if slots == count else booked[:1] * count
    )


def batch_failure_message() -> str:
    return "The batch failed as a whole (simulated batch failure): no item of it was evaluated."


def item_failure_message(spec: EvaluatorSpec) -> str:
    return f'Evaluator "{spec.name}" failed: model call timed out (simulated).'


def batch_create(
    *,
    runner: Runner,
    inputs: list[ItemInput],
    tags: list[str],
    project_id: str | None,
    plan: FaultPlan,
) -> Batch:
    """Evaluate every input now, schedule the items on the lanes, and store what time will reveal."""
    whole_batch_fails = plan.batch_fails()
    failing_evaluator = plan.item_failures(len(inputs), len(runner.evaluators))
    prepared: list[tuple[ItemInput, str, list[Scored] | None]] = []
    plans: list[LogPlan | None] = []
    # All evaluation happens before the transaction, which holds the lanes' lock only for the writes.
    for item, failing in zip(inputs, failing_evaluator, strict=True):
        error = batch_failure_message() if whole_batch_fails else runner.missing_message(item)
        if not error and failing is not None:
            error = item_failure_message(runner.evaluators[failing])
        scored = None if error else evaluate(runner, item, plan)
        prepared.append((item, error, scored))
        plans.append(
            log_plan(runner=runner, item=item, scored=scored, duration_s=plan.item_s) if scored else None
        )

    with transaction.atomic():
        booking = schedule(count=len(inputs), slots=1 if whole_batch_fails else len(inputs), plan=plan)
        slots = booking.slots
        failed = sum(1 for _, error, _ in prepared if error)
        outcome = (
            Outcome.COMPLETED if not failed else Outcome.FAILED if failed == len(inputs) else Outcome.PARTIAL
        )
        judge = runner.judge
        batch = Batch.objects.create(
            judge_id=judge.id if judge else None,
            judge_version_id=judge.version_id if judge else None,
            judge_name=judge.name if judge else "",
            evaluators=[{"id": s.id, "name": s.name, "version_id": s.version_id} for s in runner.evaluators],
            project_id=project_id or PROJECT_ID,
            tags=tags,
            seq=booking.seq,
            created_at=booking.created_at,
            first_started_at=min(start for start, _ in slots),
            last_completed_at=max(end for _, end in slots),
            outcome=outcome,
            total_count=len(inputs),
            failure=batch_failure_message() if whole_batch_fails else "",
        )
        item_logs = [
            build_logs(
                planned,
                created_at=end,
                batch=batch,
                judge_id=judge.id if judge else None,
                project_id=str(batch.project_id),
                tags=tags,
                own_tags=False,
            )
            if planned is not None
            else []
            for planned, (_start, end) in zip(plans, slots, strict=True)
        ]
        # Parents before children: on PostgreSQL the foreign key to the parent is checked per row.
        ExecutionLog.objects.bulk_create([rows[0] for rows in item_logs if rows])
        ExecutionLog.objects.bulk_create([child for rows in item_logs for child in rows[1:]])
        logs = [rows[0] if rows else None for rows in item_logs]
        BatchItem.objects.bulk_create(
            BatchItem(
                batch=batch,
                index=index,
                input=item.echo(),
                outcome=Outcome.FAILED if error else Outcome.COMPLETED,
                evaluator_results=evaluator_results(scored) if scored is not None else None,
                error_message=error,
                execution_log=log,
                started_at=start,
                completed_at=end,
            )
            for index, ((item, error, scored), (start, end), log) in enumerate(
                zip(prepared, slots, logs, strict=True)
            )
        )
        BatchTag.objects.bulk_create(BatchTag(batch=batch, tag=tag) for tag in dict.fromkeys(tags))
    return batch


def judge_execute(
    *, runner: Runner, item: ItemInput, tags: list[str], project_id: str | None, plan: FaultPlan
) -> tuple[list[Scored], ExecutionLog]:
    """A synchronous run: it takes one item's simulated time, outside the lanes (no queueing)."""
    scored = evaluate(runner, item, plan)
    clock.sleep(plan.item_s)
    rows = build_logs(
        log_plan(runner=runner, item=item, scored=scored, duration_s=plan.item_s),
        created_at=clock.now(),
        batch=None,
        judge_id=runner.judge.id if runner.judge else None,
        project_id=project_id or PROJECT_ID,
        tags=tags,
        own_tags=True,
    )
    with transaction.atomic():
        ExecutionLog.objects.bulk_create(rows[:1])
        ExecutionLog.objects.bulk_create(rows[1:])
        write_own_tags(rows, tags)
    return scored, rows[0]
