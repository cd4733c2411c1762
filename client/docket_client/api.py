"""Docket's HTTP API as the CLI uses it: one httpx.Client, retries within a time budget, problems as errors.

Retries. A CI job should ride out a Docket restart or a short outage, then give up with a clear exit
code rather than hang. Each request is retried with exponential backoff (0.5 s doubling to 8 s) for at
most `retry_seconds` in all (DOCKET_RETRY_SECONDS, default 60), waiting what a 429 or 503 asks for in
Retry-After. A GET is retried on any network error and any 5xx. A POST only when it surely did nothing:
the connection was refused, or the answer was 429 or 503; after a read timeout or a 500 a retried
upload or run could be made twice, so those end at once.

Reference: /api/v1/docs on a Docket server (the OpenAPI schema at /api/v1/openapi.json).
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from docket_client import __version__

DEFAULT_RETRY_SECONDS = 60.0
BACKOFF_FIRST = 0.5
BACKOFF_MAX = 8.0
# A POST that got one of these was not acted on and may succeed later (rate limit, not ready now).
# Not 502: Docket gives it when the judge API refused for good (a wrong key), which waiting won't mend.
POST_RETRY_STATUSES = (429, 503)
TIMEOUT = httpx.Timeout(30.0, connect=10.0)
# The upload is read and checked while the request waits: a large file takes a while.
UPLOAD_TIMEOUT = httpx.Timeout(600.0, connect=10.0)


class ApiProblem(Exception):
    """Docket answered with a problem document (or another non-success answer)."""

    def __init__(self, status: int, detail: str, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.errors = errors or []


class Unreachable(Exception):
    """Docket could not be reached, or kept failing, for the whole retry budget."""


@dataclass
class Clock:
    """Time as the client sees it; tests pass one whose sleep advances a counter instead of waiting."""

    now: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep


@dataclass
class DocketAPI:
    base_url: str
    token: str
    retry_seconds: float = DEFAULT_RETRY_SECONDS
    transport: httpx.BaseTransport | None = None
    clock: Clock = field(default_factory=Clock)

    def __post_init__(self) -> None:
        self.http = httpx.Client(
            base_url=api_root(self.base_url),
            headers={
                "Authorization": f"Bearer {self.token}",
                "Accept": "application/json",
                "User-Agent": f"docket-client/{__version__}",
            },
            timeout=TIMEOUT,
            transport=self.transport,
        )

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> DocketAPI:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- Endpoints ---------------------------------------------------------------------------------

    def judges(self) -> list[dict[str, Any]]:
        return list(self._pages("judges/", {"limit": 200}))

    def dataset_upload(
        self, path: Path, *, name: str = "", mapping: list[str] | None = None
    ) -> dict[str, Any]:
        data: dict[str, Any] = {"map": list(mapping or [])}
        if name:
            data["name"] = name

        def send() -> httpx.Response:
            # Opened for each attempt: a retried multipart body is read from the start again.
            with path.open("rb") as handle:
                return self.http.post(
                    "datasets/", data=data, files={"file": (path.name, handle)}, timeout=UPLOAD_TIMEOUT
                )

        return self._json(self._retried("POST", "datasets/", send))

    def run_create(
        self, *, dataset_id: int, judge: str, name: str = "", tags: list[str] | None = None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"dataset_id": dataset_id, "judge": judge, "tags": list(tags or [])}
        if name:
            body["name"] = name
        return self._json(self._retried("POST", "runs/", lambda: self.http.post("runs/", json=body)))

    def run(self, run_id: int) -> dict[str, Any]:
        return self._get(f"runs/{run_id}/")

    def retry_plan(self, run_id: int) -> dict[str, Any]:
        return self._get(f"runs/{run_id}/retry/")

    def run_status(self, run_id: int) -> dict[str, Any]:
        return self._get(f"runs/{run_id}/status/")

    def runs(self, **filters: Any) -> dict[str, Any]:
        return self._get("runs/", {key: value for key, value in filters.items() if value not in (None, "")})

    def compare(self, a: int, b: int) -> dict[str, Any]:
        return self._get("compare/", {"a": a, "b": b})

    @contextmanager
    def export(self, run_id: int, file_format: str) -> Iterator[httpx.Response]:
        """The export streamed; only opening it is retried (a broken stream mid-way is an error)."""
        url = f"runs/{run_id}/export.{file_format}"

        def send() -> httpx.Response:
            request = self.http.build_request("GET", url)
            return self.http.send(request, stream=True)

        response = self._retried("GET", url, send)
        try:
            yield response
        finally:
            response.close()

    # --- Plumbing ----------------------------------------------------------------------------------

    def _get(self, url: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return self._json(self._retried("GET", url, lambda: self.http.get(url, params=params)))

    def _pages(self, url: str, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
        cursor = None
        while True:
            page = self._get(url, {**params, **({"cursor": cursor} if cursor else {})})
            yield from page.get("items", [])
            cursor = page.get("next_cursor")
            if not cursor:
                return

    def _json(self, response: httpx.Response) -> dict[str, Any]:
        try:
            document = response.json()
        except ValueError as error:
            raise Unreachable(
                f"{response.request.method} {response.request.url} answered {response.status_code} "
                "with something that is not JSON; is DOCKET_URL the Docket server?"
            ) from error
        if not isinstance(document, dict):
            raise Unreachable(f"{response.request.url} answered with JSON that is not an object.")
        return document

    def _retried(self, method: str, url: str, send: Callable[[], httpx.Response]) -> httpx.Response:
        """Send until an answer that is not worth retrying, or the budget is spent (Unreachable)."""
        started = self.clock.now()
        delay = BACKOFF_FIRST
        while True:
            failure, wait = self._attempt(method, send)
            if isinstance(failure, httpx.Response) and wait is None:
                return failure
            if isinstance(failure, str) and wait is None:
                raise Unreachable(failure)
            reason = failure if isinstance(failure, str) else _status_reason(failure)
            pause = max(wait or 0.0, delay)
            if self.clock.now() - started + pause > self.retry_seconds:
                raise Unreachable(
                    f"{method} {api_root(self.base_url)}{url} failed for {self.retry_seconds:g} s "
                    f"(DOCKET_RETRY_SECONDS); last: {reason}"
                )
            self.clock.sleep(pause)
            delay = min(delay * 2, BACKOFF_MAX)

    def _attempt(
        self, method: str, send: Callable[[], httpx.Response]
    ) -> tuple[httpx.Response | str, float | None]:
        """(answer, None) to use as is; (answer or reason, seconds) to retry; (reason, None) to give up.

        A problem answer (4xx, or 5xx on a POST) is raised as ApiProblem here.
        """
        try:
            response = send()
        except (httpx.ConnectError, httpx.ConnectTimeout) as error:
            return f"cannot connect ({error})", 0.0
        except httpx.TransportError as error:
            reason = f"{type(error).__name__} ({error})"
            return reason, (0.0 if method == "GET" else None)
        status = response.status_code
        if status < 400:
            return response, None
        retryable = status in POST_RETRY_STATUSES if method != "GET" else status in (429,) or status >= 500
        if retryable:
            response.read()
            response.close()
            return response, retry_after(response.headers.get("Retry-After"), now=datetime.now(UTC)) or 0.0
        response.read()
        raise problem_of(response)


def api_root(base_url: str) -> str:
    """DOCKET_URL is the server's address; tolerate a trailing slash or the API path given as well."""
    root = base_url.strip().rstrip("/")
    if root.endswith("/api/v1"):
        root = root[: -len("/api/v1")]
    return root + "/api/v1/"


def retry_after(value: str | None, *, now: datetime) -> float | None:
    """Seconds a Retry-After header asks for: a number of seconds or an HTTP date (RFC 9110 10.2.3)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - now).total_seconds(), 0.0)


def problem_of(response: httpx.Response) -> ApiProblem:
    """The problem document of a failed answer; a plain one made up when the body is not one."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        detail = str(body.get("detail") or body.get("title") or response.reason_phrase)
        found = body.get("errors")
        return ApiProblem(response.status_code, detail, found if isinstance(found, list) else None)
    return ApiProblem(response.status_code, response.reason_phrase or f"HTTP {response.status_code}")


def _status_reason(response: httpx.Response) -> str:
    problem = problem_of(response)
    return f"{problem.status} {problem.detail}"
