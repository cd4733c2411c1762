"""GET /v1/execution-logs/ (filters, include, cursor), POST /v1/execution-logs/set-tags/, the child log
per evaluator, projects and per-row ids, and GET /v1/evaluators/."""

from __future__ import annotations

from typing import Any

import pytest

from offline_judge import pagination
from offline_judge.catalogue import EVALUATORS_BY_ID, OWNER, PROJECT_ID, stable_id
from tests.offline_judge.harness import QA, RAG, SUPPORT, Api, FakeClock, assert_problem, qa_input, rag_input

OTHER_PROJECT = stable_id("project", "other")


def all_logs(api: Api, **params: Any) -> list[dict[str, Any]]:
    """Every row of the filtered list, following `next` as a client would."""
    rows: list[dict[str, Any]] = []
    response = api.get("/v1/execution-logs/", **params)
    assert response.status_code == 200, response.content
    page = response.json()
    while True:
        rows += page["results"]
        if not page["next"]:
            return rows
        page = api.client.get(page["next"], headers=api.headers()).json()


def ids(rows: list[dict[str, Any]]) -> set[str]:
    return {row["id"] for row in rows}


def support_batch(api: Api, clock: FakeClock, responses: list[str], **extra: Any) -> dict[str, Any]:
    batch_id = api.create(SUPPORT, [{"response": text} for text in responses], **extra)
    clock.advance(10)
    return api.batch(batch_id)


def test_a_batch_lists_one_log_per_item_and_one_child_per_evaluator(api: Api, clock: FakeClock) -> None:
    batch = support_batch(api, clock, ["Happy to help!", "No. I can't do that.", "Sure, here it is."])
    rows = all_logs(api, batch_execution_id=batch["batch_execution_id"], page_size=100)
    # 3 items x (1 item log + 4 evaluator logs) = 15 rows.
    assert len(rows) == 15
    parents = [row for row in rows if row["parent_execution_log_id"] is None]
    assert {row["id"] for row in parents} == {item["execution_log_id"] for item in batch["items"]}
    assert {row["execution_type"] for row in parents} == {"judge"}
    by_item = {item["execution_log_id"]: item for item in batch["items"]}
    for parent in parents:
        children = [row for row in rows if row["parent_execution_log_id"] == parent["id"]]
        assert [
            c["executed_item_name"] for c in sorted(children, key=lambda c: c["executed_item_name"])
        ] == sorted(spec.name for spec in SUPPORT.evaluators)
        assert {c["execution_type"] for c in children} == {"evaluator"}
        assert {c["executed_item_id"] for c in children} == {spec.id for spec in SUPPORT.evaluators}
        # The item's cost is what its evaluators cost, and each child's score is its evaluator's result.
        assert parent["cost"] == pytest.approx(sum(c["cost"] for c in children), abs=1e-9)
        assert all(c["cost"] > 0 for c in children)
        results = {r["evaluator_name"]: r["score"] for r in by_item[parent["id"]]["evaluator_results"]}
        assert {c["executed_item_name"]: c["score"] for c in children} == results
        assert parent["executed_item_id"] == SUPPORT.id and parent["executed_item_name"] == SUPPORT.name


def test_an_evaluator_child_log_reads_as_a_whole_log(api: Api, clock: FakeClock) -> None:
    batch = support_batch(api, clock, ["Thanks for asking, happy to help!"])
    parent_id = batch["items"][0]["execution_log_id"]
    children = all_logs(api, parent_execution_log_id=parent_id)
    assert len(children) == 4
    politeness = next(c for c in children if c["executed_item_name"] == "Politeness")
    detail = api.get(f"/v1/execution-logs/{politeness['id']}/").json()
    assert detail["parent_execution_log_id"] == parent_id
    assert detail["model"] == EVALUATORS_BY_ID[politeness["executed_item_id"]].model
    assert detail["cost"] == politeness["cost"] and detail["score"] == politeness["score"]
    assert [r["evaluator_name"] for r in detail["evaluator_results"]] == ["Politeness"]
    # The inputs are the parent's: stored once, read through the child.
    assert detail["variables"]["response"] == "Thanks for asking, happy to help!"


