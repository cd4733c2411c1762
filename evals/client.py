"""The judge API client: Scorable's Batch Execution API, or the offline judge that speaks it.

One class around one httpx.Client. One method per endpoint, replies parsed into small typed records,
every failure turned into a JudgeError that says whether trying again can help. The client loops
and sleeps only when given a Patience (the commands a person or CI watches); otherwise the pump decides
when to try again. The API key lives in settings only; it is never logged, rendered or passed to a task.

One unit over 450 lines: the client of one API, one method per endpoint, with the reply records and
parsers those methods return; the parsers check each field against the contract below.

Reference: ../shared/docs/scorable-api.md (the contract, field by field).
"""

from __future__ import annotations

import json
import logging
import random
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, NamedTuple, TypeVar
from urllib.parse import parse_qs, urlsplit

import httpx
from django.conf import settings
from django.utils import timezone

logger = logging.getLogger("evals.judge_api")

USER_AGENT = f"Docket/0.1 httpx/{httpx.__version__}"

# Tests swap in an in-process transport (httpx.WSGITransport over Docket itself).
default_transport: httpx.BaseTransport | None = None

# How long a command (run_eval, compare_runs) waits out a throttling or failing judge API, in all.
RETRY_BUDGET_SECONDS = 120.0
# Back-off without a Retry-After: 1, 2, 4... seconds, at most 30, each with jitter.
BACKOFF_BASE_SECONDS = 1.0
BACKOFF_CAP_SECONDS = 30.0
# A Retry-After of 0 must not turn into a tight loop of requests.
BACKOFF_FLOOR_SECONDS = 0.25
# How much of a body that is not JSON (an HTML error page of a proxy, say) goes into a message.
BODY_EXCERPT = 200

T = TypeVar("T")

# How Patience sleeps unless given a sleep of its own; tests swap it and read the waits instead.
patience_sleep: Callable[[float], None] = time.sleep


def judge_api_root(url: str) -> str:
    """The base URL without a trailing slash or `/v1`: every path Docket sends starts with /v1/.

    Scorable's own CLI wants SCORABLE_API_URL with /v1; both spellings name the same API here.
    dashboard/settings.py applies the same rule to JUDGE_API_URL, the form judges store.
    """
    return re.sub(r"(?i)(/v1)?/*$", "", url.strip())


