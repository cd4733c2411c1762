"""Client mistakes get a 400 problem whose detail names the field, and nothing is created."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from offline_judge.models import Batch, BatchTag
from tests.offline_judge.harness import QA, RAG, SUPPORT, Api, FakeClock, assert_problem, qa_input

OK = {"response": "Paris", "expected_output": "Paris"}


def with_input(**fields: Any) -> dict[str, Any]:
    return {"inputs": [OK, OK, OK, {**OK, **fields}]}


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({"inputs": []}, "inputs: ensure this list has between 1 and 100 items (got 0)."),
        ({"inputs": [OK] * 101}, "inputs: ensure this list has between 1 and 100 items (got 101)."),
        ({}, "inputs: this field is required"),
        ({"inputs": {"response": "x"}}, "inputs: must be a list of input objects (got object)."),
        ({"inputs": [OK, "Paris"]}, "inputs[1]: must be an object (got string)."),
        (with_input(request=42), "inputs[3].request: must be a string or null (got number)."),
        (with_input(response=["a"]), "inputs[3].response: must be a string or null (got array)."),
        (
            with_input(expected_output=True),
            "inputs[3].expected_output: must be a string or null (got boolean).",
        ),
        (with_input(system_prompt={}), "inputs[3].system_prompt: must be a string or null (got object)."),
        (with_input(contexts="a"), "inputs[3].contexts: must be a list of non-empty strings (got string)."),
        (
            with_input(contexts=["a", ""]),
            "inputs[3].contexts[1]: must be a non-empty string (got an empty string).",
        ),
        (with_input(contexts=[1]), "inputs[3].contexts[0]: must be a non-empty string (got number)."),
        (with_input(turns="hi"), "inputs[3].turns: must be a list of turns or null (got string)."),
        (
            with_input(turns=["hi"]),
            "inputs[3].turns[0]: must be an object with role and content (got string).",
        ),
        (
            with_input(turns=[{"role": "system", "content": "x"}]),
            'inputs[3].turns[0].role: "system" is not one of user, assistant, tool.',
        ),
        (with_input(turns=[{"content": "x"}]), "inputs[3].turns[0].role: this field is required."),
        (
            with_input(turns=[{"role": "user", "content": 5}]),
            "inputs[3].turns[0].content: must be a string or null (got number).",
        ),
        (
            with_input(turns=[{"role": "assistant", "contexts": [""]}]),
            "inputs[3].turns[0].contexts[0]: must be a non-empty string",
        ),
        (
            with_input(user_id="u" * 256),
            "inputs[3].user_id: ensure this field has no more than 255 characters (got 256).",
        ),
        (
            with_input(session_id="s" * 256),
            "inputs[3].session_id: ensure this field has no more than 255 characters (got 256).",
        ),
        (
            with_input(expected_output="x" * 3_500_001),
            "inputs[3].expected_output: ensure this field has no more than 3,500,000 characters (got 3,500,001).",
        ),
        (
            with_input(system_prompt="x" * 3_500_001),
            "inputs[3].system_prompt: ensure this field has no more than 3,500,000 characters",
        ),
        ({"inputs": [OK], "tags": "nightly"}, "tags: must be a list of non-empty strings (got string)."),
        ({"inputs": [OK], "tags": ["ok", ""]}, "tags[1]: must be a non-empty string (got an empty string)."),
        ({"inputs": [OK], "tags": [7]}, "tags[0]: must be a non-empty string (got number)."),
        ({"inputs": [OK], "judge_version_id": "v2"}, 'judge_version_id: "v2" is not a valid UUID.'),
        (
            {"inputs": [OK], "judge_version_id": str(uuid.UUID(int=1))},
            f'judge_version_id: unknown version "{uuid.UUID(int=1)}" of judge "{QA.name}"',
        ),
        ({"inputs": [OK], "project_id": "p"}, 'project_id: "p" is not a valid UUID.'),
    ],
)
def test_judge_batch_create_rejects_with_a_detail_naming_the_field(
    api: Api, clock: FakeClock, body: dict[str, Any], detail: str
) -> None:
    problem = assert_problem(api.post(f"/v1/judges/{QA.id}/batch-execute/", body), 400, "invalid")
    assert problem["detail"].startswith(detail)
    assert Batch.objects.count() == 0


def test_several_problems_are_reported_together(api: Api, clock: FakeClock) -> None:
    body = {"inputs": [{"request": 1, "response": 2}], "tags": [""]}
    problem = assert_problem(api.post(f"/v1/judges/{QA.id}/batch-execute/", body), 400, "invalid")
    for field in ("inputs[0].request:", "inputs[0].response:", "tags[0]:"):
        assert field in problem["detail"]


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (
            {"judge_id": QA.id, "dataset_id": str(uuid.uuid4())},
            "dataset_id: the offline judge takes inline inputs",
        ),
        (
            {"judge_id": QA.id, "range": {"start": 0, "end": 9}},
            "range: the offline judge takes inline inputs",
        ),
        ({"inputs": [OK]}, "judge_id: either judge_id or evaluator_ids is required."),
        (
            {"inputs": [OK], "judge_id": QA.id, "evaluator_ids": [QA.evaluators[0].id]},
            "judge_id: give judge_id or evaluator_ids, not both.",
        ),
        (
            {"inputs": [OK], "judge_id": str(uuid.UUID(int=7))},
            f'judge_id: no judge with id "{uuid.UUID(int=7)}".',
        ),
        ({"inputs": [OK], "judge_id": "rag"}, 'judge_id: "rag" is not a valid UUID.'),
        ({"inputs": [OK], "evaluator_ids": ["nope"]}, 'evaluator_ids[0]: no evaluator with id "nope".'),
        ({"inputs": [OK], "evaluator_ids": []}, "evaluator_ids: ensure this list has at least 1 item."),
        (
            {"inputs": [OK], "evaluator_ids": [QA.evaluators[0].id], "judge_version_id": QA.version_id},
            "judge_version_id: only meaningful with judge_id",
        ),
        (
            {"judge_id": QA.id, "inputs": [OK] * 101},
            "inputs: ensure this list has between 1 and 100 items (got 101).",
        ),
    ],
)
def test_generic_batch_create_rejects_with_a_detail_naming_the_field(
    api: Api, clock: FakeClock, body: dict[str, Any], detail: str
) -> None:
    problem = assert_problem(api.post("/v1/batch-executions/", body), 400, "invalid")
    assert problem["detail"].startswith(detail)
    assert Batch.objects.count() == 0


def test_an_unknown_judge_is_404_on_the_judge_routes(api: Api, clock: FakeClock) -> None:
    for path in ("/", "/execute/", "/batch-execute/"):
        method = api.get if path == "/" else (lambda p: api.post(p, {"inputs": [OK]}))
        problem = assert_problem(method(f"/v1/judges/{uuid.UUID(int=3)}{path}"), 404, "not_found")
        assert str(uuid.UUID(int=3)) in problem["detail"]


def test_malformed_json_is_a_parse_error(api: Api, clock: FakeClock) -> None:
    problem = assert_problem(
        api.post(f"/v1/judges/{QA.id}/batch-execute/", '{"inputs": ['), 400, "parse_error"
    )
    assert problem["detail"].startswith("JSON parse error")


def test_a_body_that_is_not_an_object_is_invalid(api: Api, clock: FakeClock) -> None:
    problem = assert_problem(api.post(f"/v1/judges/{QA.id}/batch-execute/", [OK]), 400, "invalid")
    assert problem["detail"] == "body: must be a JSON object (got array)."


def test_unknown_keys_are_ignored(api: Api, clock: FakeClock) -> None:
    body = {"inputs": [{**OK, "colour": "blue", "tools": []}], "priority": "high", "dataset_id": None}
    assert api.post(f"/v1/judges/{QA.id}/batch-execute/", body).status_code == 202


def test_texts_of_3_5_million_characters_are_accepted_despite_djangos_2_5_mb_body_limit(
    api: Api, clock: FakeClock
) -> None:
    long = "Paris " * 583_333
    response = api.post(
        f"/v1/judges/{QA.id}/batch-execute/", {"inputs": [{"response": "Paris", "expected_output": long}]}
    )
    assert response.status_code == 202


def test_a_row_missing_a_required_input_is_accepted_and_that_item_fails_clearly(
    api: Api, clock: FakeClock
) -> None:
    batch_id = api.create(QA, [qa_input(), {"request": "Capital of France?", "response": "Paris"}])
    clock.advance(1)
    detail = api.batch(batch_id)
    assert [item["status"] for item in detail["items"]] == ["completed", "failed"]
    assert detail["items"][1]["error_message"] == (
        'Missing required input "expected_output": this judge compares the response with a reference answer.'
    )
    assert detail["status"] == "partial"


def test_turns_can_stand_in_for_request_and_response(api: Api, clock: FakeClock) -> None:
    turns = [{"role": "user", "content": "Where is it?"}, {"role": "assistant", "content": "In Paris."}]
    batch_id = api.create(RAG, [{"turns": turns, "contexts": ["It is in Paris."]}])
    clock.advance(1)
    item = api.batch(batch_id)["items"][0]
    assert item["status"] == "completed"
    assert item["input"] == {
        "request": None,
        "response": None,
        "contexts": ["It is in Paris."],
        "expected_output": None,
        "turns": turns,
    }


def test_execute_with_a_missing_required_input_is_a_400_naming_it(api: Api, clock: FakeClock) -> None:
    problem = assert_problem(
        api.post(f"/v1/judges/{RAG.id}/execute/", {"response": "In Paris.", "request": "Where?"}),
        400,
        "invalid",
    )
    assert problem["detail"] == (
        'Missing required input "contexts": this judge checks the response against the retrieved contexts.'
    )


def test_execute_validates_fields_like_a_batch_input(api: Api, clock: FakeClock) -> None:
    body = {"response": "Hi", "turns": [{"role": "robot"}], "tags": ["x" * 1001]}
    problem = assert_problem(api.post(f"/v1/judges/{SUPPORT.id}/execute/", body), 400, "invalid")
    assert problem["detail"].startswith('turns[0].role: "robot" is not one of user, assistant, tool.')
    assert "tags[0]: ensure this field has no more than 1,000 characters." in problem["detail"]


def test_an_evaluator_only_batch_runs_just_those_evaluators(api: Api, clock: FakeClock) -> None:
    specs = [SUPPORT.evaluators[1], QA.evaluators[2]]
    body = {
        "evaluator_ids": [s.id for s in specs],
        "inputs": [{"response": "It was 1889", "expected_output": "1889"}],
    }
    batch_id = api.post("/v1/batch-executions/", body).json()["batch_execution_id"]
    clock.advance(1)
    detail = api.batch(batch_id)
    assert detail["judge"] is None
    assert [e["name"] for e in detail["evaluators"]] == [s.name for s in specs]
    assert [r["evaluator_name"] for r in detail["items"][0]["evaluator_results"]] == [s.name for s in specs]


def test_an_evaluator_only_batch_names_the_evaluator_that_needs_a_missing_input(
    api: Api, clock: FakeClock
) -> None:
    body = {"evaluator_ids": [QA.evaluators[1].id], "inputs": [{"response": "1889"}]}
    batch_id = api.post("/v1/batch-executions/", body).json()["batch_execution_id"]
    clock.advance(1)
    assert api.batch(batch_id)["items"][0]["error_message"] == (
        'Missing required input "expected_output": the evaluator "Token F1" compares the response with a '
        "reference answer."
    )


def test_tags_are_recorded_as_rows_once_per_batch(api: Api, clock: FakeClock) -> None:
    batch_id = api.create(QA, [qa_input()], tags=["docket:r:0", "nightly", "nightly"])
    assert sorted(BatchTag.objects.filter(batch_id=batch_id).values_list("tag", flat=True)) == [
        "docket:r:0",
        "nightly",
    ]
    assert api.batch(batch_id)["tags"] == ["docket:r:0", "nightly", "nightly"]


# --- Hostile input: a 400 problem, never a 500 ------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("date_from", "2024-02-30"),
        ("date_from", "0000-01-01"),
        ("date_to", "2024-03-01T25:00"),
        ("date_to", "2024-03-01T10:00:00+25:00"),
        ("date_to", "9999-12-31T23:00:00-05:00"),
        ("date_from", "0001-01-01T00:00:00+05:00"),
    ],
)
def test_an_impossible_date_filter_is_a_400_naming_the_parameter(api: Api, key: str, value: str) -> None:
    body = assert_problem(api.get("/v1/judges/batch-executions/", **{key: value}), 400, "invalid")
    assert body["detail"].startswith(f'{key}: "{value}"')


def test_a_body_nested_100000_deep_is_a_400_parse_error(api: Api) -> None:
    body = '{"inputs": ' + "[" * 100_000 + "]" * 100_000 + "}"
    problem = assert_problem(api.post(f"/v1/judges/{QA.id}/batch-execute/", body), 400, "parse_error")
    assert "nested deeper than 64 levels" in problem["detail"]
    assert not Batch.objects.exists()


def test_a_body_nested_just_past_the_limit_is_a_400_parse_error(api: Api) -> None:
    body = '{"inputs": [' + '{"a": ' * 70 + "1" + "}" * 70 + "]}"
    assert_problem(api.post(f"/v1/judges/{QA.id}/batch-execute/", body), 400, "parse_error")


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ('{"inputs": [{"response": "Paris"}], "tags": ["ok", "\\ud800"]}', "tags[1]: holds a lone surrogate"),
        (
            '{"inputs": [{"response": "Pa\\udfffris"}]}',
            "inputs[0].response: holds a lone surrogate (\\udfff)",
        ),
        ('{"inputs": [{"\\ud800": "Paris"}]}', "inputs[0]: a key holds a lone surrogate (\\ud800)"),
    ],
)
def test_a_lone_surrogate_anywhere_in_the_body_is_a_400_naming_where(
    api: Api, body: str, detail: str
) -> None:
    problem = assert_problem(api.post(f"/v1/judges/{QA.id}/batch-execute/", body), 400, "invalid")
    assert detail in problem["detail"]
    assert not Batch.objects.exists()


@pytest.mark.parametrize(
    "cursor",
    [
        "eyJzIjo5OTk5OTk5OTk5OTk5OTk5OTk5OTk5OSwiZCI6Im5leHQifQ",  # {"s":99999999999999999999999,...}
        "eyJzIjp0cnVlLCJkIjoibmV4dCJ9",  # {"s":true,"d":"next"}
        "W1tb" * 2000,  # 6,000 "["
    ],
)
def test_a_forged_batch_list_cursor_is_a_404_problem_not_a_crash(api: Api, cursor: str) -> None:
    assert_problem(api.get("/v1/judges/batch-executions/", cursor=cursor), 404, "not_found")