def test_logs_appear_only_as_their_items_complete(api: Api, clock: FakeClock) -> None:
    # Eight items on four lanes of 0.12 s: four finish at +0.12 s, four at +0.24 s.
    batch_id = api.create(SUPPORT, [{"response": f"Hello {n}"} for n in range(8)])
    assert all_logs(api, batch_execution_id=batch_id) == []
    clock.advance(0.12)
    assert len(all_logs(api, batch_execution_id=batch_id, execution_type="judge")) == 4
    clock.advance(0.12)
    assert len(all_logs(api, batch_execution_id=batch_id, execution_type="judge")) == 8


def test_log_pages_follow_next_and_previous_without_gaps_or_repeats(api: Api, clock: FakeClock) -> None:
    support_batch(api, clock, ["One.", "Two.", "Three."])
    everything = all_logs(api, page_size=1000)
    assert len(everything) == 15
    paged = all_logs(api, page_size=4)
    assert [row["id"] for row in paged] == [row["id"] for row in everything]
    # Newest first, ties broken by id.
    keys = [(row["created_at"], row["id"]) for row in everything]
    assert keys == sorted(keys, reverse=True)
    oldest_first = all_logs(api, page_size=4, ordering="created_at")
    assert [row["id"] for row in oldest_first] == [row["id"] for row in everything][::-1]
    first = api.get("/v1/execution-logs/", page_size=4).json()
    second = api.client.get(first["next"], headers=api.headers()).json()
    back = api.client.get(second["previous"], headers=api.headers()).json()
    assert back["results"] == first["results"]
    assert first["previous"] is None
    # The Python SDK sends the whole next URL back as the cursor.
    whole = api.get("/v1/execution-logs/", page_size=4, cursor=first["next"]).json()
    assert whole["results"] == second["results"]


def test_a_log_page_holds_up_to_1000_rows(api: Api, clock: FakeClock) -> None:
    support_batch(api, clock, [f"Reply {n}." for n in range(100)])
    # 100 items x 5 logs = 500: one call reads a batch of 100 items whole.
    assert len(api.get("/v1/execution-logs/", page_size=500).json()["results"]) == 500
    assert len(api.get("/v1/execution-logs/").json()["results"]) == 20


def test_filters_by_judge_item_type_model_and_search(api: Api, clock: FakeClock) -> None:
    support_batch(api, clock, ["Happy to help!"])
    api.create(QA, [qa_input()])
    clock.advance(10)
    everything = all_logs(api, page_size=1000)
    assert len(everything) == 5 + 4  # SUPPORT: 1 + 4 evaluators; QA: 1 + 3.
    assert ids(all_logs(api, judge_id=QA.id)) == {
        row["id"] for row in everything if row["executed_item_id"] in {QA.id, *(e.id for e in QA.evaluators)}
    }
    token_f1 = QA.evaluators[1]
    assert [row["executed_item_name"] for row in all_logs(api, executed_item_id=token_f1.id)] == ["Token F1"]
    judges = all_logs(api, execution_type="judge")
    assert {row["executed_item_name"] for row in judges} == {SUPPORT.name, QA.name}
    assert all_logs(api, execution_type="experiment") == []
    numeric = all_logs(api, model="offline-numeric-1")
    assert [row["executed_item_name"] for row in numeric] == ["Numeric agreement"]
    assert [row["executed_item_name"] for row in all_logs(api, search="politeness")] == ["Politeness"]
    assert [row["executed_item_name"] for row in all_logs(api, search=token_f1.id)] == ["Token F1"]
    assert len(all_logs(api, owner_email=OWNER["email"])) == 9
    assert all_logs(api, owner_email="someone@else.invalid") == []


def test_score_and_cost_ranges_are_inclusive(api: Api, clock: FakeClock) -> None:
    support_batch(api, clock, ["Happy to help!", "NO. GO AWAY.", "Please email me at a@b.com, thanks!"])
    everything = all_logs(api, page_size=1000)
    some = sorted(everything, key=lambda row: row["cost"])[7]
    low, high = some["cost"], sorted(everything, key=lambda row: row["cost"])[10]["cost"]
    expected = {row["id"] for row in everything if low <= row["cost"] <= high}
    assert ids(all_logs(api, min_cost=low, max_cost=high)) == expected
    assert some["id"] in ids(all_logs(api, min_cost=low, max_cost=low))
    score = some["score"]
    assert ids(all_logs(api, min_score=score, max_score=score)) == {
        row["id"] for row in everything if row["score"] == score
    }
    assert all_logs(api, min_score=1.01) == []


