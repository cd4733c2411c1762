"""Validation of request bodies, with messages that name the field: `inputs[3].turns[0].role: ...`.

Rules follow the SDK's request models (BatchExecutionInputRequest, MessageTurnRequest,
JudgeExecutionRequest): every input field is optional and most are nullable. Unknown keys are ignored,
as the real API does. A row that lacks an input its judge needs is valid here; the item fails later.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from offline_judge.evaluators import EvalInput

MAX_INPUTS = 100
MAX_LONG_TEXT = 3_500_000
MAX_ID_TEXT = 255
MAX_TAG = 1000
ROLES = ("user", "assistant", "tool")


class Invalid(Exception):
    """One or more client mistakes, each a sentence starting with the field's path."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__(" ".join(problems))
        self.problems = problems

    @property
    def detail(self) -> str:
        shown = self.problems[:5]
        more = len(self.problems) - len(shown)
        return " ".join(shown) + (f" (and {more} more problems)" if more > 0 else "")


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


@dataclass(frozen=True)
class ItemInput:
    """One validated input row, as submitted (None where absent)."""

    request: str | None = None
    response: str | None = None
    contexts: list[str] | None = None
    expected_output: str | None = None
    turns: list[dict[str, Any]] | None = None
    system_prompt: str | None = None
    user_id: str | None = None
    session_id: str | None = None

    def echo(self) -> dict[str, Any]:
        """The `input` object of a batch item: what was sent, never what was derived from turns."""
        return {
            "request": self.request,
            "response": self.response,
            "contexts": self.contexts,
            "expected_output": self.expected_output,
            "turns": [{"role": t["role"], "content": t.get("content")} for t in self.turns]
            if self.turns
            else None,
        }

    def _last_turn(self, role: str, key: str) -> Any:
        for turn in reversed(self.turns or []):
            if turn["role"] == role and turn.get(key):
                return turn[key]
        return None

    def for_evaluators(self) -> EvalInput:
        """Explicit fields win; turns fill the gaps (last assistant turn = response, last user turn = request)."""
        return EvalInput(
            response=self.response or self._last_turn("assistant", "content") or "",
            request=self.request or self._last_turn("user", "content") or "",
            contexts=tuple(self.contexts or self._last_turn("assistant", "contexts") or ()),
            expected_output=self.expected_output or "",
            system_prompt=self.system_prompt or "",
        )

    def missing(self, required: tuple[str, ...]) -> list[str]:
        data = self.for_evaluators()
        present = {
            "response": bool(data.response.strip()),
            "request": bool(data.request.strip()),
            "contexts": bool(data.contexts),
            "expected_output": bool(data.expected_output.strip()),
        }
        return [name for name in required if not present.get(name, True)]

    def text_length(self) -> int:
        data = self.for_evaluators()
        return (
            len(data.response) + len(data.request) + sum(map(len, data.contexts)) + len(data.expected_output)
        )