class JudgeError(Exception):
    """A judge API call that did not give a usable answer.

    permanent: trying the same request again cannot help (400, 401, 403, 404...).
    retry_after: seconds the server asked us to wait (429/503 with Retry-After), if it said.
    outcome_unknown: the request may have been carried out although no answer came back (a timeout,
        a dropped connection, a 5xx); a create must be looked up before it is sent again.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str = "",
        permanent: bool = False,
        retry_after: float | None = None,
        outcome_unknown: bool = False,
        reason: str = "",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.permanent = permanent
        self.retry_after = retry_after
        self.outcome_unknown = outcome_unknown
        # What happened, in one word: the HTTP status, or "timeout", "connect", "dropped", "unreadable".
        self.reason = reason or (str(status) if status else "unreadable")

    @property
    def throttled(self) -> bool:
        return self.status == 429


def backoff_delay(
    attempt: int, *, retry_after: float | None = None, rand: Callable[[], float] = random.random
) -> float:
    """Seconds to wait before attempt `attempt + 1`: the server's Retry-After when it sent one, else
    exponential back-off with jitter (between half and all of base x 2^(attempt-1)), capped."""
    if retry_after is not None:
        return max(retry_after, BACKOFF_FLOOR_SECONDS)
    ceiling = min(BACKOFF_BASE_SECONDS * 2 ** max(attempt - 1, 0), BACKOFF_CAP_SECONDS)
    return max(ceiling * (0.5 + rand() / 2), BACKOFF_FLOOR_SECONDS)


def waiting_for(error: JudgeError) -> str:
    """What a passing failure is, in a few words a person waiting on a command can read."""
    if error.status == 429:
        return f"judge API {'quota exceeded' if 'quota' in error.code else 'throttled'} (429)"
    if error.status is not None:
        return f"judge API failed ({error.status})"
    return {
        "timeout": "judge API did not answer in time",
        "connect": "could not connect to the judge API",
        "dropped": "the connection to the judge API broke",
    }.get(error.reason, "judge API reply could not be read")


class Patience:
    """Waits out passing judge API failures (429, 5xx, timeouts, lost connections) for a command.

    One per command: the budget counts the time of every failed attempt and every wait of every call
    made with it, so a command gives up after `budget` seconds of trouble in all (time spent on calls
    that work, or waiting for a run, does not count). A permanent error, or one whose request may have
    been carried out (outcome_unknown: a create must be looked up, not sent again), is raised at once.
    """

    def __init__(
        self,
        *,
        say: Callable[[str], None],
        budget: float | None = None,
        sleep: Callable[[float], None] | None = None,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.say = say
        # Read when made, not at import, so tests can shrink the module constant.
        self.budget = RETRY_BUDGET_SECONDS if budget is None else budget
        self.sleep = sleep if sleep is not None else patience_sleep
        self.rand = rand
        self.waits: list[float] = []
        # Seconds of trouble so far: failed attempts plus waits. Counting the waits asked for rather
        # than the clock lets a test's sleep that returns at once still use up the budget.
        self.spent = 0.0

    def call(self, request: Callable[[], T]) -> T:
        attempt = 0
        while True:
            attempt += 1
            started = time.monotonic()
            try:
                return request()
            except JudgeError as error:
                if not _passing(error):
                    raise
                self.spent += time.monotonic() - started
                left = self.budget - self.spent
                delay = backoff_delay(attempt, retry_after=error.retry_after, rand=self.rand)
                # Waiting past the budget only to fail then helps no one; nor does asking before Retry-After.
                if left <= 0 or (error.retry_after is not None and delay > left):
                    self.say(f"{waiting_for(error)}; giving up after {_seconds(self.spent)} s")
                    raise
                delay = min(delay, left)
                self.say(f"{waiting_for(error)}; trying again in {_seconds(delay)} s")
                logger.info("judge_api waiting %.2f s after %s", delay, error.reason)
                self.waits.append(delay)
                self.spent += delay
                self.sleep(delay)


def _passing(error: JudgeError) -> bool:
    """A throttle, a server failure, a timeout or a lost connection, whose request was not carried out.

    A reply that could not be read is not a passing state of the server (asking again gets the same
    reply), and a request that may have been carried out (a create) must be looked up, not sent again.
    """
    if error.permanent or error.outcome_unknown:
        return False
    if error.status is not None:
        return error.status in (408, 429) or error.status >= 500
    return error.reason in ("timeout", "connect", "dropped")


def _seconds(value: float) -> str:
    return f"{value:.0f}" if value >= 10 else f"{value:.1f}".removesuffix(".0")


@dataclass(frozen=True, slots=True)
class EvaluatorInfo:
    id: str
    name: str
    model: str
    intent: str
    version_id: str


@dataclass(frozen=True, slots=True)
class JudgeInfo:
    id: str
    name: str
    intent: str
    evaluators: tuple[EvaluatorInfo, ...]
    inputs: dict[str, Any]
    created_at: datetime | None
    # Only the detail endpoint has it.
    version_id: str | None = None


@dataclass(frozen=True, slots=True)
class EvaluatorResult:
    evaluator_name: str
    score: float | None
    justification: str
    evaluator_id: str = ""
    confidence: float | None = None


@dataclass(frozen=True, slots=True)
class ExecutionResult:
    evaluator_results: tuple[EvaluatorResult, ...]
    execution_log_id: str | None


@dataclass(frozen=True, slots=True)
class BatchCreated:
    id: str
    status_url: str


@dataclass(frozen=True, slots=True)
class BatchItem:
    index: int
    status: str
    evaluator_results: tuple[EvaluatorResult, ...] | None
    error_message: str
    execution_log_id: str | None
    started_at: datetime | None
    completed_at: datetime | None


@dataclass(frozen=True, slots=True)
class Batch:
    id: str
    status: str
    total_count: int
    completed_count: int
    failed_count: int
    created_at: datetime | None
    started_at: datetime | None
    completed_at: datetime | None
    tags: tuple[str, ...]
    judge_id: str | None
    items: tuple[BatchItem, ...] = ()

    FINISHED = ("completed", "partial", "failed")

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED


@dataclass(frozen=True, slots=True)
class ExecutionLog:
    id: str
    score: float | None
    cost: float | None
    model: str
    model_call_duration: float | None
    evaluator_latencies: tuple[tuple[str, float | None], ...]
    # evaluator name -> threshold, where the log gives one
    thresholds: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "score": self.score,
            "cost": self.cost,
            "model": self.model,
            "model_call_duration": self.model_call_duration,
            "evaluator_latencies": [list(pair) for pair in self.evaluator_latencies],
            "thresholds": self.thresholds,
        }


@dataclass(frozen=True, slots=True)
class ExecutionLogRow:
    """A row of the execution log list: what a batch's logs say about cost, per item and evaluator."""

    id: str
    parent_execution_log_id: str | None
    execution_type: str
    executed_item_id: str | None
    executed_item_name: str
    score: float | None
    cost: float | None
    project_id: str | None
    user_id: str
    session_id: str
    tags: tuple[str, ...]


