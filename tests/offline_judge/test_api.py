"""Auth, routing, pagination, filters and the stats endpoint."""

from __future__ import annotations

from typing import Any

from django.test import Client
from pytest_django.fixtures import Settings

from offline_judge.catalogue import PROJECT_ID, stable_id
from tests.offline_judge.harness import JUDGES, QA, RAG, SUPPORT, Api, FakeClock, assert_problem, qa_input


def test_a_request_without_a_key_is_401_not_authenticated(api: Api) -> None:
    api.key = ""
    body = assert_problem(api.get("/v1/judges/"), 401, "not_authenticated")
    assert body == {
        "type": "about:blank",
        "title": "Not authenticated.",
        "status": 401,
        "detail": "Authentication credentials were not provided.",
        "instance": None,
        "code": "not_authenticated",
    }


def test_a_wrong_key_or_scheme_is_401_authentication_failed(api: Api, client: Client) -> None:
    api.key = "wrong"
    body = assert_problem(api.get("/v1/judges/"), 401, "authentication_failed")
    assert body["title"] == "Incorrect authentication credentials."
    response = client.get("/judge-api/v1/judges/", headers={"Authorization": f"Bearer {Api(client).key}"})
    assert (
        assert_problem(response, 401, "authentication_failed")["title"]
        == "Incorrect authentication credentials."
    )


def test_the_key_is_read_from_settings_on_every_request(api: Api, judge_settings: Settings) -> None:
    assert api.get("/v1/judges/").status_code == 200
    judge_settings.OFFLINE_JUDGE_API_KEY = "rotated"
    assert api.get("/v1/judges/").status_code == 401
    api.key = "rotated"
    assert api.get("/v1/judges/").status_code == 200


def test_a_wrong_method_is_405_with_allow(api: Api) -> None:
    response = api.client.delete("/judge-api/v1/judges/", headers=api.headers())
    assert_problem(response, 405, "method_not_allowed")
    assert response["Allow"] == "GET, HEAD"


def test_unknown_paths_are_json_404s_never_html_or_redirects(api: Api) -> None:
    assert_problem(api.get("/v1/nothing-here/"), 404, "not_found")
    body = assert_problem(api.get("/v1/judges"), 404, "not_found")
    assert "did you mean /judge-api/v1/judges/ ?" in body["detail"]
    body = assert_problem(api.post("/v1/batch-executions", {}), 404, "not_found")


def test_a_malformed_id_is_404_not_a_crash(api: Api) -> None:
    assert_problem(api.get("/v1/judges/not-a-uuid/"), 404, "not_found")
    assert_problem(api.get("/v1/judges/batch-executions/not-a-uuid/"), 404, "not_found")
    assert_problem(api.get("/v1/execution-logs/not-a-uuid/"), 404, "not_found")


def test_judge_ids_are_stable_uuid5_values() -> None:
    assert RAG.id == stable_id("judge", "rag-answer-quality") == "ff3dbb6e-8080-5ffd-a63e-0d9654985e7b"
    assert len({judge.id for judge in JUDGES} | {judge.version_id for judge in JUDGES}) == 6


def test_judges_declare_their_required_inputs(api: Api) -> None:
    inputs = {row["name"]: sorted(row["inputs"]) for row in api.get("/v1/judges/").json()["results"]}
    assert inputs == {
        RAG.name: ["contexts", "request", "response"],
        SUPPORT.name: ["response"],
        QA.name: ["expected_output", "response"],
    }
    assert api.get(f"/v1/judges/{RAG.id}/").json()["inputs"]["contexts"] == {
        "type": "array",
        "items": {"type": "string"},
    }


def test_judge_list_pages_forward_and_back_with_full_urls(api: Api) -> None:
    first = api.get("/v1/judges/", page_size=2, ordering="name", include_public="true").json()
    assert first["previous"] is None
    assert first["next"].startswith("http://testserver/judge-api/v1/judges/?")
    assert "ordering=name" in first["next"]
    second = api.client.get(first["next"], headers=api.headers()).json()
    assert [j["name"] for j in first["results"] + second["results"]] == [j.name for j in JUDGES]
    assert second["next"] is None
    back = api.client.get(second["previous"], headers=api.headers()).json()
    assert back["results"] == first["results"]


def test_a_whole_next_url_passed_as_cursor_is_understood(api: Api) -> None:
    first = api.get("/v1/judges/", page_size=1).json()
    second = api.get("/v1/judges/", page_size=1, cursor=first["next"]).json()
    assert second["results"][0]["name"] == JUDGES[1].name


def test_next_urls_use_the_host_that_served_the_request(api: Api, client: Client) -> None:
    response = client.get(
        "/judge-api/v1/judges/", {"page_size": 1}, headers={**api.headers(), "Host": "localhost:8100"}
    )
    assert response.json()["next"].startswith("http://localhost:8100/judge-api/v1/judges/?")


