"""JSON bodies in the exact shapes of the Scorable SDK's generated models, every key present.

Status, counts, timestamps and results of batches and items depend on the time of the request:
see models.py for how they are derived from the stored schedule.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.http import JsonResponse

from offline_judge.catalogue import CATALOGUE_CREATED_AT, INPUT_TYPES, PROJECT_ID, EvaluatorSpec, JudgeSpec
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
    return {**log.detail, "id": str(log.id), "created_at": iso(log.created_at)}