def test_dates_are_inclusive_on_both_ends(api: Api, clock: FakeClock) -> None:
    first = support_batch(api, clock, ["One."])
    clock.advance(60)
    second = support_batch(api, clock, ["Two."])
    first_at = api.get(f"/v1/execution-logs/{first['items'][0]['execution_log_id']}/").json()["created_at"]
    second_at = api.get(f"/v1/execution-logs/{second['items'][0]['execution_log_id']}/").json()["created_at"]
    assert len(all_logs(api, date_from=first_at, date_to=first_at)) == 5
    assert len(all_logs(api, date_from=first_at, date_to=second_at)) == 10
    assert len(all_logs(api, date_from=second_at)) == 5
    assert len(all_logs(api, date_to=first_at[:10])) == 10  # a bare date ends at the end of that day


def test_unique_evaluators_keeps_the_newest_log_of_each(api: Api, clock: FakeClock) -> None:
    support_batch(api, clock, ["Old."])
    clock.advance(60)
    newer = support_batch(api, clock, ["New."])
    rows = all_logs(api, unique_evaluators="true")
    # One judge log and four evaluator logs, all from the newer batch.
    assert len(rows) == 5
    newest = ids(all_logs(api, batch_execution_id=newer["batch_execution_id"]))
    assert ids(rows) == newest


def test_project_user_and_session_are_stored_and_filterable(api: Api, clock: FakeClock) -> None:
    rows = [
        {"response": "Hi!", "user_id": "u-1", "session_id": "s-1"},
        {"response": "Hello!", "user_id": "u-2"},
    ]
    batch_id = api.post(
        "/v1/batch-executions/", {"judge_id": SUPPORT.id, "inputs": rows, "project_id": OTHER_PROJECT}
    ).json()["batch_execution_id"]
    api.create(QA, [qa_input()])
    clock.advance(10)
    assert api.batch(batch_id)["project_id"] == OTHER_PROJECT
    in_other = all_logs(api, project_id=OTHER_PROJECT)
    assert len(in_other) == 10 and ids(in_other) == ids(all_logs(api, batch_execution_id=batch_id))
    assert len(all_logs(api, project_id=PROJECT_ID)) == 4
    first_user = all_logs(api, user_id="u-1")
    assert len(first_user) == 5 and {row["session_id"] for row in first_user} == {"s-1"}
    assert len(all_logs(api, session_id="s-1")) == 5
    assert ids(all_logs(api, has_session_id="true")) == ids(first_user)
    assert len(all_logs(api, has_session_id="false")) == 5 + 4
    assert len(all_logs(api, user_id="u-1", session_id="nope")) == 0


def test_a_single_execute_keeps_project_user_session_and_writes_children(api: Api, clock: FakeClock) -> None:
    body = {
        **rag_input(),
        "project_id": OTHER_PROJECT,
        "user_id": "u-9",
        "session_id": "s-9",
        "tags": ["adhoc"],
    }
    log_id = api.post(f"/v1/judges/{RAG.id}/execute/", body).json()["execution_log_id"]
    rows = all_logs(api, project_id=OTHER_PROJECT)
    assert len(rows) == 4
    assert {row["parent_execution_log_id"] for row in rows} == {None, log_id}
    assert {(row["user_id"], row["session_id"]) for row in rows} == {("u-9", "s-9")}
    assert ids(all_logs(api, tags="adhoc")) == ids(rows)


def test_include_adds_llm_output_variables_and_evaluation_context(api: Api, clock: FakeClock) -> None:
    api.create(RAG, [rag_input()])
    clock.advance(10)
    plain = all_logs(api, execution_type="judge")[0]
    assert (plain["llm_output"], plain["variables"], plain["evaluation_context"]) == (None, None, None)
    assert plain["request_preview"] == rag_input()["request"]
    assert plain["response_preview"] == rag_input()["response"]
    rows = all_logs(api, include="llm_output,variables,evaluation_context")
    assert len(rows) == 4
    for row in rows:
        assert row["variables"]["response"] == rag_input()["response"]
        assert row["evaluation_context"]["contexts"] == rag_input()["contexts"]
        assert row["llm_output"]
    only_vars = all_logs(api, include="variables", execution_type="judge")[0]
    assert only_vars["llm_output"] is None and only_vars["variables"] is not None


