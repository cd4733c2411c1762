from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.test.client import Client as DjangoClient
from pytest_django.fixtures import Settings as SettingsWrapper

from offline_judge import faults
from offline_judge.catalogue import JUDGES, JudgeSpec

API_KEY = "offline-test-key"
RAG, SUPPORT, QA = JUDGES


@dataclass
class FakeClock:
    """Stands in for offline_judge.clock: time moves only when a test says so (or a sleep passes it)."""

    current: datetime = field(default_factory=lambda: datetime(2026, 3, 2, 9, 0, tzinfo=UTC))
    slept: list[float] = field(default_factory=list)

    def now(self) -> datetime:
        return self.current

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.current += timedelta(seconds=seconds)

    def advance(self, seconds: float) -> None:
        self.current += timedelta(seconds=seconds)


@dataclass
class Api:
    """The offline judge through Django's test client, with the key sent and JSON handled."""

    client: DjangoClient
    key: str = API_KEY

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Api-Key {self.key}"} if self.key else {}

    def get(self, path: str, **params: Any) -> Any:
        return self.client.get(f"/judge-api{path}", params, headers=self.headers())

    def post(self, path: str, body: Any) -> Any:
        data = body if isinstance(body, str | bytes) else json.dumps(body)
        return self.client.post(
            f"/judge-api{path}", data, content_type="application/json", headers=self.headers()
        )

    def create(self, judge: JudgeSpec, inputs: list[dict[str, Any]], **extra: Any) -> str:
        response = self.post(f"/v1/judges/{judge.id}/batch-execute/", {"inputs": inputs, **extra})
        assert response.status_code == 202, response.content
        return str(response.json()["batch_execution_id"])

    def batch(self, batch_id: str) -> dict[str, Any]:
        response = self.get(f"/v1/judges/batch-executions/{batch_id}/")
        assert response.status_code == 200, response.content
        return dict(response.json())


def set_faults(settings: SettingsWrapper, config: str) -> None:
    settings.OFFLINE_JUDGE_FAULTS = config
    faults.reset()


def rag_input(index: int = 0) -> dict[str, Any]:
    return {
        "request": f"When was the Eiffel Tower completed? (question {index})",
        "response": "The Eiffel Tower was completed in 1889.",
        "contexts": ["The Eiffel Tower in Paris was completed in 1889 for the World's Fair."],
    }


def qa_input(response: str = "Paris", expected: str = "Paris") -> dict[str, Any]:
    return {"request": "What is the capital of France?", "response": response, "expected_output": expected}


def assert_problem(response: Any, status: int, code: str) -> dict[str, Any]:
    """A problem-details body: exactly the six keys, with their types, served as JSON."""
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) == {"type", "title", "status", "detail", "instance", "code"}
    assert body["type"] == "about:blank"
    assert isinstance(body["title"], str) and body["title"]
    assert body["status"] == status
    assert isinstance(body["detail"], str) and body["detail"]
    assert body["instance"] is None
    assert body["code"] == code
    return dict(body)
