"""The judge API client against a fake server at the seam (httpx.MockTransport): every error class."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from evals import client
from evals.client import JudgeAPI, JudgeError, Patience

BASE = "https://judge.example/api"


def problem(status: int, code: str, detail: str, title: str = "Error.") -> dict[str, Any]:
    return {
        "type": "about:blank",
        "title": title,
        "status": status,
        "detail": detail,
        "instance": None,
        "code": code,
    }


def make_api(handler: Callable[[httpx.Request], httpx.Response], **kwargs: Any) -> JudgeAPI:
    return JudgeAPI(base_url=BASE, api_key="sekrit-key", transport=httpx.MockTransport(handler), **kwargs)


def judge_row(judge_id: str, name: str) -> dict[str, Any]:
    return {
        "id": judge_id,
        "name": name,
        "intent": "checks things",
        "created_at": "2026-01-02T03:04:05Z",
        "visibility": "private",
        "inputs": {"contexts": {"type": "array", "items": {"type": "string"}}},
        "evaluators": [
            {
                "id": "e1",
                "name": "Relevance",
                "objective": {"intent": "on topic"},
                "is_root_evaluator": True,
                "model": "gpt-x",
                "version_id": "v1",
            }
        ],
        "_meta": {},
        "project_id": None,
    }


def test_requests_carry_the_api_key_scheme_and_a_user_agent() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"next": None, "previous": None, "results": []})

    list(make_api(handler).list_judges())
    assert seen[0].headers["Authorization"] == "Api-Key sekrit-key"
    assert seen[0].headers["User-Agent"].startswith("Docket/")
    assert str(seen[0].url).startswith(f"{BASE}/v1/judges/?")


def test_list_judges_follows_cursors_and_never_sends_the_key_to_another_host() -> None:
    requested: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requested.append(str(request.url))
        if "cursor" not in request.url.params:
            # A `next` on a foreign host: only its cursor may be used, against our own base URL.
            return httpx.Response(
                200,
                json={
                    "next": "https://elsewhere.example/v1/judges/?cursor=abc%3D&page_size=1",
                    "previous": None,
                    "results": [judge_row("j1", "First")],
                },
            )
        assert request.url.params["cursor"] == "abc="
        return httpx.Response(
            200, json={"next": None, "previous": None, "results": [judge_row("j2", "Second")]}
        )

    judges = list(make_api(handler).list_judges(page_size=1))
    assert [judge.name for judge in judges] == ["First", "Second"]
    assert all(url.startswith(BASE) for url in requested)
    assert judges[0].evaluators[0].model == "gpt-x"
    assert judges[0].evaluators[0].intent == "on topic"
    assert judges[0].inputs == {"contexts": {"type": "array", "items": {"type": "string"}}}


@pytest.mark.parametrize(
    ("status", "code", "permanent"),
    [
        (400, "invalid", True),
        (401, "authentication_failed", True),
        (403, "permission_denied", True),
        (404, "not_found", True),
        (500, "error", False),
        (502, "", False),
        (503, "", False),
    ],
)
def test_error_statuses_map_to_permanent_or_transient(status: int, code: str, permanent: bool) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json=problem(status, code, f"detail for {status}"))

    with pytest.raises(JudgeError) as caught:
        make_api(handler).get_batch("b1")
    error = caught.value
    assert error.status == status
    assert error.permanent is permanent
    assert f"detail for {status}" in error.message
    assert "sekrit-key" not in error.message


def test_400_names_the_field_the_judge_complained_about() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            400, json=problem(400, "invalid", "inputs: ensure this list has between 1 and 100 items.")
        )

    with pytest.raises(JudgeError) as caught:
        make_api(handler).create_batch("j1", inputs=[], tags=[])
    assert caught.value.permanent
    assert "inputs: ensure this list has between 1 and 100 items." in caught.value.message
    assert not caught.value.outcome_unknown


def test_400_with_drf_field_errors_is_readable() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"judge_version_id": ["Unknown version."]})

    with pytest.raises(JudgeError) as caught:
        make_api(handler).create_batch("j1", inputs=[{"response": "x"}], tags=[])
    assert "judge_version_id: Unknown version." in caught.value.message


def test_429_is_transient_and_carries_retry_after_seconds() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            429, headers={"Retry-After": "12"}, json=problem(429, "throttled", "Request was throttled.")
        )

    with pytest.raises(JudgeError) as caught:
        make_api(handler).create_batch("j1", inputs=[{"response": "x"}], tags=["t"])
    error = caught.value
    assert error.throttled and not error.permanent
    assert error.retry_after == 12.0
    # A throttled create was not carried out: no need to look it up before sending it again.
    assert not error.outcome_unknown


def test_retry_after_as_an_http_date_is_understood() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(429, headers={"Retry-After": "Wed, 21 Oct 2099 07:28:00 GMT"}, text="slow down")

    with pytest.raises(JudgeError) as caught:
        make_api(handler).get_batch("b1")
    assert caught.value.retry_after is not None and caught.value.retry_after > 3600


def test_a_500_on_create_leaves_the_outcome_unknown() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(500, text="<html>Server Error</html>")

    with pytest.raises(JudgeError) as caught:
        make_api(handler).create_batch("j1", inputs=[{"response": "x"}], tags=["t"])
    assert caught.value.outcome_unknown and not caught.value.permanent
    assert "Server Error" in caught.value.message


def test_a_read_timeout_on_create_leaves_the_outcome_unknown() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    with pytest.raises(JudgeError) as caught:
        make_api(handler, timeout=2.5).create_batch("j1", inputs=[{"response": "x"}], tags=["t"])
    assert caught.value.outcome_unknown and not caught.value.permanent
    assert "2.5 s" in caught.value.message


def test_a_connect_error_is_transient_and_known_not_to_have_happened() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(JudgeError) as caught:
        make_api(handler).create_batch("j1", inputs=[{"response": "x"}], tags=["t"])
    assert not caught.value.permanent and not caught.value.outcome_unknown
    assert "Could not connect" in caught.value.message


def test_a_dropped_connection_on_create_leaves_the_outcome_unknown() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.RemoteProtocolError("peer closed connection", request=request)

    with pytest.raises(JudgeError) as caught:
        make_api(handler).create_batch("j1", inputs=[{"response": "x"}], tags=["t"])
    assert caught.value.outcome_unknown


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b'{"batch_execution_id": 5}'])
def test_malformed_replies_raise_a_readable_transient_error(body: bytes) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(202, content=body, headers={"Content-Type": "application/json"})

    with pytest.raises(JudgeError) as caught:
        make_api(handler).create_batch("j1", inputs=[{"response": "x"}], tags=["t"])
    assert not caught.value.permanent
    assert "judge API" in caught.value.message


def test_create_batch_sends_the_documented_body_and_reads_the_202() -> None:
    bodies: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.method == "POST" and request.url.path == "/api/v1/batch-executions/"
        bodies.append(json.loads(request.content))
        return httpx.Response(
            202, json={"batch_execution_id": "b-1", "status_url": "/v1/judges/batch-executions/b-1/"}
        )

    created = make_api(handler).create_batch(
        "j1", inputs=[{"response": "hi"}], tags=["docket:r:0", "nightly"], judge_version_id="v9"
    )
    assert created.id == "b-1"
    assert bodies == [
        {
            "judge_id": "j1",
            "inputs": [{"response": "hi"}],
            "tags": ["docket:r:0", "nightly"],
            "judge_version_id": "v9",
        }
    ]


def test_batch_detail_tolerates_results_with_only_the_documented_three_fields() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200,
            json={
                "batch_execution_id": "b-1",
                "status": "partial",
                "total_count": 2,
                "completed_count": 1,
                "failed_count": 1,
                "created_at": "2026-11-27T10:00:00Z",
                "started_at": None,
                "completed_at": None,
                "judge": None,
                "tags": ["docket:x:0"],
                "items": [
                    {
                        "index": 0,
                        "status": "completed",
                        "input": {},
                        "evaluator_results": [
                            {
                                "score": 0.5,
                                "justification": "half",
                                "evaluator_name": "Relevance",
                                "surprise": "extra keys are fine",
                            }
                        ],
                        "error_message": "",
                        "execution_log_id": "log-1",
                        "started_at": None,
                        "completed_at": None,
                    },
                    {
                        "index": 1,
                        "status": "failed",
                        "input": {},
                        "evaluator_results": None,
                        "error_message": "model timed out",
                        "execution_log_id": None,
                    },
                ],
            },
        )

    batch = make_api(handler).get_batch("b-1")
    assert batch.is_finished and batch.tags == ("docket:x:0",)
    first, second = batch.items
    assert first.evaluator_results is not None
    assert (first.evaluator_results[0].evaluator_name, first.evaluator_results[0].score) == ("Relevance", 0.5)
    assert first.evaluator_results[0].confidence is None
    assert second.evaluator_results is None and second.error_message == "model timed out"


def test_find_batch_by_tag_pages_through_the_batch_list() -> None:
    def row(batch_id: str, tags: list[str]) -> dict[str, Any]:
        return {
            "batch_execution_id": batch_id,
            "status": "processing",
            "total_count": 1,
            "completed_count": 0,
            "failed_count": 0,
            "created_at": None,
            "started_at": None,
            "completed_at": None,
            "judge": None,
            "tags": tags,
        }

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.params["judge_id"] == "j1"
        assert request.url.params["date_from"].startswith("2026-11-27T09:00:00")
        if request.url.params.get("cursor") == "p2":
            return httpx.Response(
                200, json={"next": None, "previous": None, "results": [row("b-2", ["docket:r:1"])]}
            )
        return httpx.Response(
            200,
            json={
                "next": f"{BASE}/v1/judges/batch-executions/?cursor=p2",
                "previous": None,
                "results": [row("b-1", ["docket:r:0", "docket:r:10"])],
            },
        )

    from datetime import UTC, datetime

    api = make_api(handler)
    since = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
    found = api.find_batch_by_tag(judge_id="j1", tag="docket:r:1", since=since)
    assert found is not None and found.id == "b-2"
    assert api.find_batch_by_tag(judge_id="j1", tag="docket:r:2", since=since) is None


def test_every_call_is_logged_without_the_key(caplog: pytest.LogCaptureFixture) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(429, headers={"Retry-After": "3"}, json=problem(429, "throttled", "slow"))

    caplog.set_level("INFO", logger="evals.judge_api")
    with pytest.raises(JudgeError):
        make_api(handler).get_batch("b-7", attempt=4)
    line = caplog.records[-1].getMessage()
    assert "method=GET path=/v1/judges/batch-executions/b-7/ status=429" in line
    assert "attempt=4" in line and "latency_ms=" in line
    assert "sekrit-key" not in caplog.text


# --- Base URL, error messages ----------------------------------------------------------------------


@pytest.mark.parametrize("base_url", [BASE, f"{BASE}/", f"{BASE}/v1", f"{BASE}/v1/", f" {BASE}/V1 "])
def test_the_base_url_is_taken_with_or_without_v1_or_a_slash(base_url: str) -> None:
    # Scorable's own CLI wants SCORABLE_API_URL with /v1; once that meant /v1/v1/ and 404s.
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(200, json={"next": None, "previous": None, "results": []})

    api = JudgeAPI(base_url=base_url, api_key="k", transport=httpx.MockTransport(handler))
    list(api.list_judges())
    assert api.base_url == BASE
    assert seen[0].startswith(f"{BASE}/v1/judges/?")


def test_an_html_error_page_gives_the_status_and_at_most_200_characters_of_its_text() -> None:
    page = "<html><head><style>body { color: red }</style><title>502 Bad Gateway</title></head><body>"
    page += (
        "<h1>Bad Gateway</h1>"
        + "<p>The proxy could not reach the upstream server.</p>" * 100
        + "</body></html>"
    )

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(502, text=page, headers={"Content-Type": "text/html"})

    with pytest.raises(JudgeError) as caught:
        make_api(handler).get_batch("b1")
    message = caught.value.message
    assert "(502)" in message and "502 Bad Gateway Bad Gateway The proxy could not reach" in message
    assert "<" not in message and "color: red" not in message
    assert len(message) < len("The judge API failed (502): ") + 201


def test_a_problem_gives_its_status_title_and_detail() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        body = problem(
            429, "throttled", "Request was throttled. Expected available in 4 seconds.", "Throttled."
        )
        return httpx.Response(429, json=body)

    with pytest.raises(JudgeError) as caught:
        make_api(handler).get_batch("b1")
    assert caught.value.message == (
        "The judge API is throttling requests (429): Throttled: Request was throttled. "
        "Expected available in 4 seconds."
    )


# --- Patience: what the commands use to wait out a throttled or failing judge API ------------------


def replies(*responses: httpx.Response | Exception) -> Callable[[httpx.Request], httpx.Response]:
    """A handler giving these replies in turn (an exception is raised), then 200s with an empty page."""
    queue = list(responses)

    def handler(request: httpx.Request) -> httpx.Response:
        reply = queue.pop(0) if queue else httpx.Response(200, json={"next": None, "results": []})
        if isinstance(reply, Exception):
            raise reply
        return reply

    return handler


def throttled(retry_after: str | None = None) -> httpx.Response:
    headers = {"Retry-After": retry_after} if retry_after else {}
    return httpx.Response(429, headers=headers, json=problem(429, "throttled", "Request was throttled."))


def failed(status: int = 503) -> httpx.Response:
    return httpx.Response(status, text="Service Unavailable")


class Watcher:
    """Records what Patience says and how long it would have slept (tests never sleep)."""

    def __init__(self) -> None:
        self.said: list[str] = []
        self.waits: list[float] = []

    def patience(self, **kwargs: Any) -> Patience:
        return Patience(say=self.said.append, sleep=self.waits.append, rand=lambda: 1.0, **kwargs)


def test_patience_waits_as_long_as_retry_after_says_and_says_what_it_waits_for() -> None:
    watcher = Watcher()
    api = make_api(replies(throttled("4"), throttled("2")), patience=watcher.patience())
    assert list(api.list_judges()) == []
    assert watcher.waits == [4.0, 2.0]
    assert watcher.said == [
        "judge API throttled (429); trying again in 4 s",
        "judge API throttled (429); trying again in 2 s",
    ]


def test_patience_without_retry_after_backs_off_exponentially_with_jitter_and_a_cap(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(client, "BACKOFF_CAP_SECONDS", 3.0)
    errors = [failed(503), failed(500), throttled(), failed(502)]
    high, low = Watcher(), Watcher()
    list(make_api(replies(*errors), patience=high.patience()).list_judges())
    # The jitter takes between half and all of 1, 2, 4 (capped at 3), 8 (capped)...
    assert high.waits == [1.0, 2.0, 3.0, 3.0]
    list(
        make_api(
            replies(*errors), patience=Patience(say=low.said.append, sleep=low.waits.append, rand=lambda: 0.0)
        ).list_judges()
    )
    assert low.waits == [0.5, 1.0, 1.5, 1.5]
    assert high.said[0] == "judge API failed (503); trying again in 1 s"
    assert high.said[2] == "judge API throttled (429); trying again in 3 s"


@pytest.mark.parametrize(
    ("error", "said"),
    [
        (httpx.ConnectError("refused"), "could not connect to the judge API; trying again in 1 s"),
        (httpx.ReadTimeout("slow"), "judge API did not answer in time; trying again in 1 s"),
        (httpx.RemoteProtocolError("closed"), "the connection to the judge API broke; trying again in 1 s"),
    ],
)
def test_patience_waits_out_timeouts_and_lost_connections_of_reads(error: Exception, said: str) -> None:
    watcher = Watcher()
    list(make_api(replies(error), patience=watcher.patience()).list_judges())
    assert watcher.said == [said]


def test_patience_gives_up_once_its_budget_is_spent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client, "RETRY_BUDGET_SECONDS", 10.0)
    watcher, calls = Watcher(), []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return failed(503)

    with pytest.raises(JudgeError) as caught:
        list(make_api(handler, patience=watcher.patience()).list_judges())
    assert caught.value.status == 503
    # 1 + 2 + 4, then only the 3 s left of the 10 (less the moments the failed calls took), one last try.
    assert watcher.waits == [1.0, 2.0, 4.0, pytest.approx(3.0, abs=0.5)] and len(calls) == 5
    assert watcher.said[-1] == "judge API failed (503); giving up after 10 s"


def test_patience_does_not_wait_for_a_retry_after_beyond_its_budget() -> None:
    watcher = Watcher()
    with pytest.raises(JudgeError) as caught:
        list(make_api(replies(throttled("300")), patience=watcher.patience(budget=120)).list_judges())
    assert caught.value.retry_after == 300.0
    assert watcher.waits == [] and watcher.said == ["judge API throttled (429); giving up after 0 s"]


@pytest.mark.parametrize(
    "reply",
    [
        httpx.Response(401, json=problem(401, "authentication_failed", "Bad key.")),
        httpx.Response(404, json=problem(404, "not_found", "No such judge.")),
        httpx.Response(200, content=b"{not json"),
    ],
)
def test_patience_raises_a_permanent_error_or_an_unreadable_reply_at_once(reply: httpx.Response) -> None:
    watcher = Watcher()
    with pytest.raises(JudgeError):
        make_api(replies(reply), patience=watcher.patience()).get_judge("j1")
    assert watcher.waits == [] and watcher.said == []


def test_patience_never_sends_a_create_again_whose_outcome_is_unknown() -> None:
    watcher, calls = Watcher(), []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return failed(500)

    with pytest.raises(JudgeError) as caught:
        make_api(handler, patience=watcher.patience()).create_batch(
            "j1", inputs=[{"response": "x"}], tags=["t"]
        )
    assert caught.value.outcome_unknown and len(calls) == 1 and watcher.waits == []


# --- Issue 14: evaluator sets, projects, execution logs in bulk -------------------------------------------


def test_create_batch_with_an_evaluator_set_sends_evaluator_ids_and_no_judge() -> None:
    bodies: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        return httpx.Response(202, json={"batch_execution_id": "b-2", "status_url": "/v1/x/"})

    api = make_api(handler)
    # A judge version means nothing without the judge: it is not sent with an evaluator set.
    api.create_batch(
        None,
        inputs=[{"response": "hi"}],
        tags=["t"],
        evaluator_ids=["e1", "e2"],
        judge_version_id="v9",
        project_id="p-7",
    )
    api.create_batch("j1", inputs=[{"response": "hi"}], tags=["t"], project_id="p-7")
    assert bodies == [
        {"inputs": [{"response": "hi"}], "tags": ["t"], "evaluator_ids": ["e1", "e2"], "project_id": "p-7"},
        {"inputs": [{"response": "hi"}], "tags": ["t"], "judge_id": "j1", "project_id": "p-7"},
    ]
    # The API takes one of the two: both, or neither, is Docket's mistake and never sent.
    with pytest.raises(ValueError, match="judge_id or evaluator_ids"):
        api.create_batch("j1", inputs=[], tags=[], evaluator_ids=["e1"])
    with pytest.raises(ValueError, match="judge_id or evaluator_ids"):
        api.create_batch(None, inputs=[], tags=[])
    assert len(bodies) == 2


def test_find_batch_by_tag_of_an_evaluator_set_lists_without_a_judge_filter_in_its_project() -> None:
    seen: list[httpx.QueryParams] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.params)
        row = {
            "batch_execution_id": "b-9",
            "status": "processing",
            "total_count": 1,
            "completed_count": 0,
            "failed_count": 0,
            "judge": None,
            "tags": ["docket:r:3"],
        }
        return httpx.Response(200, json={"next": None, "previous": None, "results": [row]})

    from datetime import UTC, datetime

    found = make_api(handler).find_batch_by_tag(
        judge_id=None, tag="docket:r:3", since=datetime(2026, 12, 1, tzinfo=UTC), project_id="p-7"
    )
    assert found is not None and found.id == "b-9"
    assert "judge_id" not in seen[0] and seen[0]["project_id"] == "p-7"


def log_row(
    log_id: str, *, parent: str | None = None, name: str = "", cost: float | None = None
) -> dict[str, Any]:
    """An ExecutionLogList row with every S1 field."""
    return {
        "id": log_id,
        "created_at": "2026-12-02T05:00:00Z",
        "execution_type": "evaluator" if parent else "judge",
        "executed_item_id": f"id-{name}" if name else None,
        "executed_item_name": name,
        "executed_item_version_id": None,
        "score": 0.5,
        "cost": cost,
        "request_preview": "",
        "response_preview": "",
        "tags": ["docket:r:0"],
        "user_id": "u-1",
        "session_id": "",
        "owner": {"email": "a@b.c", "full_name": "A"},
        "project_id": None,
        "parent_execution_log_id": parent,
        "llm_output": None,
        "variables": None,
        "evaluation_context": None,
    }


def test_list_execution_logs_pages_by_cursor_and_sends_filters_by_their_api_names() -> None:
    seen: list[httpx.QueryParams] = []

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/api/v1/execution-logs/"
        seen.append(request.url.params)
        if request.url.params.get("cursor") == "p2":
            rows = [log_row("c-1", parent="l-1", name="Relevance", cost=0.002)]
            return httpx.Response(200, json={"next": None, "previous": None, "results": rows})
        return httpx.Response(
            200,
            json={
                "next": f"{BASE}/v1/execution-logs/?cursor=p2&batch_execution_id=b-1",
                "previous": None,
                "results": [log_row("l-1", cost=0.003)],
            },
        )

    logs = list(
        make_api(handler).list_execution_logs(
            batch_execution_id="b-1", page_size=400, project_id=None, has_session_id=False, tags=["a", "b"]
        )
    )
    assert [(log.id, log.parent_execution_log_id, log.executed_item_name, log.cost) for log in logs] == [
        ("l-1", None, "", 0.003),
        ("c-1", "l-1", "Relevance", 0.002),
    ]
    assert (
        logs[1].execution_type == "evaluator" and logs[1].tags == ("docket:r:0",) and logs[1].user_id == "u-1"
    )
    first = dict(seen[0])
    # None is left out; booleans and lists are spelled as the API reads them.
    assert first == {
        "page_size": "400",
        "batch_execution_id": "b-1",
        "has_session_id": "false",
        "tags": "a,b",
    }
    assert seen[1]["cursor"] == "p2"