def test_tags_filter_matches_any_named_tag(api: Api, clock: FakeClock) -> None:
    a = support_batch(api, clock, ["A."], tags=["docket:1:0", "nightly"])
    b = support_batch(api, clock, ["B."], tags=["docket:1:1"])
    support_batch(api, clock, ["C."])
    assert ids(all_logs(api, tags="nightly")) == ids(
        all_logs(api, batch_execution_id=a["batch_execution_id"])
    )
    both = ids(all_logs(api, tags="docket:1:0,docket:1:1"))
    assert len(both) == 10
    assert ids(all_logs(api, batch_execution_id=b["batch_execution_id"])) <= both
    assert all(row["tags"] == ["docket:1:0", "nightly"] for row in all_logs(api, tags="nightly"))


def test_set_tags_replaces_the_tags_of_the_named_logs(api: Api, clock: FakeClock) -> None:
    batch = support_batch(api, clock, ["A.", "B."], tags=["nightly"])
    first, second = (item["execution_log_id"] for item in batch["items"])
    response = api.post("/v1/execution-logs/set-tags/", {"log_ids": [first], "tags": ["reviewed", "gold"]})
    assert response.status_code == 204 and response.content == b""
    assert api.get(f"/v1/execution-logs/{first}/").json()["tags"] == ["reviewed", "gold"]
    assert api.get(f"/v1/execution-logs/{second}/").json()["tags"] == ["nightly"]
    assert ids(all_logs(api, tags="gold")) == {first}
    # The batch's tag no longer names the retagged log; its children and the other item keep it.
    assert first not in ids(all_logs(api, tags="nightly")) and len(all_logs(api, tags="nightly")) == 9
    assert api.post("/v1/execution-logs/set-tags/", {"log_ids": [first]}).status_code == 204
    assert api.get(f"/v1/execution-logs/{first}/").json()["tags"] == []
    assert all_logs(api, tags="gold") == []


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({}, "log_ids: this field is required (a list of 1 to 500 log ids)."),
        ({"log_ids": []}, "log_ids: ensure this list has between 1 and 500 items (got 0)."),
        (
            {"log_ids": [stable_id("log", str(n)) for n in range(501)]},
            "log_ids: ensure this list has between 1 and 500 items (got 501).",
        ),
        ({"log_ids": ["nope"]}, 'log_ids[0]: "nope" is not a valid UUID.'),
        (
            {"log_ids": [stable_id("log", "x")]},
            f'log_ids[0]: no execution log with id "{stable_id("log", "x")}".',
        ),
        ({"log_ids": "abc"}, "log_ids: must be a list of non-empty strings (got string)."),
        (
            {"log_ids": [stable_id("log", "x")], "tags": [f"t{n}" for n in range(16)]},
            "tags: ensure this list has no more than 15 items (got 16).",
        ),
        (
            {"log_ids": [stable_id("log", "x")], "tags": [""]},
            "tags[0]: must be a non-empty string (got an empty string).",
        ),
    ],
)
def test_set_tags_refuses_bad_bodies_naming_the_field(api: Api, body: dict[str, Any], detail: str) -> None:
    problem = assert_problem(api.post("/v1/execution-logs/set-tags/", body), 400, "invalid")
    assert problem["detail"] == detail


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"batch_execution_id": "b1"}, "batch_execution_id"),
        ({"judge_id": "rag"}, "judge_id"),
        ({"parent_execution_log_id": "x"}, "parent_execution_log_id"),
        ({"project_id": "default"}, "project_id"),
        ({"execution_type": "batch"}, "execution_type"),
        ({"min_cost": "cheap"}, "min_cost"),
        ({"max_score": "nan"}, "max_score"),
        ({"has_session_id": "maybe"}, "has_session_id"),
        ({"unique_evaluators": "yes please"}, "unique_evaluators"),
        ({"date_from": "yesterday"}, "date_from"),
        ({"include": "variables,secrets"}, "include"),
        ({"ordering": "score"}, "ordering"),
        ({"page_size": "0"}, "page_size"),
        ({"export": "csv"}, "export"),
    ],
)
def test_bad_log_list_parameters_are_400s_naming_them(api: Api, params: dict[str, str], field: str) -> None:
    problem = assert_problem(api.get("/v1/execution-logs/", **params), 400, "invalid")
    assert problem["detail"].startswith(f"{field}: ")


