"""JSON bodies in the exact shapes of the Scorable SDK's generated models, every key present.

Status, counts, timestamps and results of batches and items depend on the time of the request:
see models.py for how they are derived from the stored schedule.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.http import JsonResponse

from offline_judge.catalogue import (
    CATALOGUE_CREATED_AT,
    INPUT_TYPES,
    OWNER,
    PROJECT_ID,
    EvaluatorSpec,
    JudgeSpec,
    required_inputs,
    stable_id,
)
from offline_judge.models import Batch, BatchItem, ExecutionLog, Outcome


def iso(value: datetime | None) -> str | None:
    """DRF's rendering: ISO 8601 with a Z for UTC."""
    if value is None:
        return None
    text = value.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def problem(
    status: int, code: str, title: str, detail: str, *, headers: dict[str, str] | None = None
) -> JsonResponse:
    """Every error of the API: RFC 7807-like problem details plus Scorable's `code`."""
    body = {
        "type": "about:blank",
        "title": title,
        "status": status,
        "detail": detail,
        "instance": None,
        "code": code,
    }
    return JsonResponse(body, status=status, headers=headers)


def nested_evaluator(spec: EvaluatorSpec) -> dict[str, Any]:
    return {
        "id": spec.id,
        "name": spec.name,
        "objective": {"intent": spec.intent},
        "is_root_evaluator": True,
        "model": spec.model,
        "version_id": spec.version_id,
    }


def judge_row(judge: JudgeSpec) -> dict[str, Any]:
    """JudgeList: the list row."""
    return {
        "id": judge.id,
        "name": judge.name,
        "intent": judge.intent,
        "created_at": iso(CATALOGUE_CREATED_AT),
        "visibility": "private",
        "inputs": {name: dict(INPUT_TYPES[name]) for name in judge.requires},
        "evaluators": [nested_evaluator(spec) for spec in judge.evaluators],
        "_meta": {"offline": True},
        "project_id": PROJECT_ID,
    }


def judge_detail(judge: JudgeSpec) -> dict[str, Any]:
    """Judge: the list row plus version_id, files and stage."""
    return {**judge_row(judge), "version_id": judge.version_id, "files": [], "stage": None}


def _batch_fields(batch: Batch, now: datetime, completed: int, failed: int) -> dict[str, Any]:
    started = now >= batch.first_started_at
    finished = now >= batch.last_completed_at
    return {
        "batch_execution_id": str(batch.id),
        "status": batch.status_at(now),
        "total_count": batch.total_count,
        "completed_count": completed,
        "failed_count": failed,
        "created_at": iso(batch.created_at),
        "started_at": iso(batch.first_started_at) if started else None,
        "completed_at": iso(batch.last_completed_at) if finished else None,
        "judge": (
            {"id": str(batch.judge_id), "name": batch.judge_name, "version_id": str(batch.judge_version_id)}
            if batch.judge_id
            else None
        ),
        "evaluators": [dict(evaluator) for evaluator in batch.evaluators],
        "dataset": None,
        "dataset_range": None,
        "tags": list(batch.tags),
        "project_id": str(batch.project_id) if batch.project_id else None,
    }


def batch_row(batch: Batch, now: datetime, *, completed: int, failed: int) -> dict[str, Any]:
    """BatchExecutionListItem, with the item counts at `now`."""
    return _batch_fields(batch, now, completed, failed)


def item_row(item: BatchItem, now: datetime) -> dict[str, Any]:
    done = now >= item.completed_at
    return {
        "index": item.index,
        "status": item.status_at(now),
        "input": item.input,
        "evaluator_results": item.evaluator_results if done else None,
        "error_message": item.error_message if done else "",
        "execution_log_id": str(item.execution_log_id) if done and item.execution_log_id else None,
        "started_at": iso(item.started_at) if now >= item.started_at else None,
        "completed_at": iso(item.completed_at) if done else None,
    }


def batch_detail(batch: Batch, items: list[BatchItem], now: datetime) -> dict[str, Any]:
    """BatchExecutionDetail: counts computed from the same items that are returned, so they always agree."""
    done = [item for item in items if now >= item.completed_at]
    completed = sum(1 for item in done if item.outcome == Outcome.COMPLETED)
    return {
        **_batch_fields(batch, now, completed, len(done) - completed),
        "items": [item_row(item, now) for item in items],
    }


