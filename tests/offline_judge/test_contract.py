"""Every reply parses with the official SDK's generated models and carries exactly their keys.

`Model.from_dict` fills absent keys with None before validating, so parsing alone would not notice a
missing key: the keys are compared with each model's field aliases too, recursively.
"""

from __future__ import annotations

import inspect
import types
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel
from scorable.generated.openapi_client.models import (
    BatchExecutionDetail,
    BatchExecutionResponse,
    Evaluator,
    EvaluatorResult,
    ExecutionLogDetails,
    Judge,
    JudgeExecutionResponse,
    PaginatedBatchExecutionListItemList,
    PaginatedEvaluatorListOutputList,
    PaginatedExecutionLogListList,
    PaginatedJudgeListList,
)

from tests.offline_judge.harness import QA, RAG, SUPPORT, Api, FakeClock, assert_problem, qa_input, rag_input


def assert_shape(value: Any, annotation: Any, path: str = "$") -> None:
    """Walk a reply along a model's annotations; every object must have exactly the model's keys."""
    if value is None:
        return
    origin = get_origin(annotation)
    if origin is Annotated:
        assert_shape(value, get_args(annotation)[0], path)
    elif origin in (Union, types.UnionType):
        for option in get_args(annotation):
            if option is not type(None):
                assert_shape(value, option, path)
    elif origin is list:
        for index, item in enumerate(value):
            assert_shape(item, get_args(annotation)[0], f"{path}[{index}]")
    elif origin is dict:
        for key, item in value.items():
            assert_shape(item, get_args(annotation)[1], f"{path}.{key}")
    elif inspect.isclass(annotation) and issubclass(annotation, BaseModel):
        assert isinstance(value, dict), f"{path}: expected an object for {annotation.__name__}"
        fields = {(info.alias or name): info for name, info in annotation.model_fields.items()}
        assert set(value) == set(fields), (
            f"{path} ({annotation.__name__}): missing {sorted(set(fields) - set(value))}, "
            f"extra {sorted(set(value) - set(fields))}"
        )
        for key, info in fields.items():
            assert_shape(value[key], info.annotation, f"{path}.{key}")


def assert_contract(data: dict[str, Any], model: type[BaseModel]) -> Any:
    parsed = model.from_dict(data)  # type: ignore[attr-defined]
    assert parsed is not None
    assert_shape(data, model)
    return parsed


def assert_evaluator_results(results: list[dict[str, Any]]) -> None:
    """Batch items type evaluator_results as Any; the offline judge promises the six-field EvaluatorResult."""
    assert results
    for result in results:
        assert_contract(result, EvaluatorResult)


def test_judge_list_matches_paginated_judge_list_model(api: Api) -> None:
    data = api.get("/v1/judges/", page_size=2).json()
    parsed = assert_contract(data, PaginatedJudgeListList)
    assert len(parsed.results) == 2
    assert data["next"].startswith("http://testserver/judge-api/v1/judges/?")


def test_every_judge_detail_matches_judge_model(api: Api) -> None:
    for judge in (RAG, SUPPORT, QA):
        data = api.get(f"/v1/judges/{judge.id}/").json()
        parsed = assert_contract(data, Judge)
        assert parsed.id == judge.id
        assert parsed.version_id == judge.version_id
        assert data["_meta"] == {"offline": True}
        assert 2 <= len(parsed.evaluators) <= 4


def test_execute_reply_matches_judge_execution_response(api: Api, clock: FakeClock) -> None:
    response = api.post(f"/v1/judges/{RAG.id}/execute/", rag_input())
    assert response.status_code == 200
    parsed = assert_contract(response.json(), JudgeExecutionResponse)
    assert [r.evaluator_name for r in parsed.evaluator_results] == [e.name for e in RAG.evaluators]
    assert parsed.execution_log_id


def test_both_batch_creates_reply_202_with_batch_execution_response(api: Api, clock: FakeClock) -> None:
    scoped = api.post(f"/v1/judges/{QA.id}/batch-execute/", {"inputs": [qa_input()]})
    generic = api.post("/v1/batch-executions/", {"judge_id": QA.id, "inputs": [qa_input()]})
    for response in (scoped, generic):
        assert response.status_code == 202
        parsed = assert_contract(response.json(), BatchExecutionResponse)
        assert parsed.status_url == f"/v1/judges/batch-executions/{parsed.batch_execution_id}/"