def test_a_forged_log_cursor_is_a_404_problem(api: Api) -> None:
    forged = [
        "bm90LWpzb24",  # base64 of "not-json"
        pagination.encode({"d": "next", "i": 1, "t": "x"}),
        pagination.encode({"d": "next", "i": stable_id("log", "x"), "t": "2026-01-01T00:00:00"}),  # no zone
        pagination.encode({"d": "sideways", "i": stable_id("log", "x"), "t": "2026-01-01T00:00:00+00:00"}),
    ]
    for cursor in forged:
        assert_problem(api.get("/v1/execution-logs/", cursor=cursor), 404, "not_found")


def test_an_evaluator_set_batch_writes_a_parent_and_a_child_per_evaluator(api: Api, clock: FakeClock) -> None:
    chosen = [SUPPORT.evaluators[2], QA.evaluators[1]]  # Politeness, Token F1
    body = {
        "evaluator_ids": [spec.id for spec in chosen],
        "inputs": [{"response": "Paris, thanks!", "expected_output": "Paris"}] * 2,
    }
    batch_id = api.post("/v1/batch-executions/", body).json()["batch_execution_id"]
    clock.advance(10)
    rows = all_logs(api, batch_execution_id=batch_id)
    parents = [row for row in rows if row["parent_execution_log_id"] is None]
    assert len(rows) == 2 * 3 and len(parents) == 2
    assert {row["id"] for row in parents} == {
        item["execution_log_id"] for item in api.batch(batch_id)["items"]
    }
    assert {row["execution_type"] for row in rows} == {"evaluator"}
    assert {row["executed_item_id"] for row in parents} == {None}
    for parent in parents:
        children = [row for row in rows if row["parent_execution_log_id"] == parent["id"]]
        assert sorted(c["executed_item_name"] for c in children) == ["Politeness", "Token F1"]
        assert parent["cost"] == pytest.approx(sum(c["cost"] for c in children), abs=1e-9)


def test_stats_count_one_log_list_call_per_read(api: Api, clock: FakeClock) -> None:
    batch = support_batch(api, clock, [f"Reply {n}." for n in range(100)])
    rows = all_logs(api, batch_execution_id=batch["batch_execution_id"], page_size=500)
    assert len(rows) == 500
    stats = api.get("/_offline/stats/").json()
    assert stats["process"]["requests"]["GET execution-logs-list"] == 1
    assert stats["database"]["execution_logs"] == 500
    assert stats["database"]["evaluator_logs"] == 400


def test_evaluators_list_holds_every_evaluator_with_its_inputs(api: Api) -> None:
    rows = []
    page = api.get("/v1/evaluators/", page_size=4).json()
    while True:
        rows += page["results"]
        if not page["next"]:
            break
        page = api.client.get(page["next"], headers=api.headers()).json()
    assert [row["id"] for row in rows] == list(EVALUATORS_BY_ID)
    exact = next(row for row in rows if row["name"] == "Exact match")
    assert sorted(exact["inputs"]) == ["expected_output", "response"]
    assert exact["models"] == ["offline-lexical-1"]
    names = [row["name"] for row in api.get("/v1/evaluators/", search="CONTEXT").json()["results"]]
    assert names == ["Context support", "Context use"]
    assert [row["name"] for row in api.get("/v1/evaluators/", name="Politeness").json()["results"]] == [
        "Politeness"
    ]
    assert api.get("/v1/evaluators/", is_root_evaluator="false").json()["results"] == []
    assert_problem(api.get("/v1/evaluators/", evaluator_type="magic"), 400, "invalid")


def test_evaluator_detail_and_its_404s(api: Api) -> None:
    spec = RAG.evaluators[0]
    data = api.get(f"/v1/evaluators/{spec.id}/").json()
    assert (data["id"], data["name"], data["version_id"]) == (spec.id, spec.name, spec.version_id)
    assert sorted(data["inputs"]) == ["contexts", "response"]
    assert api.get(f"/v1/evaluators/{spec.id}/", version_id=spec.version_id).status_code == 200
    assert_problem(api.get(f"/v1/evaluators/{spec.id}/", version_id=stable_id("v", "old")), 404, "not_found")
    assert_problem(api.get(f"/v1/evaluators/{RAG.id}/"), 404, "not_found")
    assert_problem(api.get("/v1/evaluators/nope/"), 404, "not_found")