class Checker:
    """Collects problems while reading one body, so a reply can list several at once."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def fail(self, path: str, message: str) -> None:
        self.problems.append(f"{path}: {message}")

    def raise_if_any(self) -> None:
        if self.problems:
            raise Invalid(self.problems)

    def text(self, body: dict[str, Any], key: str, path: str, *, limit: int | None = None) -> str | None:
        value = body.get(key)
        if value is None:
            return None
        if not isinstance(value, str):
            self.fail(path, f"must be a string or null (got {json_type(value)}).")
            return None
        if limit is not None and len(value) > limit:
            self.fail(path, f"ensure this field has no more than {limit:,} characters (got {len(value):,}).")
            return None
        return value

    def strings(
        self, body: dict[str, Any], key: str, path: str, *, limit: int | None = None
    ) -> list[str] | None:
        """A list of non-empty strings, or null."""
        value = body.get(key)
        if value is None:
            return None
        if not isinstance(value, list):
            self.fail(path, f"must be a list of non-empty strings (got {json_type(value)}).")
            return None
        good: list[str] = []
        for index, item in enumerate(value):
            if not isinstance(item, str) or not item:
                got = "an empty string" if item == "" else json_type(item)
                self.fail(f"{path}[{index}]", f"must be a non-empty string (got {got}).")
            elif limit is not None and len(item) > limit:
                self.fail(f"{path}[{index}]", f"ensure this field has no more than {limit:,} characters.")
            else:
                good.append(item)
        return good

    def objects(self, body: dict[str, Any], key: str, path: str) -> list[dict[str, Any]] | None:
        value = body.get(key)
        if value is None:
            return None
        if not isinstance(value, list):
            self.fail(path, f"must be a list of objects (got {json_type(value)}).")
            return None
        for index, item in enumerate(value):
            if not isinstance(item, dict):
                self.fail(f"{path}[{index}]", f"must be an object (got {json_type(item)}).")
        return value

    def uuid(self, body: dict[str, Any], key: str, path: str) -> str | None:
        value = body.get(key)
        if value is None:
            return None
        if not isinstance(value, str):
            self.fail(path, f"must be a UUID string or null (got {json_type(value)}).")
            return None
        try:
            return str(uuid.UUID(value))
        except ValueError:
            self.fail(path, f'"{value}" is not a valid UUID.')
            return None

    def turn(self, value: Any, path: str) -> dict[str, Any] | None:
        if not isinstance(value, dict):
            self.fail(path, f"must be an object with role and content (got {json_type(value)}).")
            return None
        role = value.get("role")
        if role is None:
            self.fail(f"{path}.role", "this field is required.")
        elif not isinstance(role, str) or role not in ROLES:
            shown = f'"{role}"' if isinstance(role, str) else json_type(role)
            self.fail(f"{path}.role", f"{shown} is not one of {', '.join(ROLES)}.")
        content = self.text(value, "content", f"{path}.content")
        contexts = self.strings(value, "contexts", f"{path}.contexts")
        tool_calls = self.objects(value, "tool_calls", f"{path}.tool_calls")
        tool_call_id = self.text(value, "tool_call_id", f"{path}.tool_call_id")
        return {
            "role": role,
            "content": content,
            "contexts": contexts,
            "tool_calls": tool_calls,
            "tool_call_id": tool_call_id,
        }

    def item(self, value: Any, path: str) -> ItemInput | None:
        if not isinstance(value, dict):
            self.fail(path, f"must be an object (got {json_type(value)}).")
            return None

        def at(key: str) -> str:
            return f"{path}.{key}" if path else key

        turns_value = value.get("turns")
        turns: list[dict[str, Any]] | None = None
        if turns_value is not None:
            if not isinstance(turns_value, list):
                self.fail(at("turns"), f"must be a list of turns or null (got {json_type(turns_value)}).")
            else:
                parsed = [self.turn(turn, f"{at('turns')}[{i}]") for i, turn in enumerate(turns_value)]
                turns = [turn for turn in parsed if turn is not None] or None
        self.strings(value, "file_ids", at("file_ids"))
        self.text(value, "evaluator_version_id", at("evaluator_version_id"))
        return ItemInput(
            request=self.text(value, "request", at("request")),
            response=self.text(value, "response", at("response")),
            contexts=self.strings(value, "contexts", at("contexts")),
            expected_output=self.text(value, "expected_output", at("expected_output"), limit=MAX_LONG_TEXT),
            turns=turns,
            system_prompt=self.text(value, "system_prompt", at("system_prompt"), limit=MAX_LONG_TEXT),
            user_id=self.text(value, "user_id", at("user_id"), limit=MAX_ID_TEXT),
            session_id=self.text(value, "session_id", at("session_id"), limit=MAX_ID_TEXT),
        )

    def inputs(self, body: dict[str, Any]) -> list[ItemInput]:
        value = body.get("inputs")
        if value is None:
            self.fail("inputs", "this field is required (a list of 1 to 100 input objects).")
            return []
        if not isinstance(value, list):
            self.fail("inputs", f"must be a list of input objects (got {json_type(value)}).")
            return []
        if not 1 <= len(value) <= MAX_INPUTS:
            self.fail("inputs", f"ensure this list has between 1 and {MAX_INPUTS} items (got {len(value)}).")
            return []
        items = [self.item(item, f"inputs[{index}]") for index, item in enumerate(value)]
        return [item for item in items if item is not None]


@dataclass(frozen=True)
class BatchRequest:
    inputs: list[ItemInput]
    tags: list[str]
    judge_version_id: str | None
    project_id: str | None
    judge_id: str | None = None
    evaluator_ids: list[str] | None = None


def read_batch_request(body: dict[str, Any], *, generic: bool) -> BatchRequest:
    """The body of POST /v1/judges/{id}/batch-execute/ or, with generic=True, POST /v1/batch-executions/."""
    check = Checker()
    judge_id: str | None = None
    evaluator_ids: list[str] | None = None
    if generic:
        for key in ("dataset_id", "range"):
            if body.get(key) is not None:
                check.fail(
                    key, 'the offline judge takes inline inputs only; send "inputs" (1 to 100 objects).'
                )
        check.raise_if_any()
        judge_id = check.uuid(body, "judge_id", "judge_id")
        evaluator_ids = check.strings(body, "evaluator_ids", "evaluator_ids")
        if body.get("judge_id") is None and evaluator_ids is None:
            check.fail("judge_id", "either judge_id or evaluator_ids is required.")
        elif body.get("judge_id") is not None and evaluator_ids is not None:
            check.fail("judge_id", "give judge_id or evaluator_ids, not both.")
        elif evaluator_ids is not None and not evaluator_ids:
            check.fail("evaluator_ids", "ensure this list has at least 1 item.")
    inputs = check.inputs(body)
    tags = check.strings(body, "tags", "tags", limit=MAX_TAG) or []
    judge_version_id = check.uuid(body, "judge_version_id", "judge_version_id")
    project_id = check.uuid(body, "project_id", "project_id")
    check.raise_if_any()
    return BatchRequest(
        inputs=inputs,
        tags=tags,
        judge_version_id=judge_version_id,
        project_id=project_id,
        judge_id=judge_id,
        evaluator_ids=evaluator_ids,
    )


@dataclass(frozen=True)
class ExecuteRequest:
    input: ItemInput
    tags: list[str]
    judge_version_id: str | None
    project_id: str | None


def read_execute_request(body: dict[str, Any]) -> ExecuteRequest:
    check = Checker()
    item = check.item(body, "")
    check.objects(body, "tools", "tools")
    tags = check.strings(body, "tags", "tags", limit=MAX_TAG) or []
    judge_version_id = check.uuid(body, "judge_version_id", "judge_version_id")
    project_id = check.uuid(body, "project_id", "project_id")
    check.raise_if_any()
    assert item is not None  # the body is a dict, checked by the view
    return ExecuteRequest(input=item, tags=tags, judge_version_id=judge_version_id, project_id=project_id)