def test_batch_list_matches_paginated_batch_list_model(api: Api, clock: FakeClock) -> None:
    api.create(QA, [qa_input()], tags=["docket:run:0"])
    api.create(RAG, [rag_input()])
    data = api.get("/v1/judges/batch-executions/").json()
    parsed = assert_contract(data, PaginatedBatchExecutionListItemList)
    assert len(parsed.results) == 2
    assert data["results"][1]["tags"] == ["docket:run:0"]


def test_batch_detail_matches_model_while_pending_processing_and_finished(api: Api, clock: FakeClock) -> None:
    # Four items fill the four lanes, so the second batch waits: pending first.
    api.create(SUPPORT, [{"response": "Happy to help!"}] * 4)
    batch_id = api.create(QA, [qa_input(), qa_input("Lyon"), {"response": "no reference"}])
    seen = []
    for step in range(4):
        data = api.batch(batch_id)
        parsed = assert_contract(data, BatchExecutionDetail)
        seen.append(parsed.status.value)
        for item in data["items"]:
            if item["status"] == "completed":
                assert_evaluator_results(item["evaluator_results"])
        if step < 3:
            clock.advance(0.12)
    assert seen == ["pending", "processing", "partial", "partial"]


def test_execution_log_matches_execution_log_details_model(api: Api, clock: FakeClock) -> None:
    batch_id = api.create(
        RAG,
        [
            {
                **rag_input(),
                "turns": [
                    {"role": "user", "content": "When?"},
                    {"role": "assistant", "content": None, "tool_calls": [{"id": "1", "type": "function"}]},
                    {"role": "tool", "content": "1889", "tool_call_id": "1"},
                ],
                "user_id": "u-1",
                "session_id": "s-1",
                "system_prompt": "Be brief.",
            }
        ],
        tags=["nightly"],
    )
    clock.advance(1)
    log_id = api.batch(batch_id)["items"][0]["execution_log_id"]
    data = api.get(f"/v1/execution-logs/{log_id}/").json()
    parsed = assert_contract(data, ExecutionLogDetails)
    assert parsed.execution_type == "judge"
    assert parsed.executed_item_id == RAG.id
    assert parsed.tags == ["nightly"]
    assert (parsed.user_id, parsed.session_id, parsed.system_prompt) == ("u-1", "s-1", "Be brief.")
    assert [r.threshold for r in parsed.evaluator_results] == [e.threshold for e in RAG.evaluators]
    assert parsed.score == round(sum(r.result for r in parsed.evaluator_results) / 3, 3)


def test_execution_log_of_an_execute_has_empty_strings_where_nothing_was_sent(
    api: Api, clock: FakeClock
) -> None:
    log_id = api.post(f"/v1/judges/{SUPPORT.id}/execute/", {"response": "Thanks!"}).json()["execution_log_id"]
    parsed = assert_contract(api.get(f"/v1/execution-logs/{log_id}/").json(), ExecutionLogDetails)
    assert (parsed.user_id, parsed.session_id, parsed.system_prompt, parsed.turns) == ("", "", "", None)
    assert parsed.cost and parsed.cost > 0


def test_problem_bodies_have_exactly_six_keys(api: Api, clock: FakeClock) -> None:
    assert_problem(api.post(f"/v1/judges/{QA.id}/batch-execute/", {"inputs": []}), 400, "invalid")
    assert_problem(api.post(f"/v1/judges/{QA.id}/batch-execute/", "{not json"), 400, "parse_error")
    assert_problem(
        api.get("/v1/judges/batch-executions/00000000-0000-0000-0000-000000000000/"), 404, "not_found"
    )
    api.key = "wrong"
    assert_problem(api.get("/v1/judges/"), 401, "authentication_failed")


