"""The served OpenAPI document says what the API answers: every operation of the contract, errors as
problem documents, the bearer scheme with its 401 and 429; unknown paths answer a 404 problem; the
docs page needs nothing from another host."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import Any
from urllib.parse import unquote

import pytest
import schemathesis
from django.test import Client

from dashboard.api.schema import OPERATIONS, SECURITY_SCHEME
from evals.models import ShareLink
from tests.factories import build_run

pytestmark = pytest.mark.django_db

# The contract's operations (issues 12, 13 and 14), written out rather than read from OPERATIONS, so
# dropping a line from the table (or an endpoint from a router) fails here.
CONTRACT = {
    "GET /judges/",
    "GET /datasets/",
    "POST /datasets/",
    "GET /datasets/{}/",
    "DELETE /datasets/{}/",
    "GET /runs/",
    "POST /runs/",
    "GET /runs/{}/",
    "DELETE /runs/{}/",
    "GET /runs/{}/status/",
    "POST /runs/{}/cancel/",
    "GET /runs/{}/retry/",
    "POST /runs/{}/retry/",
    "GET /runs/{}/items/",
    "GET /runs/{}/export.csv",
    "GET /runs/{}/export.jsonl",
    "GET /compare/",
    "GET /runs/{}/share-links/",
    "POST /runs/{}/share-links/",
    "DELETE /runs/{}/share-links/{}/",
    # Issue 13: human review and calibration.
    "GET /runs/{}/reviews/",
    "POST /runs/{}/reviews/",
    "GET /runs/{}/calibration/",
    "GET /runs/{}/reviews/export.csv",
    "GET /runs/{}/reviews/export.jsonl",
    # Issue 14: spending caps.
    "POST /runs/{}/budget/",
}


@pytest.fixture
def document() -> dict[str, Any]:
    response = Client().get("/api/v1/openapi.json")
    assert response.status_code == 200
    return response.json()


def operations(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each operation of the document, keyed "METHOD /path/{}/" (under /api/v1, parameters unnamed)."""
    found = {}
    for path, methods in document["paths"].items():
        assert path.startswith("/api/v1/"), path
        key = re.sub(r"\{[^}]*\}", "{}", path.removeprefix("/api/v1"))
        for method, operation in methods.items():
            found[f"{method.upper()} {key}"] = operation
    return found


def test_the_schema_is_a_valid_openapi_3_document(document: dict[str, Any]) -> None:
    assert document["openapi"].startswith("3.")
    schemathesis.openapi.from_dict(document).validate()


def test_every_operation_of_the_contract_is_in_the_schema_and_nothing_else(document: dict[str, Any]) -> None:
    assert set(operations(document)) == CONTRACT
    assert {f"{method.upper()} {path}" for method, path in OPERATIONS} == CONTRACT


def test_operations_have_unique_snake_case_ids_summaries_and_a_tag(document: dict[str, Any]) -> None:
    found = operations(document)
    ids = [operation["operationId"] for operation in found.values()]
    assert len(ids) == len(set(ids))
    for key, operation in found.items():
        assert re.fullmatch(r"[a-z]+(_[a-z]+)*", operation["operationId"]), key
        summary = operation["summary"]
        # A sentence a person wrote ("List runs"), not ninja's title-cased function name ("Run List").
        assert summary[0].isupper() and not summary.istitle() and len(summary.split()) >= 2, (key, summary)
        assert len(operation["tags"]) == 1, key


def test_every_error_answer_is_a_problem_document(document: dict[str, Any]) -> None:
    problem = {"$ref": "#/components/schemas/ProblemOut"}
    assert set(document["components"]["schemas"]["ProblemOut"]["required"]) >= {"title", "status", "detail"}
    for key, operation in operations(document).items():
        for status, response in operation["responses"].items():
            if int(status) >= 400:
                assert response["content"] == {"application/problem+json": {"schema": problem}}, (key, status)
                assert response["description"], (key, status)


