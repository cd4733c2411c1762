"""The OpenAPI document at /api/v1/openapi.json, made to say exactly what the API answers.

django-ninja documents what it can see: each operation's declared responses, as `application/json`.
What Docket adds around the endpoints is invisible to it, so `install` post-processes its document:

- errors are RFC 9457 problem documents, served as `application/problem+json` (core.problem_response);
- ApiAuth is not one of ninja's auth classes, so the bearer scheme and each operation's `security`
  are written here, with the 401 and 429 (and its Retry-After header) every authenticated call may get;
- ninja's validation (a 422) answers any operation that takes input, Http404 any that takes an id,
  and ApiAuth's scope check a 403 on any write: documented on each, so a client (and schemathesis)
  can rely on the list of statuses;
- operation ids and summaries come from one table of the contract (`OPERATIONS`), so the docs read
  "List runs" and generated clients call `run_list`, whatever a view function is named.

`install` also makes the API answer as documented where ninja would not: every unknown path under
/api/v1/ gets a 404 problem document instead of Django's HTML page (a client with a typo reads a
sentence it can act on), a wrong method gets a 405 problem (ninja answers plain "Method not
allowed" labelled text/html), and a JSON body that is not an object is refused (ninja reads `[1]` or
`null` as `{}` when every field of the body is optional, so a mistyped request created a share link).
"""

from __future__ import annotations

import functools
import inspect
import re
from http import HTTPStatus
from typing import Any, NamedTuple

from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.urls import Resolver404, URLPattern, URLResolver, register_converter, resolve
from ninja import NinjaAPI, Router
from ninja.openapi.schema import OpenAPISchema
from ninja.parser import Parser

from dashboard.api.core import PAGE_DEFAULT, PAGE_MAX, PROBLEM_TYPE, Problem, ProblemOut, problem_response

SECURITY_SCHEME = "bearerToken"
WRITE_METHODS = ("post", "put", "patch", "delete")
ANY_METHOD = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "TRACE"]


class Operation(NamedTuple):
    """What the contract calls an operation: its generated-client name, its one-line summary, its group."""

    operation_id: str
    summary: str
    tag: str


# The operations of issue 12's contract, keyed by method and path under /api/v1 with `{}` for any path
# parameter (so a view may call it `id` or `run_id`). tests/api/test_schema.py checks the served
# document holds exactly these, so a new endpoint comes with its line here.
OPERATIONS: dict[tuple[str, str], Operation] = {
    ("get", "/judges/"): Operation("judge_list", "List judges", "Judges and datasets"),
    ("get", "/datasets/"): Operation("dataset_list", "List datasets", "Judges and datasets"),
    ("post", "/datasets/"): Operation("dataset_create", "Upload a dataset", "Judges and datasets"),
    ("get", "/datasets/{}/"): Operation("dataset_get", "Get a dataset", "Judges and datasets"),
    ("delete", "/datasets/{}/"): Operation("dataset_delete", "Delete a dataset", "Judges and datasets"),
    ("get", "/runs/"): Operation("run_list", "List runs", "Runs"),
    ("post", "/runs/"): Operation("run_create", "Start a run", "Runs"),
    ("get", "/runs/{}/"): Operation("run_get", "Get a run with its statistics", "Runs"),
    ("delete", "/runs/{}/"): Operation("run_delete", "Delete a run and its retries", "Runs"),
    ("get", "/runs/{}/status/"): Operation("run_status", "Poll a run's progress", "Runs"),
    ("post", "/runs/{}/cancel/"): Operation("run_cancel", "Cancel a run", "Runs"),
    ("get", "/runs/{}/retry/"): Operation("run_retry_plan", "Show what a retry would send", "Runs"),
    ("post", "/runs/{}/retry/"): Operation("run_retry", "Retry a run's failed items", "Runs"),
    ("get", "/runs/{}/items/"): Operation("run_items", "List a run's items and scores", "Runs"),
    ("get", "/runs/{}/export.csv"): Operation("run_export_csv", "Export a run as CSV", "Runs"),
    ("get", "/runs/{}/export.jsonl"): Operation("run_export_jsonl", "Export a run as JSON lines", "Runs"),
    ("get", "/compare/"): Operation("runs_compare", "Compare two runs", "Compare and share"),
    ("get", "/runs/{}/share-links/"): Operation(
        "share_link_list", "List a run's share links", "Compare and share"
    ),
    ("post", "/runs/{}/share-links/"): Operation(
        "share_link_create", "Create a share link", "Compare and share"
    ),
    ("delete", "/runs/{}/share-links/{}/"): Operation(
        "share_link_revoke", "Revoke a share link", "Compare and share"
    ),
    # Issue 13: human review and calibration.
    ("get", "/runs/{}/reviews/"): Operation("review_list", "List a run's reviews", "Review and calibration"),
    ("post", "/runs/{}/reviews/"): Operation(
        "review_save", "Review an item's score", "Review and calibration"
    ),
    ("get", "/runs/{}/calibration/"): Operation(
        "run_calibration", "Get the judge's agreement with its reviewers", "Review and calibration"
    ),
    ("get", "/runs/{}/reviews/export.csv"): Operation(
        "calibration_set_csv", "Export the reviewed items as CSV", "Review and calibration"
    ),
    ("get", "/runs/{}/reviews/export.jsonl"): Operation(
        "calibration_set_jsonl", "Export the reviewed items as JSON lines", "Review and calibration"
    ),
    # Issue 14: spending caps.
    ("post", "/runs/{}/budget/"): Operation("run_budget", "Raise or remove a run's spending cap", "Runs"),
}