class LogCost(NamedTuple):
    """What a batch's costs need of an execution log row, parsed as ExecutionLogRow parses it.

    A batch lists a log per item and one per evaluator and item (500 for 100 items and 4 evaluators):
    reading only these fields into a tuple takes a sixth of the CPU of ExecutionLogRow's parse.
    """

    id: str
    parent_execution_log_id: str | None
    executed_item_name: str
    cost: float | None


class JudgeAPI:
    """A client for one judge API (base URL + key)."""

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
        patience: Patience | None = None,
    ) -> None:
        self.base_url = judge_api_root(base_url)
        self.patience = patience
        self._http = httpx.Client(
            base_url=self.base_url,
            headers={
                "Authorization": f"Api-Key {api_key}",
                "User-Agent": USER_AGENT,
                "Accept": "application/json",
            },
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            transport=transport,
            # Polling runs concurrently from a thread pool over this one client.
            limits=httpx.Limits(max_connections=32, max_keepalive_connections=16),
        )

    @classmethod
    def from_settings(cls, *, timeout: float | None = None, patience: Patience | None = None) -> JudgeAPI:
        return cls(
            base_url=settings.JUDGE_API_URL,
            api_key=settings.JUDGE_API_KEY,
            timeout=timeout if timeout is not None else settings.JUDGE_API_TIMEOUT,
            transport=default_transport,
            patience=patience,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> JudgeAPI:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- Judges -----------------------------------------------------------------------------------

    def list_judges(self, *, search: str | None = None, page_size: int = 100) -> Iterator[JudgeInfo]:
        # Reference: scorable-api.md §3, GET /v1/judges/ (cursor pagination, §2)
        params: dict[str, Any] = {"page_size": page_size}
        if search:
            params["search"] = search
        for row in self._paginate("/v1/judges/", params):
            yield parse_judge(row)

    def get_judge(self, judge_id: str) -> JudgeInfo:
        # Reference: scorable-api.md §3, GET /v1/judges/{id}/
        return parse_judge(self._request("GET", f"/v1/judges/{judge_id}/"))

    def execute(
        self, judge_id: str, *, inputs: dict[str, Any], judge_version_id: str | None = None
    ) -> ExecutionResult:
        # Reference: scorable-api.md §3, POST /v1/judges/{judge_id}/execute/
        body = dict(inputs)
        if judge_version_id:
            body["judge_version_id"] = judge_version_id
        data = self._request("POST", f"/v1/judges/{judge_id}/execute/", json=body)
        results = parse_evaluator_results(_field(data, "evaluator_results", list))
        return ExecutionResult(evaluator_results=results or (), execution_log_id=data.get("execution_log_id"))

    # --- Batch executions -------------------------------------------------------------------------

    def create_batch(
        self,
        judge_id: str | None,
        *,
        inputs: list[dict[str, Any]],
        tags: list[str],
        judge_version_id: str | None = None,
        evaluator_ids: Sequence[str] | None = None,
        project_id: str | None = None,
        attempt: int = 1,
    ) -> BatchCreated:
        """Send a batch to a judge, or to an ad-hoc set of evaluators (`evaluator_ids`, no judge)."""
        # Reference: scorable-api.md §4.2, POST /v1/batch-executions/ (the typed route of SDK 1.15)
        if bool(judge_id) == bool(evaluator_ids):
            # The API takes one of the two; a mix-up here is Docket's bug, never the judge's refusal.
            raise ValueError("create_batch needs either judge_id or evaluator_ids, not both")
        body: dict[str, Any] = {"inputs": inputs, "tags": tags}
        if evaluator_ids:
            body["evaluator_ids"] = list(evaluator_ids)
        else:
            body["judge_id"] = judge_id
            # A version of the judge means nothing to a batch of evaluators without it.
            if judge_version_id:
                body["judge_version_id"] = judge_version_id
        if project_id:
            body["project_id"] = project_id
        data = self._request("POST", "/v1/batch-executions/", json=body, attempt=attempt)
        return BatchCreated(
            id=_field(data, "batch_execution_id", str), status_url=str(data.get("status_url") or "")
        )

    def get_batch(self, batch_id: str, *, attempt: int = 1) -> Batch:
        # Reference: scorable-api.md §4.5, GET /v1/judges/batch-executions/{id}/
        return parse_batch(self._request("GET", f"/v1/judges/batch-executions/{batch_id}/", attempt=attempt))

    def list_batches(
        self,
        *,
        judge_id: str | None = None,
        status: str | None = None,
        date_from: datetime | None = None,
        date_to: datetime | None = None,
        project_id: str | None = None,
        page_size: int = 100,
    ) -> Iterator[Batch]:
        # Reference: scorable-api.md §4.4, GET /v1/judges/batch-executions/
        params: dict[str, Any] = {"page_size": page_size}
        if judge_id:
            params["judge_id"] = judge_id
        if project_id:
            params["project_id"] = project_id
        if status:
            params["status"] = status
        if date_from:
            params["date_from"] = date_from.isoformat()
        if date_to:
            params["date_to"] = date_to.isoformat()
        for row in self._paginate("/v1/judges/batch-executions/", params):
            yield parse_batch(row)

    def find_batch_by_tag(
        self, *, judge_id: str | None, tag: str, since: datetime, project_id: str | None = None
    ) -> Batch | None:
        """The batch created with `tag` since `since`, if the judge API has one.

        Used before re-sending a create whose outcome is unknown, so no batch is ever created twice.
        `judge_id` None: the batch ran a set of evaluators, and has no judge to filter by (the tag,
        unique to one run and batch, is what finds it).
        """
        for batch in self.list_batches(judge_id=judge_id, date_from=since, project_id=project_id):
            if tag in batch.tags:
                return batch
        return None

    # --- Execution logs ---------------------------------------------------------------------------

    def get_execution_log(self, log_id: str) -> ExecutionLog:
        # Reference: scorable-api.md §5, GET /v1/execution-logs/{log_id}/
        return parse_execution_log(self._request("GET", f"/v1/execution-logs/{log_id}/"))

    def list_execution_logs(
        self, *, batch_execution_id: str | None = None, page_size: int = 100, **filters: Any
    ) -> Iterator[ExecutionLogRow]:
        """Execution logs in bulk: with `batch_execution_id`, every log of that batch, the judge-level
        log of each item and its evaluators' child logs. Other filters by their S1 names (`project_id`,
        `execution_type`, `tags`...): None is left out, a list is sent comma-separated."""
        # Reference: scorable-api.md §5, GET /v1/execution-logs/ (cursor pagination, §2)
        params: dict[str, Any] = {"page_size": page_size}
        if batch_execution_id:
            params["batch_execution_id"] = batch_execution_id
        for name, value in filters.items():
            if value is None:
                continue
            if isinstance(value, bool):
                value = "true" if value else "false"
            elif isinstance(value, datetime):
                value = value.isoformat()
            elif isinstance(value, list | tuple):
                value = ",".join(str(part) for part in value)
            params[name] = value
        for row in self._paginate("/v1/execution-logs/", params):
            yield parse_execution_log_row(row)

    def list_execution_log_costs(
        self, *, batch_execution_id: str, page_size: int = 100, project_id: str | None = None
    ) -> Iterator[LogCost]:
        """Every log of a batch, as `list_execution_logs(batch_execution_id=...)` lists them, read
        only for what they cost."""
        # Reference: scorable-api.md §5, GET /v1/execution-logs/ (cursor pagination, §2)
        params: dict[str, Any] = {"page_size": page_size, "batch_execution_id": batch_execution_id}
        if project_id is not None:
            params["project_id"] = project_id
        for row in self._paginate("/v1/execution-logs/", params):
            yield parse_log_cost(row)

    # --- Plumbing ---------------------------------------------------------------------------------

    def _paginate(self, path: str, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
        params = dict(params)
        while True:
            page = self._request("GET", path, params=params)
            for row in _field(page, "results", list):
                if not isinstance(row, dict):
                    raise _malformed(path, "a row of 'results' is not an object")
                yield row
            cursor = _cursor_from(page.get("next"))
            if not cursor:
                return
            # `next` is a full URL; take only its cursor, so the key is never sent to another host.
            params["cursor"] = cursor

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        attempt: int = 1,
    ) -> dict[str, Any]:
        if self.patience is None:
            return self._send(method, path, params=params, json=json, attempt=attempt)
        return self.patience.call(lambda: self._send(method, path, params=params, json=json, attempt=attempt))

    def _send(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        attempt: int = 1,
    ) -> dict[str, Any]:
        started = time.monotonic()
        status: int | str = "-"
        try:
            response = self._http.request(method, path, params=params, json=json)
            status = response.status_code
        except httpx.TimeoutException as exc:
            status = "timeout"
            # A connect timeout never reached the server; any other timeout may have been carried out.
            unknown = not isinstance(exc, httpx.ConnectTimeout)
            raise JudgeError(
                f"The judge API did not answer within {self._http.timeout.read:g} s ({type(exc).__name__}).",
                outcome_unknown=unknown and method != "GET",
                reason="timeout",
            ) from exc
        except httpx.ConnectError as exc:
            status = "connect-error"
            raise JudgeError(
                f"Could not connect to the judge API at {self.base_url}: {exc}.", reason="connect"
            ) from exc
        except httpx.TransportError as exc:
            status = "dropped"
            raise JudgeError(
                f"The connection to the judge API broke before an answer came ({type(exc).__name__}).",
                outcome_unknown=method != "GET",
                reason="dropped",
            ) from exc
        finally:
            logger.info(
                "judge_api method=%s path=%s status=%s latency_ms=%d attempt=%d",
                method,
                path,
                status,
                (time.monotonic() - started) * 1000,
                attempt,
            )
        return self._parse(method, path, response)

    def _parse(self, method: str, path: str, response: httpx.Response) -> dict[str, Any]:
        status = response.status_code
        if 200 <= status < 300:
            try:
                data = response.json()
            except ValueError as exc:
                raise JudgeError(
                    f"The judge API answered {method} {path} with a reply that is not JSON.",
                    status=status,
                    outcome_unknown=method != "GET",
                ) from exc
            if not isinstance(data, dict):
                raise _malformed(path, "the reply is not a JSON object")
            return data
        message, code = _problem_message(response)
        retry_after = _retry_after(response.headers.get("Retry-After"))
        if status == 429:
            raise JudgeError(
                f"The judge API is throttling requests ({status}): {message}",
                status=status,
                code=code or "throttled",
                retry_after=retry_after,
            )
        if status >= 500 or status == 408:
            raise JudgeError(
                f"The judge API failed ({status}): {message}",
                status=status,
                code=code,
                retry_after=retry_after,
                outcome_unknown=method != "GET",
            )
        if status in (401, 403):
            raise JudgeError(
                f"The judge API refused Docket's key ({status}): {message} Check SCORABLE_API_KEY.",
                status=status,
                code=code,
                permanent=True,
            )
        raise JudgeError(
            f"The judge API rejected {method} {path} ({status}): {message}",
            status=status,
            code=code,
            permanent=True,
        )


def _malformed(path: str, what: str) -> JudgeError:
    return JudgeError(f"The judge API's reply to {path} could not be read: {what}.")


def _problem_message(response: httpx.Response) -> tuple[str, str]:
    """The human part of an error reply and its code: the problem's title and detail, else an excerpt.

    A body that is not JSON is often a proxy's HTML error page: only its text, at most BODY_EXCERPT
    characters of it, goes into a message that may end up in a run's error line.
    """
    try:
        body = response.json()
    except ValueError:
        return _excerpt(response.text) or response.reason_phrase or "no details given", ""
    if isinstance(body, dict):
        title, detail = str(body.get("title") or "").strip(), str(body.get("detail") or "").strip()
        if title and detail and not detail.startswith(title.rstrip(".")):
            text = f"{title.rstrip('.')}: {detail}"
        else:
            text = detail or title
        if not text:
            # DRF-style field errors: {"field": ["message"]}
            text = "; ".join(
                f"{key}: {' '.join(map(str, value)) if isinstance(value, list) else value}"
                for key, value in body.items()
            )
        return text[:1000], str(body.get("code") or "")
    return json.dumps(body)[:BODY_EXCERPT], ""


def _excerpt(text: str) -> str:
    """At most BODY_EXCERPT characters of a body's text, without markup or runs of whitespace."""
    if "<" in text and ">" in text:
        text = re.sub(r"(?is)<(script|style)\b.*?</\1>", " ", text)
        text = re.sub(r"<[^>]*>", " ", text)
    text = " ".join(text.split())
    return text if len(text) <= BODY_EXCERPT else text[: BODY_EXCERPT - 1] + "…"


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max((when - timezone.now()).total_seconds(), 0.0)


def _cursor_from(next_url: Any) -> str | None:
    if not next_url or not isinstance(next_url, str):
        return None
    values = parse_qs(urlsplit(next_url).query).get("cursor")
    return values[0] if values else None


def _field(data: dict[str, Any], name: str, kind: type) -> Any:
    value = data.get(name)
    if not isinstance(value, kind):
        raise JudgeError(f"The judge API's reply lacks a valid '{name}' ({kind.__name__} expected).")
    return value


def _datetime(value: Any) -> datetime | None:
    if not value or not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def parse_judge(data: dict[str, Any]) -> JudgeInfo:
    evaluators = []
    for row in data.get("evaluators") or []:
        if not isinstance(row, dict):
            continue
        objective = row.get("objective")
        if not isinstance(objective, dict):
            objective = {}
        evaluators.append(
            EvaluatorInfo(
                id=str(row.get("id") or ""),
                name=str(row.get("name") or ""),
                model=str(row.get("model") or ""),
                intent=str(objective.get("intent") or ""),
                version_id=str(row.get("version_id") or ""),
            )
        )
    inputs = data.get("inputs")
    return JudgeInfo(
        id=_field(data, "id", str),
        name=str(data.get("name") or ""),
        intent=str(data.get("intent") or ""),
        evaluators=tuple(evaluators),
        inputs=inputs if isinstance(inputs, dict) else {},
        created_at=_datetime(data.get("created_at")),
        version_id=data.get("version_id") if isinstance(data.get("version_id"), str) else None,
    )


def parse_evaluator_results(value: Any) -> tuple[EvaluatorResult, ...] | None:
    """Batch items carry an untyped list: need only name, score and justification; tolerate the rest."""
    if value is None:
        return None
    if not isinstance(value, list):
        raise JudgeError("The judge API sent evaluator_results that are not a list.")
    results = []
    for row in value:
        if not isinstance(row, dict):
            continue
        results.append(
            EvaluatorResult(
                evaluator_name=str(row.get("evaluator_name") or row.get("name") or "evaluator"),
                score=_number(row.get("score")),
                justification=str(row.get("justification") or ""),
                evaluator_id=str(row.get("evaluator_id") or ""),
                confidence=_number(row.get("confidence")),
            )
        )
    return tuple(results)


def parse_batch(data: dict[str, Any]) -> Batch:
    items = []
    for row in data.get("items") or []:
        if not isinstance(row, dict) or not isinstance(row.get("index"), int):
            raise JudgeError("The judge API sent a batch item without an index.")
        items.append(
            BatchItem(
                index=row["index"],
                status=str(row.get("status") or "pending"),
                evaluator_results=parse_evaluator_results(row.get("evaluator_results")),
                error_message=str(row.get("error_message") or ""),
                execution_log_id=row.get("execution_log_id") or None,
                started_at=_datetime(row.get("started_at")),
                completed_at=_datetime(row.get("completed_at")),
            )
        )
    judge = data.get("judge")
    if not isinstance(judge, dict):
        judge = {}
    tags = data.get("tags")
    return Batch(
        id=_field(data, "batch_execution_id", str),
        status=_field(data, "status", str),
        total_count=int(data.get("total_count") or 0),
        completed_count=int(data.get("completed_count") or 0),
        failed_count=int(data.get("failed_count") or 0),
        created_at=_datetime(data.get("created_at")),
        started_at=_datetime(data.get("started_at")),
        completed_at=_datetime(data.get("completed_at")),
        tags=tuple(str(tag) for tag in tags) if isinstance(tags, list) else (),
        judge_id=str(judge["id"]) if judge.get("id") else None,
        items=tuple(items),
    )


def parse_execution_log(data: dict[str, Any]) -> ExecutionLog:
    latencies = tuple(
        (str(row.get("evaluator_name") or ""), _number(row.get("duration")))
        for row in data.get("evaluator_latencies") or []
        if isinstance(row, dict)
    )
    thresholds = {
        str(row.get("evaluator_name")): float(row["threshold"])
        for row in data.get("evaluator_results") or []
        if isinstance(row, dict) and _number(row.get("threshold")) is not None
    }
    return ExecutionLog(
        id=_field(data, "id", str),
        score=_number(data.get("score")),
        cost=_number(data.get("cost")),
        model=str(data.get("model") or ""),
        model_call_duration=_number(data.get("model_call_duration")),
        evaluator_latencies=latencies,
        thresholds=thresholds,
    )


def _text_or_none(value: Any) -> str | None:
    return str(value) if value else None


def parse_execution_log_row(data: dict[str, Any]) -> ExecutionLogRow:
    tags = data.get("tags")
    return ExecutionLogRow(
        id=_field(data, "id", str),
        parent_execution_log_id=_text_or_none(data.get("parent_execution_log_id")),
        execution_type=str(data.get("execution_type") or ""),
        executed_item_id=_text_or_none(data.get("executed_item_id")),
        executed_item_name=str(data.get("executed_item_name") or ""),
        score=_number(data.get("score")),
        cost=_number(data.get("cost")),
        project_id=_text_or_none(data.get("project_id")),
        user_id=str(data.get("user_id") or ""),
        session_id=str(data.get("session_id") or ""),
        tags=tuple(str(tag) for tag in tags) if isinstance(tags, list) else (),
    )


def parse_log_cost(data: dict[str, Any]) -> LogCost:
    return LogCost(
        _field(data, "id", str),
        _text_or_none(data.get("parent_execution_log_id")),
        str(data.get("executed_item_name") or ""),
        _number(data.get("cost")),
    )