def test_every_operation_takes_a_bearer_token_and_documents_401_and_429(document: dict[str, Any]) -> None:
    scheme = document["components"]["securitySchemes"][SECURITY_SCHEME]
    assert scheme["type"] == "http" and scheme["scheme"] == "bearer"
    assert "Authorization: Bearer" in scheme["description"]
    for key, operation in operations(document).items():
        assert operation["security"] == [{SECURITY_SCHEME: []}], key
        responses = operation["responses"]
        assert {"401", "429"} <= set(responses), key
        assert responses["429"]["headers"]["Retry-After"]["schema"]["type"] == "integer", key
        if key.split()[0] != "GET":
            assert "403" in responses, key


def test_operations_with_inputs_document_422_and_those_with_ids_404(document: dict[str, Any]) -> None:
    for key, operation in operations(document).items():
        if operation.get("parameters") or operation.get("requestBody"):
            assert "422" in operation["responses"], key
        if "{}" in key:
            assert "404" in operation["responses"], key


def test_the_schema_names_no_server_so_it_is_right_on_any_host(document: dict[str, Any]) -> None:
    assert all(server["url"].startswith("/") for server in document.get("servers", []))


def test_the_schema_documents_what_the_api_really_answers_for_a_missing_token(
    document: dict[str, Any],
) -> None:
    response = Client().get("/api/v1/runs/")
    documented = operations(document)["GET /runs/"]["responses"][str(response.status_code)]
    assert response["Content-Type"] in documented["content"]


# --- Unknown paths ------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["get", "post", "delete"])
@pytest.mark.parametrize(
    "path",
    ["/api/v1/nope/", "/api/v1/runs/abc/", "/api/v1/runs/1/nothing-here/", "/api/v1/", "/api/v1/runs/a%0Ab/"],
)
def test_an_unknown_api_path_is_a_404_problem_not_an_html_page(method: str, path: str) -> None:
    response = getattr(Client(), method)(path)
    assert response.status_code == 404
    assert response["Content-Type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == 404 and body["title"] == "Not Found"
    assert unquote(path) in body["detail"] or "openapi.json" in body["detail"]


def test_a_path_missing_its_final_slash_is_told_the_right_one() -> None:
    response = Client().get("/api/v1/runs")
    assert response.status_code == 404
    assert "/api/v1/runs/" in response.json()["detail"]
    assert "slash" not in Client().get("/api/v1/nope").json()["detail"]


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [("delete", "/api/v1/judges/", "GET"), ("get", "/api/v1/runs/1/cancel/", "POST")],
)
def test_a_method_a_path_does_not_take_is_a_405_problem_naming_the_ones_it_does(
    api: Client, method: str, path: str, allowed: str
) -> None:
    response = getattr(api, method)(path)
    assert response.status_code == 405
    assert response["Content-Type"] == "application/problem+json"
    assert response["Allow"] == allowed
    assert f"it takes {allowed}" in response.json()["detail"]


@pytest.mark.parametrize("body", ["[null, null]", "[1]", '"x"', "5", "null"])
def test_a_json_body_that_is_not_an_object_is_a_400_problem(api: Client, body: str) -> None:
    # ninja read these as {} when every field is optional: each made a share link.
    run = build_run({"Politeness": [0.5, 0.6]})
    response = api.post(f"/api/v1/runs/{run.pk}/share-links/", body, content_type="application/json")
    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    assert not ShareLink.objects.exists()
    assert (
        api.post(f"/api/v1/runs/{run.pk}/share-links/", "{}", content_type="application/json").status_code
        == 201
    )


# --- The docs page ------------------------------------------------------------------------------------


class Assets(HTMLParser):
    """Every URL the page makes the browser fetch: script src, link href, img src."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if value and (name == "src" or (tag == "link" and name == "href")):
                self.urls.append(value)


def test_the_docs_page_uses_only_docket_s_own_static_files() -> None:
    response = Client().get("/api/v1/docs")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    assets = Assets()
    assets.feed(response.content.decode())
    assert any(url.endswith("swagger-ui-bundle.js") for url in assets.urls)
    for url in assets.urls:
        assert url.startswith("/static/"), url
        assert Client().get(url).status_code == 200, url
    assert "cdn" not in response.content.decode().lower()