# Why each problem status happens, for the docs; ninja would only say "Unauthorized".
PROBLEM_DESCRIPTIONS = {
    400: "The body cannot be read as the content type it names (e.g. JSON that does not parse).",
    401: "No usable token: missing, unknown, revoked or expired (see WWW-Authenticate).",
    403: "The token may only read (or a browser session tried to write).",
    404: "Nothing with this id, or an unknown path.",
    409: "The object's state does not allow this now; `detail` says why.",
    413: "The upload is larger than this server accepts.",
    422: "The request does not validate; `errors` names each field, row or column to fix.",
    429: "Over the token's requests per minute; wait Retry-After seconds.",
}

RETRY_AFTER = {
    "description": "Seconds until the token's allowance is renewed.",
    "schema": {"type": "integer", "minimum": 1},
}
WWW_AUTHENTICATE = {
    "description": 'How to authenticate: `Bearer realm="docket"`.',
    "schema": {"type": "string"},
}


def install(api: NinjaAPI) -> None:
    """Post-process `api`'s OpenAPI document; problem documents for unknown paths and wrong methods.

    Call after every router is added and before `api.urls` is read: the catch-all routes must come
    after the real ones, and the URL patterns are built once.
    """
    api.add_router("/", _fallback_router())
    api.parser = JsonObjectParser()
    patterns = api._get_urls

    def get_urls() -> list[URLPattern | URLResolver]:
        return [_problem_for_wrong_method(pattern) for pattern in patterns()]

    api._get_urls = get_urls  # type: ignore[method-assign]
    generate = api.get_openapi_schema

    def get_openapi_schema(
        *, path_prefix: str | None = None, path_params: dict[str, Any] | None = None
    ) -> OpenAPISchema:
        document = generate(path_prefix=path_prefix, path_params=path_params)
        refine(document, authenticated=_authenticated_operation_ids(api))
        return document

    api.get_openapi_schema = get_openapi_schema  # type: ignore[method-assign]


# --- The document -------------------------------------------------------------------------------------


def refine(document: dict[str, Any], *, authenticated: set[str]) -> None:
    """Rewrite ninja's document in place; `authenticated` holds the operation ids ApiAuth guards."""
    components = document.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    _add_problem_schema(schemas)
    components["securitySchemes"] = {
        SECURITY_SCHEME: {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "dkt_…",
            "description": (
                "A personal API token, made on Docket's API tokens page and shown once: "
                "`Authorization: Bearer dkt_…`. A read token may only GET; a write token may change "
                "things. A browser session that is logged in to Docket may also GET."
            ),
        }
    }
    for path, methods in document.get("paths", {}).items():
        for method, operation in methods.items():
            protected = operation["operationId"] in authenticated
            _refine_operation(path, method, operation, protected=protected)
    # Relative: the document is right on whichever host and scheme serves it.
    document["servers"] = [
        server for server in document.get("servers", []) if str(server.get("url", "")).startswith("/")
    ]


def _refine_operation(path: str, method: str, operation: dict[str, Any], *, protected: bool) -> None:
    known = OPERATIONS.get((method, _contract_key(path)))
    if known is not None:
        operation["operationId"] = known.operation_id
        operation["summary"] = known.summary
        operation["tags"] = [known.tag]
    for parameter in operation.get("parameters", []):
        _describe_page_parameter(parameter)
    # ninja keys responses by int; JSON (and every other key here) by str.
    responses = {str(status): response for status, response in operation.get("responses", {}).items()}
    statuses: list[int] = []
    if protected:
        operation["security"] = [{SECURITY_SCHEME: []}]
        statuses += [401, 429]
        if method in WRITE_METHODS:
            statuses.append(403)
    if operation.get("requestBody"):
        statuses.append(400)  # ninja: "Cannot parse request body"
    if operation.get("parameters") or operation.get("requestBody"):
        statuses.append(422)
    if "{" in path:
        statuses.append(404)
    for added in statuses:
        responses.setdefault(str(added), {"description": ""})
    for status, response in responses.items():
        if status.isdigit() and int(status) >= 400:
            _as_problem(int(status), response)
    operation["responses"] = dict(sorted(responses.items()))


def _as_problem(status: int, response: dict[str, Any]) -> None:
    if response.get("description") in ("", HTTPStatus(status).phrase, "Unknown Status Code"):
        response["description"] = PROBLEM_DESCRIPTIONS.get(status, HTTPStatus(status).phrase)
    content: dict[str, dict[str, Any]] = response.get("content") or {}
    schema = next(iter(content.values()), {}).get("schema") or {"$ref": "#/components/schemas/ProblemOut"}
    response["content"] = {PROBLEM_TYPE: {"schema": schema}}
    if status == 429:
        response.setdefault("headers", {})["Retry-After"] = RETRY_AFTER
    if status == 401:
        response.setdefault("headers", {})["WWW-Authenticate"] = WWW_AUTHENTICATE


