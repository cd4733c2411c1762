"""The offline judge's HTTP API: Scorable's judge and batch endpoints, JSON only.

Every view goes through `endpoint`, which counts the request, injects the configured faults, checks
the Api-Key header, and turns every client mistake into a problem-JSON reply (never an HTML page).
"""

from __future__ import annotations

import hmac
import json
import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, time
from functools import wraps
from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.db import transaction
from django.db.models import Count, Exists, OuterRef, Q, QuerySet
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.dateparse import parse_date, parse_datetime
from django.views.decorators.csrf import csrf_exempt

from offline_judge import clock, faults, pagination, replies, services, stats
from offline_judge.catalogue import EVALUATORS_BY_ID, JUDGES, JUDGES_BY_ID, OWNER, EvaluatorSpec, JudgeSpec
from offline_judge.inputs import MAX_TAG, Checker, Invalid, read_batch_request, read_execute_request
from offline_judge.models import Batch, BatchItem, BatchStatus, BatchTag, ExecutionLog, LogTag, Outcome

logger = logging.getLogger(__name__)

View = Callable[..., HttpResponse]
MAX_BODY_BYTES = 64 * 1024 * 1024
# Scorable's bodies nest four or five levels; anything far deeper is a mistake or an attack.
MAX_JSON_DEPTH = 64


class NotFound(Exception):
    pass


class ParseError(Exception):
    pass


class TooLarge(Exception):
    pass


def _unauthorized(code: str, title: str, detail: str) -> JsonResponse:
    return replies.problem(401, code, title, detail, headers={"WWW-Authenticate": 'Api-Key realm="api"'})


def authenticate(request: HttpRequest) -> JsonResponse | None:
    """None when the request carries `Authorization: Api-Key <the configured key>`, else the 401 reply."""
    header = request.headers.get("Authorization", "")
    if not header.strip():
        return _unauthorized(
            "not_authenticated", "Not authenticated.", "Authentication credentials were not provided."
        )
    scheme, _, key = header.strip().partition(" ")
    title = "Incorrect authentication credentials."
    if scheme.lower() != "api-key":
        return _unauthorized("authentication_failed", title, 'Expected "Authorization: Api-Key <key>".')
    # Read per request, so tests can override the setting.
    expected = str(settings.OFFLINE_JUDGE_API_KEY or "")
    if not expected or not hmac.compare_digest(key.strip().encode(), expected.encode()):
        return _unauthorized("authentication_failed", title, "Invalid API key.")
    return None


def _route(request: HttpRequest) -> str:
    match = request.resolver_match
    return match.url_name if match and match.url_name else "unknown"


