"""What every endpoint of Docket's API shares: who is asking, errors as problem documents, cursor pages.

Authentication: `Authorization: Bearer dkt_...` (a personal token, evals.services.tokens), or the
browser's session for GET and HEAD. A read token cannot write. A token over DOCKET_API_RATE_PER_MINUTE
gets 429 with Retry-After.

Errors are RFC 9457 problem documents (`application/problem+json`): `type`, `title`, `status`,
`detail`, and for a 422 `errors: [{line, column, field, message}]` naming what to fix. An endpoint
raises `Problem(status, detail)`; Http404, ninja's validation errors and authentication failures are
turned into the same shape here, so no client mistake reaches Django's 500 page.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from http import HTTPStatus
from typing import Annotated, Any, TypeVar

from django.conf import settings
from django.core.cache import cache
from django.db.models import Model, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.utils.http import content_disposition_header
from ninja import Schema
from ninja.errors import AuthenticationError, HttpError, ValidationError
from pydantic import AfterValidator, Field

from dashboard.http import ROW_NUMBER_MAX, row_number
from evals.models import ApiToken, Run
from evals.services.tokens import api_token_authenticate

logger = logging.getLogger("dashboard.api")

PROBLEM_TYPE = "application/problem+json"
READ_METHODS = ("GET", "HEAD", "OPTIONS")
PAGE_DEFAULT = 50
PAGE_MAX = 200

RowT = TypeVar("RowT", bound=Model)
RowId = Annotated[int, Field(ge=1, le=ROW_NUMBER_MAX)]
Limit = Annotated[
    int, Field(ge=1, le=PAGE_MAX, description=f"Rows per page, 1-{PAGE_MAX} (default {PAGE_DEFAULT}).")
]


def _storable(value: str) -> str:
    # PostgreSQL text holds neither NUL nor a lone surrogate (JSON's "\ud800"): a 500 if they reach it.
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text (no lone surrogates)") from None
    return value


# Text a client sends that Docket stores: refused with a 422 naming the field when no database can hold it.
Text = Annotated[str, AfterValidator(_storable)]


def storable(field: str, value: str) -> None:
    """The same check for a form field (ninja's Form parameters cannot carry a validator)."""
    try:
        _storable(value)
    except ValueError as exc:
        raise Problem.invalid(field, str(exc), detail=f"{field}: {exc}") from None


# --- Errors -------------------------------------------------------------------------------------------


class ProblemError(Schema):
    """One thing to fix: a row's line and column (uploads), or a request field."""

    line: int | None = None
    column: str | None = None
    field: str | None = None
    message: str


class ProblemOut(Schema):
    type: str = "about:blank"
    title: str
    status: int
    detail: str
    errors: list[ProblemError] | None = None


class Problem(Exception):
    """An answer other than success, with a sentence for the user; `errors` for a 422 that lists them."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.errors = errors
        self.headers = headers or {}

    @classmethod
    def invalid(cls, field: str, message: str, *, detail: str | None = None) -> Problem:
        """A 422 naming the one request field to fix; `detail` when the sentence says more than `message`."""
        return cls(422, message if detail is None else detail, errors=[{"field": field, "message": message}])


def problem_response(problem: Problem) -> HttpResponse:
    import json

    body: dict[str, Any] = {
        "type": "about:blank",
        "title": HTTPStatus(problem.status).phrase,
        "status": problem.status,
        "detail": problem.detail,
    }
    if problem.errors is not None:
        body["errors"] = problem.errors
    response = HttpResponse(
        json.dumps(body, ensure_ascii=False), status=problem.status, content_type=PROBLEM_TYPE
    )
    for name, value in problem.headers.items():
        response[name] = value
    return response


def errors(*codes: int) -> dict[int, type[ProblemOut]]:
    """The problem answers an operation documents, besides the ones every operation may give."""
    return dict.fromkeys((401, 429, *codes), ProblemOut)


def _field_name(location: Any) -> str:
    """`dataset_id` for ("body", "payload", "dataset_id"), `file` for ("file", "file"): the field, not its source."""
    parts = [str(part) for part in location]
    if parts and parts[0] in ("body", "query", "path", "form", "file", "header", "cookie"):
        parts = parts[1:]
    if parts and parts[0] == "payload":
        parts = parts[1:]
    return ".".join(parts) or "request"


def install_error_handlers(api: Any) -> None:
    def on_problem(request: HttpRequest, exc: Problem) -> HttpResponse:
        return problem_response(exc)

    def on_validation(request: HttpRequest, exc: ValidationError) -> HttpResponse:
        found = [
            {"field": _field_name(error.get("loc", ())), "message": str(error.get("msg", "is not valid"))}
            for error in exc.errors
        ]
        detail = (
            "; ".join(f"{error['field']}: {error['message']}" for error in found[:5]) or "Invalid request."
        )
        return problem_response(Problem(422, detail, errors=found))

    def on_authentication(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
        return problem_response(
            Problem(
                401,
                "Send a valid API token as `Authorization: Bearer <token>` (tokens are made on the API "
                "tokens page); this one is missing, unknown, revoked or expired.",
                headers={"WWW-Authenticate": 'Bearer realm="docket"'},
            )
        )

    def on_http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
        return problem_response(Problem(exc.status_code, str(exc) or HTTPStatus(exc.status_code).phrase))

    def on_not_found(request: HttpRequest, exc: Http404) -> HttpResponse:
        return problem_response(Problem(404, str(exc) or "Not found."))

    def on_anything(request: HttpRequest, exc: Exception) -> HttpResponse:
        logger.exception("API request failed: %s %s", request.method, request.path)
        return problem_response(
            Problem(500, "Docket failed to answer this request; the server log says why.")
        )

    api.add_exception_handler(Problem, on_problem)
    api.add_exception_handler(ValidationError, on_validation)
    api.add_exception_handler(AuthenticationError, on_authentication)
    api.add_exception_handler(HttpError, on_http_error)
    api.add_exception_handler(Http404, on_not_found)
    api.add_exception_handler(Exception, on_anything)


# --- Who is asking ------------------------------------------------------------------------------------


class ApiAuth:
    """A bearer token (any method its scope allows), else the browser session (reads only).

    Sets `request.user` to the token's user and `request.auth` to the token (or the user).
    """

    openapi_type = "http"
    openapi_scheme = "bearer"

    def __call__(self, request: HttpRequest) -> Any:
        header = request.headers.get("Authorization", "")
        if header:
            scheme, _, secret = header.partition(" ")
            if scheme.lower() != "bearer":
                return None
            token = api_token_authenticate(secret.strip())
            if token is None:
                return None
            if request.method not in READ_METHODS and not token.can_write:
                raise Problem(403, f'Token "{token.name}" may only read; make a token with the write scope.')
            _check_rate(token)
            request.user = token.user
            return token
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            if request.method not in READ_METHODS:
                raise Problem(
                    403,
                    "The browser session may only read through the API; send a write token to change things.",
                )
            return user
        return None


def _check_rate(token: ApiToken) -> None:
    limit = settings.DOCKET_API_RATE_PER_MINUTE
    if limit <= 0:
        return
    now = time.time()
    window = int(now // 60)
    key = f"docket:api-rate:{token.token_hash[:32]}:{window}"
    cache.add(key, 0, timeout=120)
    try:
        count = cache.incr(key)
    except ValueError:  # expired between add and incr: this request opens the window
        cache.set(key, 1, timeout=120)
        count = 1
    if count > limit:
        retry_after = max(int(60 - now % 60) + 1, 1)
        raise Problem(
            429,
            f'Token "{token.name}" made more than {limit} requests this minute; retry after {retry_after} s.',
            headers={"Retry-After": str(retry_after)},
        )


def api_token_of(request: HttpRequest) -> ApiToken | None:
    auth = getattr(request, "auth", None)
    return auth if isinstance(auth, ApiToken) else None


# --- Cursor pages -------------------------------------------------------------------------------------


def page_limit(limit: int | None) -> int:
    if limit is None:
        return PAGE_DEFAULT
    if not 1 <= limit <= PAGE_MAX:
        raise Problem.invalid(
            "limit", f"between 1 and {PAGE_MAX}", detail=f"limit must be between 1 and {PAGE_MAX}."
        )
    return limit


def keyset_page(queryset: Any, *, cursor: str | None, limit: int | None) -> tuple[list[Any], str | None]:
    """Rows newest first (by primary key), `limit` at a time; the cursor is the last row's key."""
    size = page_limit(limit)
    if cursor:
        after = row_number(cursor)
        if after is None:
            raise Problem.invalid(
                "cursor",
                "not a cursor this API gave",
                detail="cursor is not one this API gave; start again without it.",
            )
        queryset = queryset.filter(pk__lt=after)
    rows = list(queryset.order_by("-pk")[: size + 1])
    next_cursor = str(rows[size - 1].pk) if len(rows) > size else None
    return rows[:size], next_cursor


# --- Rows a path names --------------------------------------------------------------------------------


def row_or_404(queryset: QuerySet[RowT], pk: int, noun: str) -> RowT:
    """The row `pk` names, else a 404 problem; a number past BIGINT is no row, not a database error."""
    row = queryset.filter(pk=pk).first() if 0 < pk <= ROW_NUMBER_MAX else None
    if row is None:
        raise Problem(404, f"There is no {noun} {pk}.")
    return row


def run_or_404(run_id: int, *related: str) -> Run:
    return row_or_404(Run.objects.select_related(*related), run_id, "run")


# --- Downloads ----------------------------------------------------------------------------------------


def download(chunks: Iterator[str], *, content_type: str, filename: str) -> StreamingHttpResponse:
    """A streamed file the browser saves as `filename`."""
    response = StreamingHttpResponse(chunks, content_type=content_type)
    response["Content-Disposition"] = content_disposition_header(True, filename)
    return response


def streamed(media_type: str, what: str) -> dict[str, Any]:
    """The `openapi_extra` of a download: ninja documents only JSON answers by itself."""
    return {
        "responses": {200: {"description": what, "content": {media_type: {"schema": {"type": "string"}}}}}
    }


def absolute_url(request: HttpRequest, path: str) -> str:
    return request.build_absolute_uri(path)