def _describe_page_parameter(parameter: dict[str, Any]) -> None:
    """`limit` and `cursor` are checked by core.keyset_page, out of ninja's sight: say what it takes."""
    if parameter.get("in") != "query":
        return
    if parameter.get("name") == "limit":
        parameter.setdefault("description", f"Rows per page, 1 to {PAGE_MAX} (default {PAGE_DEFAULT}).")
        for branch in [parameter["schema"], *parameter["schema"].get("anyOf", [])]:
            if branch.get("type") == "integer":
                branch.setdefault("minimum", 1)
                branch.setdefault("maximum", PAGE_MAX)
    elif parameter.get("name") == "cursor":
        parameter.setdefault(
            "description", "The `next_cursor` of the page before; without it, the first page."
        )


def _add_problem_schema(schemas: dict[str, Any]) -> None:
    """ProblemOut (and ProblemError) as components, in case no endpoint declared one."""
    schema = ProblemOut.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, definition in schema.pop("$defs", {}).items():
        schemas.setdefault(name, definition)
    schemas.setdefault("ProblemOut", schema)


def _contract_key(path: str) -> str:
    """`/api/v1/runs/{run_id}/` -> `/runs/{}/`: the part after the API's root, parameters unnamed."""
    tail = re.sub(r"^.*?/api/v1(?=/)", "", path)
    return re.sub(r"\{[^}]*\}", "{}", tail)


def _authenticated_operation_ids(api: NinjaAPI) -> set[str]:
    """The ids (as ninja's document names them) of operations that run an auth callback.

    ninja binds each router's operations to the API's auth when the URLs are built; its own schema
    generator walks the same bound routers.
    """
    found = set()
    for bound_router in api._get_bound_routers():
        for path_view in bound_router.path_operations.values():
            for operation in path_view.operations:
                if operation.auth_callbacks:
                    found.add(operation.operation_id or api.get_openapi_operation_id(operation))
    return found


# --- Answers ninja would give otherwise --------------------------------------------------------------


class JsonObjectParser(Parser):
    """Every JSON body of the API is an object (the schema says so); refuse anything else.

    ninja turns the error into a 400 problem, "Cannot parse request body". An endpoint taking a JSON
    array as its whole body would need this relaxed; none does.
    """

    def parse_body(self, request: HttpRequest) -> dict[str, Any]:
        data = super().parse_body(request)
        if not isinstance(data, dict):
            raise ValueError("The request body must be a JSON object.")
        return data


def _problem_for_wrong_method(pattern: URLPattern | URLResolver) -> URLPattern | URLResolver:
    """ninja answers a method a path does not take before any exception handler runs: rewrite it."""
    if not isinstance(pattern, URLPattern) or inspect.iscoroutinefunction(pattern.callback):
        return pattern
    view = pattern.callback

    @functools.wraps(view)  # keeps csrf_exempt, which ninja sets on every view
    def view_with_problem(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        response = view(request, *args, **kwargs)
        if response.status_code != 405 or response.get("Content-Type", "").startswith(PROBLEM_TYPE):
            return response
        allowed = response.get("Allow", "")
        detail = f"{request.method} is not allowed at {request.path}; it takes {allowed}."
        return problem_response(Problem(405, detail, headers={"Allow": allowed}))

    pattern.callback = view_with_problem
    return pattern


# --- Unknown paths ------------------------------------------------------------------------------------


class AnyPathConverter:
    """Like Django's `path` converter, but also across newlines: `.+` stops at a %0A in the path,
    which then matched nothing here and got Django's HTML 404 page."""

    regex = r"[\s\S]+"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(AnyPathConverter, "anypath")


def _fallback_router() -> Router:
    """Routes that match what no endpoint does, answering 404 problem documents, without a token."""
    router = Router()

    @router.api_operation(ANY_METHOD, "/", auth=None, include_in_schema=False, url_name="api-index")
    def api_index(request: HttpRequest) -> HttpResponse:
        return problem_response(
            Problem(
                404,
                f"The API's operations are listed at {request.path}openapi.json and described at "
                f"{request.path}docs.",
            )
        )

    @router.api_operation(
        ANY_METHOD, "/{anypath:rest}", auth=None, include_in_schema=False, url_name="api-unknown"
    )
    def api_unknown(request: HttpRequest, rest: str) -> HttpResponse:
        detail = f"No API endpoint at {request.path}."
        if _is_endpoint(request.path + "/"):
            detail += f" Paths end with a slash: {request.path}/"
        return problem_response(Problem(404, detail))

    return router


def _is_endpoint(path: str) -> bool:
    try:
        match = resolve(path)
    except Resolver404:
        return False
    return match.url_name not in ("api-unknown", "api-index")