def test_a_bad_cursor_or_page_size_is_a_problem_not_a_crash(api: Api) -> None:
    assert (
        assert_problem(api.get("/v1/judges/", cursor="%%%"), 404, "not_found")["detail"] == "Invalid cursor."
    )
    assert_problem(api.get("/v1/judges/batch-executions/", cursor="eyJ4IjoxfQ"), 404, "not_found")
    assert_problem(api.get("/v1/judges/batch-executions/", cursor="http://x/?page_size=1"), 404, "not_found")
    assert_problem(api.get("/v1/judges/", page_size="ten"), 400, "invalid")
    assert_problem(api.get("/v1/judges/", page_size="0"), 400, "invalid")


def test_judge_search_matches_name_or_intent_case_insensitively(api: Api) -> None:
    def names(term: str) -> list[str]:
        return [row["name"] for row in api.get("/v1/judges/", search=term).json()["results"]]

    assert names("rag") == [RAG.name]
    assert names("PERSONAL DATA") == [SUPPORT.name]
    assert names("nothing like this") == []


def create_batches(api: Api, clock: FakeClock, count: int) -> list[str]:
    ids = []
    for index in range(count):
        ids.append(api.create(QA if index % 2 else SUPPORT, [qa_input()], tags=[f"b{index}"]))
        clock.advance(60)
    return ids


def all_pages(api: Api, **params: Any) -> list[str]:
    seen = []
    page = api.get("/v1/judges/batch-executions/", **params).json()
    while True:
        seen += [row["batch_execution_id"] for row in page["results"]]
        if not page["next"]:
            return seen
        page = api.client.get(page["next"], headers=api.headers()).json()


def test_batch_list_is_newest_first_and_pages_survive_new_batches(api: Api, clock: FakeClock) -> None:
    ids = create_batches(api, clock, 7)
    first = api.get("/v1/judges/batch-executions/", page_size=3).json()
    assert [row["batch_execution_id"] for row in first["results"]] == ids[::-1][:3]
    api.create(QA, [qa_input()])  # a newer batch must not shift the next page
    second = api.client.get(first["next"], headers=api.headers()).json()
    assert [row["batch_execution_id"] for row in second["results"]] == ids[::-1][3:6]
    back = api.client.get(second["previous"], headers=api.headers()).json()
    assert back["results"] == first["results"]
    assert all_pages(api, page_size=3)[1:] == ids[::-1]


def test_batch_list_page_size_defaults_to_20_and_caps_at_100(api: Api, clock: FakeClock) -> None:
    for _ in range(21):
        api.create(SUPPORT, [{"response": "Hi."}])
    assert len(api.get("/v1/judges/batch-executions/").json()["results"]) == 20
    assert len(api.get("/v1/judges/batch-executions/", page_size=1000).json()["results"]) == 21


def test_batch_list_filters_by_judge_and_creation_dates_inclusive(api: Api, clock: FakeClock) -> None:
    ids = create_batches(api, clock, 4)  # created at +0, +60, +120, +180 seconds
    detail = api.batch(ids[1])
    assert set(all_pages(api, judge_id=QA.id)) == {ids[1], ids[3]}
    between = all_pages(api, date_from=detail["created_at"], date_to=api.batch(ids[2])["created_at"])
    assert between == [ids[2], ids[1]]
    assert all_pages(api, date_from=api.batch(ids[3])["created_at"], project_id=PROJECT_ID) == [ids[3]]
    # Batches created without a project belong to the judge's; another project has none of them.
    assert all_pages(api, project_id=stable_id("project", "elsewhere")) == []
    assert_problem(api.get("/v1/judges/batch-executions/", date_from="yesterday"), 400, "invalid")
    assert_problem(api.get("/v1/judges/batch-executions/", status="done"), 400, "invalid")
    assert_problem(api.get("/v1/judges/batch-executions/", judge_id="rag"), 400, "invalid")


def test_stats_count_requests_by_route_and_batches_by_tag(api: Api, clock: FakeClock) -> None:
    api.create(QA, [qa_input()], tags=["docket:run-1:0"])
    api.create(QA, [qa_input()], tags=["docket:run-1:1", "nightly"])
    api.create(QA, [qa_input()], tags=["nightly"])
    api.get("/v1/judges/")
    api.key = "wrong"
    api.get("/v1/judges/")
    api.key = Api(api.client).key
    stats = api.get("/_offline/stats/").json()
    assert stats["process"]["requests"] == {
        "POST judge-batch-execute": 3,
        "GET judges-list": 2,
        "GET offline-stats": 1,
    }
    assert stats["process"]["responses"] == {"202": 3, "200": 1, "401": 1}
    assert stats["database"]["batches"] == 3
    assert stats["database"]["batches_by_tag"] == {"docket:run-1:0": 1, "docket:run-1:1": 1, "nightly": 2}
    only_run = api.get("/_offline/stats/", tag_prefix="docket:run-1:").json()["database"]["batches_by_tag"]
    assert only_run == {"docket:run-1:0": 1, "docket:run-1:1": 1}
    assert stats["faults"]["values"]["lanes"] == 4
    assert len(stats["database"]["lanes_free_at"]) == 4


def test_stats_need_the_key(api: Api) -> None:
    api.key = ""
    assert_problem(api.get("/_offline/stats/"), 401, "not_authenticated")