def log_detail(log: ExecutionLog) -> dict[str, Any]:
    """ExecutionLogDetails. A child's detail is its parent's with the child's own fields over it."""
    base = log.parent.detail if log.parent_id is not None and log.parent is not None else {}
    detail = {**base, **log.detail}
    # Rows written before tags became a column kept them in the detail; the column is the truth now.
    detail.pop("tags", None)
    return {**detail, "id": str(log.id), "created_at": iso(log.created_at), "tags": list(log.tags)}


LOG_INCLUDES = ("llm_output", "variables", "evaluation_context")


def log_row(log: ExecutionLog, include: frozenset[str]) -> dict[str, Any]:
    """ExecutionLogList: the list row. The three optional fields are null unless `include` names them;
    only then is the stored detail read (a child's variables and contexts are its parent's)."""
    detail: dict[str, Any] = log_detail(log) if include else {}
    context = detail.get("evaluation_context") or {}
    return {
        "cost": log.cost,
        "created_at": iso(log.created_at),
        "evaluation_context": (
            {"contexts": context.get("contexts"), "expected_output": context.get("expected_output")}
            if "evaluation_context" in include
            else None
        ),
        "executed_item_id": str(log.executed_item_id) if log.executed_item_id else None,
        "executed_item_name": log.executed_item_name,
        "executed_item_version_id": (
            str(log.executed_item_version_id) if log.executed_item_version_id else None
        ),
        "execution_type": log.execution_type,
        "id": str(log.id),
        "llm_output": str(detail.get("llm_output") or "") if "llm_output" in include else None,
        "owner": dict(OWNER),
        "parent_execution_log_id": str(log.parent_id) if log.parent_id else None,
        "project_id": str(log.project_id) if log.project_id else None,
        "request_preview": log.request_preview,
        "response_preview": log.response_preview,
        "score": log.score,
        "session_id": log.session_id,
        "tags": list(log.tags),
        "user_id": log.user_id,
        "variables": (
            {str(key): str(value) for key, value in (detail.get("variables") or {}).items()}
            if "variables" in include
            else None
        ),
    }


def _objective(spec: EvaluatorSpec) -> dict[str, Any]:
    return {"id": stable_id("objective", spec.slug), "intent": spec.intent}


def _evaluator_common(spec: EvaluatorSpec) -> dict[str, Any]:
    """The fields EvaluatorListOutput and Evaluator share."""
    return {
        "_meta": {"offline": True},
        "created_at": iso(CATALOGUE_CREATED_AT),
        "models": [spec.model],
        "id": spec.id,
        "name": spec.name,
        "owner": dict(OWNER),
        "project_id": PROJECT_ID,
        "visibility": "private",
        "updated_at": iso(CATALOGUE_CREATED_AT),
        "updated_by": dict(OWNER),
        "version_id": spec.version_id,
        "inputs": {name: dict(INPUT_TYPES[name]) for name in required_inputs((spec,))},
        "scoring_criteria": scoring_criteria(spec),
    }


def scoring_criteria(spec: EvaluatorSpec) -> str:
    return f"{spec.intent} Passes at a score of {spec.threshold:g} or more."


def evaluator_row(spec: EvaluatorSpec) -> dict[str, Any]:
    """EvaluatorListOutput: the list row."""
    return {**_evaluator_common(spec), "objective": _objective(spec)}


def evaluator_detail(spec: EvaluatorSpec) -> dict[str, Any]:
    """Evaluator: the detail."""
    return {
        **_evaluator_common(spec),
        "change_note": "",
        "demonstration_dataset_id": None,
        "input_variables": [],
        "objective": {
            **_objective(spec),
            "created_at": iso(CATALOGUE_CREATED_AT),
            "owner": dict(OWNER),
            "version_id": stable_id("objective-version", f"{spec.slug}:{spec.version}"),
            "test_dataset_id": None,
            "_meta": {},
        },
        "is_root_evaluator": True,
        "behavior": None,
    }