def test_an_evaluator_only_batch_detail_matches_the_model_with_judge_null(api: Api, clock: FakeClock) -> None:
    body = {"evaluator_ids": [SUPPORT.evaluators[0].id], "inputs": [{"response": "Sure."}]}
    batch_id = api.post("/v1/batch-executions/", body).json()["batch_execution_id"]
    clock.advance(1)
    data = api.batch(batch_id)
    parsed = assert_contract(data, BatchExecutionDetail)
    assert parsed.judge is None
    assert_evaluator_results(data["items"][0]["evaluator_results"])
    log = api.get(f"/v1/execution-logs/{data['items'][0]['execution_log_id']}/").json()
    assert assert_contract(log, ExecutionLogDetails).execution_type == "evaluator"


def test_execution_log_list_matches_the_model_with_and_without_include(api: Api, clock: FakeClock) -> None:
    rag_row = {**rag_input(), "user_id": "u-1", "session_id": "s-1"}
    api.create(RAG, [rag_row, {**rag_input(1), "expected_output": "1889"}], tags=["nightly"])
    api.post("/v1/batch-executions/", {"evaluator_ids": [QA.evaluators[0].id], "inputs": [qa_input()]})
    api.post(f"/v1/judges/{SUPPORT.id}/execute/", {"response": "Thanks!", "tags": ["adhoc"]})
    clock.advance(1)
    plain = api.get("/v1/execution-logs/", page_size=100).json()
    parsed = assert_contract(plain, PaginatedExecutionLogListList)
    # RAG: 2 x (1 + 3); the evaluator set: 1 + 1; the execute: 1 + 4.
    assert len(parsed.results) == 8 + 2 + 5
    assert {row.execution_type for row in parsed.results} == {"judge", "evaluator"}
    included = api.get("/v1/execution-logs/", include="llm_output,variables,evaluation_context").json()
    parsed = assert_contract(included, PaginatedExecutionLogListList)
    assert all(row.variables is not None and row.llm_output is not None for row in parsed.results)
    assert all(row.evaluation_context is not None for row in parsed.results)
    paged = api.get("/v1/execution-logs/", page_size=2).json()
    assert_contract(paged, PaginatedExecutionLogListList)
    assert paged["next"].startswith("http://testserver/judge-api/v1/execution-logs/?")


def test_child_evaluator_logs_match_execution_log_details(api: Api, clock: FakeClock) -> None:
    log_id = api.post(f"/v1/judges/{QA.id}/execute/", qa_input()).json()["execution_log_id"]
    children = api.get("/v1/execution-logs/", parent_execution_log_id=log_id).json()["results"]
    assert len(children) == 3
    for child in children:
        data = api.get(f"/v1/execution-logs/{child['id']}/").json()
        parsed = assert_contract(data, ExecutionLogDetails)
        assert parsed.parent_execution_log_id == log_id
        assert parsed.execution_type == "evaluator"


def test_set_tags_replies_204_with_no_body_and_problems_as_the_others(api: Api, clock: FakeClock) -> None:
    log_id = api.post(f"/v1/judges/{QA.id}/execute/", qa_input()).json()["execution_log_id"]
    response = api.post("/v1/execution-logs/set-tags/", {"log_ids": [log_id], "tags": ["gold"]})
    assert response.status_code == 204 and response.content == b""
    assert_problem(api.post("/v1/execution-logs/set-tags/", {"log_ids": []}), 400, "invalid")
    assert_problem(api.post("/v1/execution-logs/set-tags/", "[1"), 400, "parse_error")
    assert_problem(api.get("/v1/execution-logs/set-tags/"), 405, "method_not_allowed")


def test_evaluator_list_and_detail_match_their_models(api: Api) -> None:
    data = api.get("/v1/evaluators/", page_size=3).json()
    parsed = assert_contract(data, PaginatedEvaluatorListOutputList)
    assert len(parsed.results) == 3
    assert data["next"].startswith("http://testserver/judge-api/v1/evaluators/?")
    for judge in (RAG, SUPPORT, QA):
        for spec in judge.evaluators:
            detail = assert_contract(api.get(f"/v1/evaluators/{spec.id}/").json(), Evaluator)
            assert (detail.id, detail.version_id, detail.models) == (spec.id, spec.version_id, [spec.model])