def endpoint(*methods: str, inject_faults: bool = True) -> Callable[[View], View]:
    allowed = set(methods) | ({"HEAD"} if "GET" in methods else set())

    def decorate(view: View) -> View:
        @wraps(view)
        def handle(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            stats.record_request(request.method or "", _route(request))
            response = _run(view, allowed, inject_faults, request, *args, **kwargs)
            stats.record_response(response.status_code)
            return response

        return csrf_exempt(login_not_required(handle))

    return decorate


def _run(
    view: View, allowed: set[str], inject_faults: bool, request: HttpRequest, *args: Any, **kwargs: Any
) -> HttpResponse:
    plan = None
    if inject_faults:
        try:
            plan = faults.current_plan()
        except faults.FaultConfigError as error:
            return replies.problem(500, "error", "A server error occurred.", str(error))
        if plan.latency_s:
            stats.record_fault("latency")
            clock.sleep(plan.latency_s)
    refused = authenticate(request)
    if refused is not None:
        return refused
    fate = plan.request_fate() if plan else faults.RequestFate()
    if fate.throttled and plan:
        stats.record_fault("throttle")
        wait = plan.retry_after_s
        detail = f"Request was throttled. Expected available in {wait} second{'s' if wait != 1 else ''}."
        return replies.problem(429, "throttled", "Throttled.", detail, headers={"Retry-After": str(wait)})
    if fate.errored:
        stats.record_fault("error")
        return replies.problem(
            500, "error", "A server error occurred.", "Simulated server error (fault injection)."
        )
    if request.method not in allowed:
        return replies.problem(
            405,
            "method_not_allowed",
            "Method not allowed.",
            f'Method "{request.method}" not allowed.',
            headers={"Allow": ", ".join(sorted(allowed))},
        )
    try:
        response = view(request, *args, **kwargs)
    except Invalid as error:
        response = replies.problem(400, "invalid", "Invalid input.", error.detail)
    except ParseError as error:
        response = replies.problem(400, "parse_error", "Malformed request.", str(error))
    except TooLarge as error:
        response = replies.problem(413, "invalid", "Request entity too large.", str(error))
    except pagination.BadCursor:
        response = replies.problem(404, "not_found", "Not found.", "Invalid cursor.")
    except NotFound as error:
        response = replies.problem(404, "not_found", "Not found.", str(error))
    except Exception:
        logger.exception("offline judge: %s %s failed", request.method, request.path)
        response = replies.problem(
            500, "error", "A server error occurred.", "Unexpected error in the offline judge; see its log."
        )
    if fate.dropped and plan:
        # Carried out, yet the caller learns nothing: it cannot tell whether a create happened.
        stats.record_fault("drop")
        clock.sleep(plan.drop_s)
        return HttpResponse(b"", status=502, content_type="text/plain")
    return response


def _json_body(request: HttpRequest) -> dict[str, Any]:
    # Read the stream ourselves: request.body stops at DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MB) with an HTML
    # 400, while the API accepts expected_output and system_prompt of up to 3.5 million characters each.
    declared = int(request.META.get("CONTENT_LENGTH") or 0)
    if declared > MAX_BODY_BYTES:
        raise TooLarge(
            f"The body has {declared:,} bytes; the offline judge accepts at most {MAX_BODY_BYTES:,}."
        )
    raw = request.read(MAX_BODY_BYTES + 1)
    if len(raw) > MAX_BODY_BYTES:
        raise TooLarge(f"The body is larger than {MAX_BODY_BYTES:,} bytes.")
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as error:
        raise ParseError(f"JSON parse error - {error}") from None
    except RecursionError:
        raise ParseError(f"JSON parse error - nested deeper than {MAX_JSON_DEPTH} levels.") from None
    if not isinstance(body, dict):
        raise Invalid([f"body: must be a JSON object (got {type(body).__name__.replace('list', 'array')})."])
    _check_strings(body)
    return body


def _check_strings(body: dict[str, Any]) -> None:
    """Refuse a body nested deeper than MAX_JSON_DEPTH, or holding a lone surrogate ("\\ud800") in any
    string or key: JSON's escapes allow one, but no database can store it (UnicodeEncodeError, a 500).

    A walk with a stack, not recursion: the body may be as deep as the JSON parser allowed.
    """
    stack: list[tuple[str, Any, int]] = [("body", body, 1)]
    while stack:
        path, value, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise ParseError(f"JSON parse error - nested deeper than {MAX_JSON_DEPTH} levels.")
        if isinstance(value, dict):
            for key, inner in value.items():
                inner_path = key if path == "body" else f"{path}.{key}"
                if not _is_unicode(key):
                    raise Invalid(
                        [
                            f"{path}: a key holds a lone surrogate ({_first_surrogate(key)}), not valid Unicode."
                        ]
                    )
                stack.append((inner_path, inner, depth + 1))
        elif isinstance(value, list):
            stack.extend((f"{path}[{index}]", inner, depth + 1) for index, inner in enumerate(value))
        elif isinstance(value, str) and not _is_unicode(value):
            raise Invalid([f"{path}: holds a lone surrogate ({_first_surrogate(value)}), not valid Unicode."])


def _is_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _first_surrogate(text: str) -> str:
    return next(f"\\u{ord(char):04x}" for char in text if "\ud800" <= char <= "\udfff")


def _uuid_or_none(value: str) -> str | None:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return None


def _judge(judge_id: str) -> JudgeSpec:
    judge = JUDGES_BY_ID.get(_uuid_or_none(judge_id) or "")
    if judge is None:
        raise NotFound(f'No judge with id "{judge_id}".')
    return judge


def _check_version(judge: JudgeSpec, version_id: str | None) -> None:
    if version_id is not None and version_id != judge.version_id:
        raise Invalid(
            [
                f'judge_version_id: unknown version "{version_id}" of judge "{judge.name}" '
                f'(its version is "{judge.version_id}").'
            ]
        )


# Reference: scorable-api.md §3 Judges (GET /v1/judges/)
@endpoint("GET")
def judges_list(request: HttpRequest) -> HttpResponse:
    size = pagination.page_size(request)
    token = pagination.cursor_token(request)
    offset = pagination.decode(token).get("o", 0) if token else 0
    if not isinstance(offset, int) or offset < 0:
        raise pagination.BadCursor(token or "")
    search = request.GET.get("search", "").strip().lower()
    judges = (
        [j for j in JUDGES if search in j.name.lower() or search in j.intent.lower()]
        if search
        else list(JUDGES)
    )
    page = judges[offset : offset + size]
    next_token = pagination.encode({"o": offset + size}) if offset + size < len(judges) else None
    previous_token = pagination.encode({"o": max(offset - size, 0)}) if offset > 0 else None
    return JsonResponse(
        {
            "next": pagination.page_url(request, next_token),
            "previous": pagination.page_url(request, previous_token),
            "results": [replies.judge_row(judge) for judge in page],
        }
    )


# Reference: scorable-api.md §3 Judges (GET /v1/judges/{id}/)
@endpoint("GET")
def judge_detail(request: HttpRequest, judge_id: str) -> HttpResponse:
    return JsonResponse(replies.judge_detail(_judge(judge_id)))


# Reference: scorable-api.md §3 Judges (POST /v1/judges/{judge_id}/execute/, JudgeExecutionResponse)
@endpoint("POST")
def judge_execute(request: HttpRequest, judge_id: str) -> HttpResponse:
    judge = _judge(judge_id)
    execution = read_execute_request(_json_body(request))
    _check_version(judge, execution.judge_version_id)
    runner = services.Runner(judge=judge, evaluators=judge.evaluators)
    missing = runner.missing_message(execution.input)
    if missing:
        raise Invalid([missing])
    scored, log = services.judge_execute(
        runner=runner,
        item=execution.input,
        tags=execution.tags,
        project_id=execution.project_id,
        plan=faults.current_plan(),
    )
    return JsonResponse(
        {"evaluator_results": services.evaluator_results(scored), "execution_log_id": str(log.id)}
    )


def _accepted(batch: Batch) -> JsonResponse:
    return JsonResponse(
        {"batch_execution_id": str(batch.id), "status_url": f"/v1/judges/batch-executions/{batch.id}/"},
        status=202,
    )


# Reference: scorable-api.md §4.2 (POST /v1/judges/{judge_id}/batch-execute/, JudgeBatchExecutionRequest)
@endpoint("POST")
def judge_batch_execute(request: HttpRequest, judge_id: str) -> HttpResponse:
    judge = _judge(judge_id)
    body = read_batch_request(_json_body(request), generic=False)
    _check_version(judge, body.judge_version_id)
    batch = services.batch_create(
        runner=services.Runner(judge=judge, evaluators=judge.evaluators),
        inputs=body.inputs,
        tags=body.tags,
        project_id=body.project_id,
        plan=faults.current_plan(),
    )
    return _accepted(batch)


def _evaluators(ids: list[str]) -> tuple[EvaluatorSpec, ...]:
    found: list[EvaluatorSpec] = []
    problems = []
    for index, value in enumerate(ids):
        spec = EVALUATORS_BY_ID.get(_uuid_or_none(value) or "")
        if spec is None:
            problems.append(f'evaluator_ids[{index}]: no evaluator with id "{value}".')
        elif spec not in found:
            found.append(spec)
    if problems:
        raise Invalid(problems)
    return tuple(found)


# Reference: scorable-api.md §4.2 (POST /v1/batch-executions/, BatchExecutionCreateRequest)
@endpoint("POST")
def batch_executions_create(request: HttpRequest) -> HttpResponse:
    body = read_batch_request(_json_body(request), generic=True)
    if body.judge_id is not None:
        judge = JUDGES_BY_ID.get(body.judge_id)
        if judge is None:
            raise Invalid([f'judge_id: no judge with id "{body.judge_id}".'])
        _check_version(judge, body.judge_version_id)
        runner = services.Runner(judge=judge, evaluators=judge.evaluators)
    else:
        if body.judge_version_id is not None:
            raise Invalid(["judge_version_id: only meaningful with judge_id, not with evaluator_ids."])
        runner = services.Runner(judge=None, evaluators=_evaluators(body.evaluator_ids or []))
    batch = services.batch_create(
        runner=runner,
        inputs=body.inputs,
        tags=body.tags,
        project_id=body.project_id,
        plan=faults.current_plan(),
    )
    return _accepted(batch)


def _datetime_param(request: HttpRequest, key: str, *, end_of_day: bool) -> datetime | None:
    value = request.GET.get(key, "").strip()
    if not value:
        return None
    not_a_date = Invalid([f'{key}: "{value}" is not an ISO 8601 date-time.'])
    try:
        # A bare date first: parse_datetime (Python's fromisoformat) would read it as midnight, and a
        # date_to of that day would then leave the whole day out.
        day = parse_date(value)
        if day is not None:
            parsed = datetime.combine(day, time.max if end_of_day else time.min)
        else:
            # An unencoded "+00:00" arrives as " 00:00".
            found = parse_datetime(value) or parse_datetime(value.replace(" ", "+"))
            if found is None:
                raise not_a_date
            parsed = found
    except ValueError:
        # Well formed but impossible: 2024-02-30, year 0000, hour 25, an offset past 24 hours.
        raise not_a_date from None
    try:
        return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    except OverflowError:
        # 9999-12-31T23:00-05:00 is past the last date-time there is, once in UTC.
        raise Invalid([f'{key}: "{value}" is out of range.']) from None


def _batch_page(
    batches: QuerySet[Batch], token: str | None, size: int
) -> tuple[list[Batch], str | None, str | None]:
    """Keyset pagination, newest first, on the creation sequence: pages stay put while batches are created."""
    if token is None:
        rows = list(batches.order_by("-seq")[: size + 1])
        page, has_next, has_previous = rows[:size], len(rows) > size, False
    else:
        data = pagination.decode(token)
        seq, direction = data.get("s"), data.get("d")
        # A forged cursor may hold a bool (an int to Python) or a number past the 64-bit column.
        if type(seq) is not int or not 0 <= seq < 2**63 or direction not in ("next", "prev"):
            raise pagination.BadCursor(token)
        if direction == "next":
            rows = list(batches.filter(seq__lt=seq).order_by("-seq")[: size + 1])
            page, has_next = rows[:size], len(rows) > size
            has_previous = bool(page) and batches.filter(seq__gt=page[0].seq).exists()
        else:
            rows = list(batches.filter(seq__gt=seq).order_by("seq")[: size + 1])
            page, has_previous = rows[:size][::-1], len(rows) > size
            has_next = bool(page) and batches.filter(seq__lt=page[-1].seq).exists()
    return (
        page,
        pagination.encode({"s": page[-1].seq, "d": "next"}) if has_next else None,
        pagination.encode({"s": page[0].seq, "d": "prev"}) if has_previous else None,
    )


# Reference: scorable-api.md §4.4 (GET /v1/judges/batch-executions/)
@endpoint("GET")
def batch_list(request: HttpRequest) -> HttpResponse:
    now = clock.now()
    size = pagination.page_size(request)
    token = pagination.cursor_token(request)
    batches = Batch.objects.all()
    judge_id = request.GET.get("judge_id", "").strip()
    if judge_id:
        if _uuid_or_none(judge_id) is None:
            raise Invalid([f'judge_id: "{judge_id}" is not a valid UUID.'])
        batches = batches.filter(judge_id=judge_id)
    status = request.GET.get("status", "").strip()
    if status:
        if status not in BatchStatus.values:
            raise Invalid([f'status: "{status}" is not one of {", ".join(BatchStatus.values)}.'])
        batches = batches.with_status(status, now)
    batches = batches.created_between(
        _datetime_param(request, "date_from", end_of_day=False),
        _datetime_param(request, "date_to", end_of_day=True),
    )
    project_id = _uuid_param(request, "project_id")
    if project_id is not None:
        batches = batches.filter(project_id=project_id)
    page, next_token, previous_token = _batch_page(batches, token, size)
    counts: dict[uuid.UUID, tuple[int, int]] = {
        row["batch"]: (row["completed"], row["failed"])
        for row in BatchItem.objects.filter(batch__in=page, completed_at__lte=now)
        .values("batch")
        .annotate(
            completed=Count("id", filter=Q(outcome=Outcome.COMPLETED)),
            failed=Count("id", filter=Q(outcome=Outcome.FAILED)),
        )
    }
    results = [
        replies.batch_row(
            batch,
            now,
            completed=counts.get(batch.id, (0, 0))[0],
            failed=counts.get(batch.id, (0, 0))[1],
        )
        for batch in page
    ]
    return JsonResponse(
        {
            "next": pagination.page_url(request, next_token),
            "previous": pagination.page_url(request, previous_token),
            "results": results,
        }
    )


def _batch(batch_id: str) -> Batch:
    key = _uuid_or_none(batch_id)
    batch = Batch.objects.filter(id=key).first() if key else None
    if batch is None:
        raise NotFound(f'No batch execution with id "{batch_id}".')
    return batch


# Reference: scorable-api.md §4.5 (GET /v1/judges/batch-executions/{id}/, BatchExecutionDetail)
@endpoint("GET")
def batch_detail(request: HttpRequest, batch_id: str) -> HttpResponse:
    now = clock.now()
    batch = _batch(batch_id)
    return JsonResponse(replies.batch_detail(batch, list(batch.items.order_by("index")), now))


# Reference: scorable-api.md §5 Execution logs (GET /v1/execution-logs/{log_id}/, ExecutionLogDetails)
@endpoint("GET")
def execution_log_detail(request: HttpRequest, log_id: str) -> HttpResponse:
    key = _uuid_or_none(log_id)
    # A batch item's log exists from the start but is not revealed before the item completes.
    visible = ExecutionLog.objects.select_related("parent").filter(created_at__lte=clock.now())
    log = visible.filter(id=key).first() if key else None
    if log is None:
        raise NotFound(f'No execution log with id "{log_id}".')
    return JsonResponse(replies.log_detail(log))


def _uuid_param(request: HttpRequest, key: str) -> str | None:
    value = request.GET.get(key, "").strip()
    if not value:
        return None
    parsed = _uuid_or_none(value)
    if parsed is None:
        raise Invalid([f'{key}: "{value}" is not a valid UUID.'])
    return parsed


def _bool_param(request: HttpRequest, key: str) -> bool | None:
    value = request.GET.get(key, "").strip()
    if not value:
        return None
    # The SDK sends Python's bools lower-cased; DRF's filters also take 1 and 0.
    known = {"true": True, "1": True, "false": False, "0": False}
    if value.lower() not in known:
        raise Invalid([f'{key}: "{value}" is not a boolean (true or false).'])
    return known[value.lower()]


def _number_param(request: HttpRequest, key: str) -> float | None:
    value = request.GET.get(key, "").strip()
    if not value:
        return None
    try:
        number = float(value)
    except ValueError:
        number = float("nan")
    if number != number or number in (float("inf"), float("-inf")):
        raise Invalid([f'{key}: "{value}" is not a number.'])
    return number


EXECUTION_TYPES = ("skill", "evaluator", "judge", "experiment", "test", "proxy", "internal")
LOG_ORDERINGS = ("-created_at", "created_at")


def _log_filters(request: HttpRequest, logs: QuerySet[ExecutionLog]) -> QuerySet[ExecutionLog]:
    """S1's filters of GET /v1/execution-logs/; every bad value is a 400 naming its parameter."""
    for key, column in (
        ("batch_execution_id", "batch_id"),
        ("judge_id", "judge_id"),
        ("executed_item_id", "executed_item_id"),
        ("parent_execution_log_id", "parent_id"),
        ("project_id", "project_id"),
    ):
        value = _uuid_param(request, key)
        if value is not None:
            # batch_execution_id takes in the child evaluator logs too: they belong to the batch.
            logs = logs.filter(**{column: value})
    execution_type = request.GET.get("execution_type", "").strip()
    if execution_type:
        if execution_type not in EXECUTION_TYPES:
            raise Invalid([f'execution_type: "{execution_type}" is not one of {", ".join(EXECUTION_TYPES)}.'])
        logs = logs.filter(execution_type=execution_type)
    for key in ("model", "user_id", "session_id"):
        value = request.GET.get(key, "")
        if value:
            logs = logs.filter(**{key: value})
    owner_email = request.GET.get("owner_email", "")
    if owner_email and owner_email != OWNER["email"]:
        # Every offline log has the one owner.
        logs = logs.none()
    has_session = _bool_param(request, "has_session_id")
    if has_session is not None:
        logs = logs.exclude(session_id="") if has_session else logs.filter(session_id="")
    tags = [tag.strip() for tag in request.GET.get("tags", "").split(",") if tag.strip()]
    if tags:
        # Any of the named tags. A batch's logs carry the batch's tags until set-tags gives them their own.
        batch_tagged = Exists(BatchTag.objects.filter(batch_id=OuterRef("batch_id"), tag__in=tags))
        own_tagged = Exists(LogTag.objects.filter(log_id=OuterRef("pk"), tag__in=tags))
        logs = logs.filter((Q(own_tags=False) & Q(batch_tagged)) | (Q(own_tags=True) & Q(own_tagged)))
    search = request.GET.get("search", "").strip()
    if search:
        matches = Q(executed_item_name__icontains=search)
        if _uuid_or_none(search):
            matches |= Q(executed_item_id=_uuid_or_none(search))
        logs = logs.filter(matches)
    logs = logs.filter(
        _range_query(
            "created_at",
            _datetime_param(request, "date_from", end_of_day=False),
            _datetime_param(request, "date_to", end_of_day=True),
        )
    )
    for field in ("score", "cost"):
        # Inclusive; a null never satisfies a comparison, so rows without a value drop out, as in S1.
        logs = logs.filter(
            _range_query(
                field, _number_param(request, f"min_{field}"), _number_param(request, f"max_{field}")
            )
        )
    if _bool_param(request, "unique_evaluators"):
        logs = logs.filter(id__in=_newest_per_executed_item(logs))
    return logs


def _range_query(field: str, low: Any, high: Any) -> Q:
    query = Q()
    if low is not None:
        query &= Q(**{f"{field}__gte": low})
    if high is not None:
        query &= Q(**{f"{field}__lte": high})
    return query


def _newest_per_executed_item(logs: QuerySet[ExecutionLog]) -> list[uuid.UUID]:
    """unique_evaluators: the newest log of each evaluator (or judge) among the filtered ones. There are
    a handful of evaluators, so the ids fit any IN clause; the scan reads two columns per log."""
    newest: dict[uuid.UUID | None, uuid.UUID] = {}
    rows = logs.order_by("-created_at", "-id").values_list("executed_item_id", "id")
    for executed_item_id, log_id in rows.iterator(chunk_size=5000):
        newest.setdefault(executed_item_id, log_id)
    return list(newest.values())


def _log_include(request: HttpRequest) -> frozenset[str]:
    names = [name.strip() for name in request.GET.get("include", "").split(",") if name.strip()]
    unknown = [name for name in names if name not in replies.LOG_INCLUDES]
    if unknown:
        raise Invalid(
            [f'include: "{unknown[0]}" is not one of {", ".join(replies.LOG_INCLUDES)} (a comma list).']
        )
    return frozenset(names)


def _log_page(
    logs: QuerySet[ExecutionLog], token: str | None, size: int, *, descending: bool
) -> tuple[list[ExecutionLog], str | None, str | None]:
    """Keyset pagination on (created_at, id): a batch's logs share their item's completion time, and the
    id breaks the tie, so pages stay put while new logs appear."""
    forward = ("-created_at", "-id") if descending else ("created_at", "id")
    backward = ("created_at", "id") if descending else ("-created_at", "-id")

    def beyond(log_time: datetime, log_id: str, *, ahead: bool) -> Q:
        later = ahead != descending
        op = "gt" if later else "lt"
        return Q(**{f"created_at__{op}": log_time}) | Q(created_at=log_time, **{f"id__{op}": log_id})

    if token is None:
        rows = list(logs.order_by(*forward)[: size + 1])
        page, has_next, has_previous = rows[:size], len(rows) > size, False
    else:
        data = pagination.decode(token)
        moment, key, direction = data.get("t"), data.get("i"), data.get("d")
        if not isinstance(moment, str) or not isinstance(key, str) or direction not in ("next", "prev"):
            raise pagination.BadCursor(token)
        try:
            log_time = datetime.fromisoformat(moment)
        except ValueError:
            raise pagination.BadCursor(token) from None
        log_id = _uuid_or_none(key)
        if log_id is None or log_time.tzinfo is None:
            raise pagination.BadCursor(token)
        if direction == "next":
            rows = list(logs.filter(beyond(log_time, log_id, ahead=True)).order_by(*forward)[: size + 1])
            page, has_next = rows[:size], len(rows) > size
            has_previous = (
                bool(page) and logs.filter(beyond(page[0].created_at, str(page[0].id), ahead=False)).exists()
            )
        else:
            rows = list(logs.filter(beyond(log_time, log_id, ahead=False)).order_by(*backward)[: size + 1])
            page, has_previous = rows[:size][::-1], len(rows) > size
            has_next = (
                bool(page) and logs.filter(beyond(page[-1].created_at, str(page[-1].id), ahead=True)).exists()
            )

    def mark(log: ExecutionLog, direction: str) -> str:
        return pagination.encode({"t": log.created_at.isoformat(), "i": str(log.id), "d": direction})

    return (
        page,
        mark(page[-1], "next") if has_next else None,
        mark(page[0], "prev") if has_previous else None,
    )


# Reference: scorable-api.md §5 Execution logs (GET /v1/execution-logs/, PaginatedExecutionLogListList)
@endpoint("GET")
def execution_logs_list(request: HttpRequest) -> HttpResponse:
    size = pagination.page_size(request, maximum=pagination.MAX_LOG_PAGE_SIZE)
    token = pagination.cursor_token(request)
    if request.GET.get("export", "").strip():
        raise Invalid(['export: the offline judge answers JSON only; leave "export" out.'])
    ordering = request.GET.get("ordering", "").strip() or "-created_at"
    if ordering not in LOG_ORDERINGS:
        raise Invalid([f'ordering: "{ordering}" is not one of {", ".join(LOG_ORDERINGS)}.'])
    include = _log_include(request)
    logs = _log_filters(request, ExecutionLog.objects.filter(created_at__lte=clock.now()))
    # The stored detail (inputs up to 3.5 million characters) is read only when `include` needs it.
    logs = logs.select_related("parent") if include else logs.defer("detail")
    page, next_token, previous_token = _log_page(logs, token, size, descending=ordering.startswith("-"))
    return JsonResponse(
        {
            "next": pagination.page_url(request, next_token),
            "previous": pagination.page_url(request, previous_token),
            "results": [replies.log_row(log, include) for log in page],
        }
    )


MAX_SET_TAGS_LOGS = 500
MAX_SET_TAGS_TAGS = 15


# Reference: scorable-api.md §5 Execution logs (POST /v1/execution-logs/set-tags/, BatchSetTagsModelRequest)
@endpoint("POST")
def execution_logs_set_tags(request: HttpRequest) -> HttpResponse:
    body = _json_body(request)
    check = Checker()
    log_ids = check.strings(body, "log_ids", "log_ids")
    tags = check.strings(body, "tags", "tags", limit=MAX_TAG) or []
    if body.get("log_ids") is None:
        check.fail("log_ids", f"this field is required (a list of 1 to {MAX_SET_TAGS_LOGS} log ids).")
    elif log_ids is not None and not 1 <= len(log_ids) <= MAX_SET_TAGS_LOGS:
        check.fail(
            "log_ids", f"ensure this list has between 1 and {MAX_SET_TAGS_LOGS} items (got {len(log_ids)})."
        )
    if len(tags) > MAX_SET_TAGS_TAGS:
        check.fail("tags", f"ensure this list has no more than {MAX_SET_TAGS_TAGS} items (got {len(tags)}).")
    check.raise_if_any()
    keys: list[str] = []
    for index, value in enumerate(log_ids or []):
        key = _uuid_or_none(value)
        if key is None:
            check.fail(f"log_ids[{index}]", f'"{value}" is not a valid UUID.')
        else:
            keys.append(key)
    check.raise_if_any()
    unique = list(dict.fromkeys(keys))
    with transaction.atomic():
        logs = list(ExecutionLog.objects.filter(id__in=unique, created_at__lte=clock.now()).defer("detail"))
        found = {str(log.id) for log in logs}
        for index, value in enumerate(log_ids or []):
            if _uuid_or_none(value) not in found:
                check.fail(f"log_ids[{index}]", f'no execution log with id "{value}".')
        check.raise_if_any()
        kept = list(dict.fromkeys(tags))
        for log in logs:
            log.tags = kept
            log.own_tags = True
        ExecutionLog.objects.bulk_update(logs, ["tags", "own_tags"])
        LogTag.objects.filter(log__in=logs).delete()
        services.write_own_tags(logs, kept)
    return HttpResponse(status=204)


def _evaluator(evaluator_id: str) -> EvaluatorSpec:
    spec = EVALUATORS_BY_ID.get(_uuid_or_none(evaluator_id) or "")
    if spec is None:
        raise NotFound(f'No evaluator with id "{evaluator_id}".')
    return spec


# Reference: S1 evaluators_list (GET /v1/evaluators/, PaginatedEvaluatorListOutputList)
@endpoint("GET")
def evaluators_list(request: HttpRequest) -> HttpResponse:
    size = pagination.page_size(request)
    token = pagination.cursor_token(request)
    offset = pagination.decode(token).get("o", 0) if token else 0
    if type(offset) is not int or offset < 0:
        raise pagination.BadCursor(token or "")
    specs = list(EVALUATORS_BY_ID.values())
    search = request.GET.get("search", "").strip().lower()
    if search:
        specs = [s for s in specs if search in s.name.lower() or search in s.intent.lower()]
    for key, value_of in (
        ("name", lambda spec: spec.name),
        ("objective__intent", lambda spec: spec.intent),
        ("owner__email", lambda spec: OWNER["email"]),
    ):
        wanted = request.GET.get(key, "")
        if wanted:
            specs = [s for s in specs if value_of(s) == wanted]
    evaluator_type = request.GET.get("evaluator_type", "").strip()
    if evaluator_type and evaluator_type not in ("managed", "native"):
        raise Invalid([f'evaluator_type: "{evaluator_type}" is not one of managed, native.'])
    # Every offline evaluator is a root evaluator of the one project: is_root_evaluator=false and a
    # project filter (root evaluators are always included) leave the list as it is or empty it.
    if _bool_param(request, "is_root_evaluator") is False:
        specs = []
    _uuid_param(request, "project_id")
    _bool_param(request, "include_public")
    page = specs[offset : offset + size]
    next_token = pagination.encode({"o": offset + size}) if offset + size < len(specs) else None
    previous_token = pagination.encode({"o": max(offset - size, 0)}) if offset > 0 else None
    return JsonResponse(
        {
            "next": pagination.page_url(request, next_token),
            "previous": pagination.page_url(request, previous_token),
            "results": [replies.evaluator_row(spec) for spec in page],
        }
    )


# Reference: S1 evaluators_retrieve (GET /v1/evaluators/{id}/, Evaluator)
@endpoint("GET")
def evaluator_detail(request: HttpRequest, evaluator_id: str) -> HttpResponse:
    spec = _evaluator(evaluator_id)
    version_id = request.GET.get("version_id", "").strip()
    if version_id and _uuid_or_none(version_id) != spec.version_id:
        raise NotFound(
            f'No version "{version_id}" of evaluator "{spec.name}" (its version is "{spec.version_id}").'
        )
    return JsonResponse(replies.evaluator_detail(spec))


# Reference: none (offline judge only): counters for tests and benchmarks, outside /v1/.
@endpoint("GET", inject_faults=False)
def offline_stats(request: HttpRequest) -> HttpResponse:
    config = str(settings.OFFLINE_JUDGE_FAULTS or "")
    try:
        values: dict[str, Any] = dict(faults.current_plan().describe())
    except faults.FaultConfigError as error:
        values = {"error": str(error)}
    return JsonResponse(
        {
            "process": stats.process_counts(),
            "database": stats.database_counts(request.GET.get("tag_prefix", "")),
            "faults": {"config": config, "values": values},
        }
    )


@csrf_exempt
@login_not_required
def not_found(request: HttpRequest, path: str = "") -> HttpResponse:
    """Any other path under /judge-api/: a problem reply instead of Django's HTML 404 or slash redirect."""
    stats.record_request(request.method or "", "not-found")
    hint = ""
    if not request.path.endswith("/"):
        hint = f" Paths of this API end with a slash: did you mean {request.path}/ ?"
    response = replies.problem(404, "not_found", "Not found.", f'No endpoint at "{request.path}".{hint}')
    stats.record_response(404)
    return response
