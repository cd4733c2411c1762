"""`docket` against a stand-in Docket at the HTTP seam (httpx.MockTransport): exit codes, output, retries.

The stand-in answers with documents shaped as API.md specifies; time is a counter that sleeping advances,
so backoff and Retry-After are checked without waiting.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from docket_client.api import Clock
from docket_client.cli import Console, run_cli

TOKEN = "dkt_secret-test-token"
ENV = {"DOCKET_URL": "http://docket.test", "DOCKET_TOKEN": TOKEN}


class FakeTime:
    def __init__(self) -> None:
        self.time = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.time += seconds

    def clock(self) -> Clock:
        return Clock(now=lambda: self.time, sleep=self.sleep)


class Outcome:
    def __init__(self, code: int, out: str, err: str, requests: list[httpx.Request], time: FakeTime) -> None:
        self.code, self.out, self.err, self.requests, self.time = code, out, err, requests, time

    @property
    def last_line(self) -> str:
        return self.out.strip().splitlines()[-1]


def docket(
    argv: list[str], handler: Callable[[httpx.Request], httpx.Response], env: dict[str, str] | None = None
) -> Outcome:
    requests: list[httpx.Request] = []
    time = FakeTime()

    def record(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return handler(request)

    out, err = io.StringIO(), io.StringIO()
    code = run_cli(
        argv,
        environ={**ENV, **(env or {})},
        console=Console(out, err),
        transport=httpx.MockTransport(record),
        clock=time.clock(),
    )
    return Outcome(code, out.getvalue(), err.getvalue(), requests, time)


def problem(status: int, detail: str, **extra: Any) -> httpx.Response:
    body = {"type": "about:blank", "title": "x", "status": status, "detail": detail, **extra}
    return httpx.Response(status, json=body, headers={"Content-Type": "application/problem+json"})


EVALUATORS = [
    {
        "name": "politeness",
        "n": 3,
        "mean": 0.7,
        "ci_low": 0.6,
        "ci_high": 0.8,
        "pass_rate": 1.0,
        "threshold": 0.5,
        "threshold_source": "judge",
    },
    {
        "name": "concision",
        "n": 3,
        "mean": 1.0,
        "ci_low": 1.0,
        "ci_high": 1.0,
        "pass_rate": 1.0,
        "threshold": 0.5,
        "threshold_source": "judge",
    },
]


class FakeDocket:
    """Enough of Docket's API for `docket eval`: one dataset, one run that finishes after a few polls."""

    def __init__(
        self, *, final: str = "completed", polls: int = 2, baselines: list[int] | None = None
    ) -> None:
        self.final = final
        self.polls = polls
        self.baselines = baselines if baselines is not None else [5]
        self.comparison_regression = False

    def counts(self, done: int) -> dict[str, int]:
        return {"total": 3, "completed": done, "failed": 0, "cancelled": 0, "pending": 3 - done}

    def run(self, status: str) -> dict[str, Any]:
        finished = status in ("completed", "partial", "failed", "cancelled")
        return {
            "id": 12,
            "name": "",
            "status": status,
            "finished": finished,
            "url": "http://docket.test/runs/12/",
            "dataset_id": 4,
            "judge": {"id": 2, "name": "Support assistant safety"},
            "tags": [],
            "counts": self.counts(3 if finished else 0),
            "evaluator_names": ["politeness", "concision"],
            "evaluators": EVALUATORS if finished else [],
            "last_error": "",
            "backoff_reason": "",
        }

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/api/v1/judges/":
            judge = {
                "id": 2,
                "remote_id": "j-2",
                "name": "Support assistant safety",
                "evaluators": ["politeness", "concision"],
            }
            return httpx.Response(200, json={"items": [judge], "next_cursor": None})
        if path == "/api/v1/datasets/" and request.method == "POST":
            return httpx.Response(201, json={"id": 4, "name": "answers", "row_count": 3})
        if path == "/api/v1/runs/" and request.method == "POST":
            return httpx.Response(201, json=self.run("queued"))
        if path == "/api/v1/runs/12/status/":
            self.polls -= 1
            status = self.final if self.polls <= 0 else "running"
            run = self.run(status)
            return httpx.Response(200, json={key: run[key] for key in ("id", "status", "finished", "counts")})
        if path == "/api/v1/runs/12/":
            return httpx.Response(200, json=self.run(self.final))
        if path == "/api/v1/runs/" and request.method == "GET":
            return httpx.Response(
                200, json={"items": [{"id": i} for i in self.baselines], "next_cursor": None}
            )
        if path == "/api/v1/runs/5/":
            return httpx.Response(200, json={**self.run("completed"), "id": 5})
        if path == "/api/v1/compare/":
            rows = [
                {
                    "name": "politeness",
                    "pairs": 3,
                    "mean_a": 0.9,
                    "mean_b": 0.7,
                    "diff": -0.2,
                    "ci_low": -0.3,
                    "ci_high": -0.1 if self.comparison_regression else 0.1,
                    "verdict": "B worse",
                    "regression": self.comparison_regression,
                }
            ]
            return httpx.Response(
                200,
                json={
                    "a": {"id": 5},
                    "b": {"id": 12},
                    "paired_by": "position",
                    "pairs": 3,
                    "evaluators": rows,
                    "regression": self.comparison_regression,
                    "warnings": [],
                },
            )
        return problem(404, f"no route {path}")


@pytest.fixture
def answers(tmp_path: Path) -> Path:
    path = tmp_path / "answers.csv"
    path.write_text("request,response\nHi?,Hello! Thanks for asking.\n")
    return path


def test_eval_passes_prints_the_table_and_ends_with_the_run_status(answers: Path) -> None:
    result = docket(
        ["eval", str(answers), "--judge", "Support assistant safety", "--fail-under", "0.5"], FakeDocket()
    )

    assert result.code == 0, result.err
    assert "politeness" in result.out and "[0.600, 0.800]" in result.out
    assert "http://docket.test/runs/12/" in result.out
    assert result.last_line == "run 12: completed"
    assert TOKEN not in result.out + result.err


def test_eval_sends_the_file_the_mapping_and_the_tags(answers: Path) -> None:
    result = docket(
        [
            "eval",
            str(answers),
            "--judge",
            "2",
            "--map",
            "response=reply",
            "--tag",
            "nightly",
            "--tag",
            "main",
        ],
        FakeDocket(),
    )

    upload = next(r for r in result.requests if r.url.path == "/api/v1/datasets/")
    body = upload.read()
    assert b'name="map"\r\n\r\nresponse=reply' in body
    assert b'filename="answers.csv"' in body
    create = next(r for r in result.requests if r.url.path == "/api/v1/runs/" and r.method == "POST")
    assert json.loads(create.read()) == {"dataset_id": 4, "judge": "2", "tags": ["nightly", "main"]}
    assert upload.headers["Authorization"] == f"Bearer {TOKEN}"


class ThresholdsLearnedLate(FakeDocket):
    """The run finishes before the worker has read the judge's thresholds: two reads say "pending"."""

    def __init__(self, pending_reads: int) -> None:
        super().__init__()
        self.pending_reads = pending_reads

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v1/runs/12/" and self.pending_reads > 0:
            self.pending_reads -= 1
            pending = [{**row, "threshold_source": "pending"} for row in EVALUATORS]
            return httpx.Response(200, json={**self.run(self.final), "evaluators": pending})
        return super().__call__(request)


def test_the_report_waits_for_the_runs_thresholds_before_printing_pass_rates(answers: Path) -> None:
    result = docket(["eval", str(answers), "--judge", "Support assistant safety"], ThresholdsLearnedLate(2))
    assert result.code == 0, result.err
    assert "pending" not in result.out
    assert "judge" in result.out


def test_the_report_prints_pending_thresholds_after_waiting_30_seconds(answers: Path) -> None:
    result = docket(["eval", str(answers), "--judge", "Support assistant safety"], ThresholdsLearnedLate(99))
    assert result.code == 0, result.err
    assert "pending" in result.out
    assert 30 <= sum(result.time.sleeps) < 60


class JudgeDown(FakeDocket):
    """Every item failed: with `rejected` 0 the judge never answered (a retry could send them all)."""

    def __init__(self, rejected: int) -> None:
        super().__init__(final="failed")
        self.rejected = rejected

    def run(self, status: str) -> dict[str, Any]:
        run = super().run(status)
        if run["finished"]:
            run["counts"] = {"total": 3, "completed": 0, "failed": 3, "cancelled": 0, "pending": 0}
            run["evaluators"] = []
            run["last_error"] = "judge API unreachable: connection refused"
        return run

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v1/runs/12/retry/":
            plan = {"to_send": 3 - self.rejected, "failed": 3, "cancelled": 0, "excluded": self.rejected}
            return httpx.Response(200, json=plan)
        return super().__call__(request)


def test_a_run_the_judge_never_answered_exits_3_not_as_a_failed_gate(answers: Path) -> None:
    result = docket(["eval", str(answers), "--judge", "Support assistant safety"], JudgeDown(rejected=0))
    assert result.code == 3, result.err
    assert "unreachable or failing" in result.err and "connection refused" in result.err
    assert result.last_line == "run 12: failed"


def test_a_run_whose_rows_the_judge_rejected_is_a_failed_gate(answers: Path) -> None:
    result = docket(["eval", str(answers), "--judge", "Support assistant safety"], JudgeDown(rejected=3))
    assert result.code == 1, result.err


def test_polling_waits_longer_each_time_up_to_five_seconds(answers: Path) -> None:
    result = docket(["eval", str(answers), "--judge", "2"], FakeDocket(polls=8))

    assert result.time.sleeps == [1.0, 1.5, 2.25, 3.375, 5.0, 5.0, 5.0]


def test_eval_fails_the_gate_when_a_mean_is_under_fail_under(answers: Path) -> None:
    result = docket(["eval", str(answers), "--judge", "2", "--fail-under", "0.8"], FakeDocket())

    assert result.code == 1
    assert "gate failed: politeness: mean 0.700 is under --fail-under 0.8" in result.err
    assert result.last_line == "run 12: completed"


def test_an_unknown_evaluator_is_a_usage_error_before_anything_is_uploaded(answers: Path) -> None:
    result = docket(
        ["eval", str(answers), "--judge", "2", "--fail-under", "0.8", "--evaluator", "tone"], FakeDocket()
    )

    assert result.code == 2
    assert "politeness, concision" in result.err
    assert not any(r.method == "POST" for r in result.requests)


@pytest.mark.parametrize("final", ["failed", "cancelled"])
def test_a_run_that_failed_or_was_cancelled_fails_the_gate(answers: Path, final: str) -> None:
    result = docket(["eval", str(answers), "--judge", "2"], FakeDocket(final=final))

    assert result.code == 1
    assert f"gate failed: run 12 finished as {final}" in result.err
    assert result.last_line == f"run 12: {final}"


def test_a_regression_against_the_tagged_baseline_fails_the_gate(answers: Path) -> None:
    fake = FakeDocket(baselines=[5, 3])
    fake.comparison_regression = True

    result = docket(["eval", str(answers), "--judge", "2", "--baseline-tag", "release"], fake)

    assert result.code == 1
    assert "REGRESSION" in result.out
    assert "regression against the baseline" in result.err
    listing = next(r for r in result.requests if r.url.path == "/api/v1/runs/" and r.method == "GET")
    assert dict(listing.url.params) == {"tag": "release", "status": "completed", "judge": "2", "limit": "10"}
    compare = next(r for r in result.requests if r.url.path == "/api/v1/compare/")
    assert dict(compare.url.params) == {"a": "5", "b": "12"}


def test_a_baseline_tag_without_a_completed_run_is_an_error_not_a_silent_pass(answers: Path) -> None:
    result = docket(
        ["eval", str(answers), "--judge", "2", "--baseline-tag", "release"], FakeDocket(baselines=[])
    )

    assert result.code == 2
    assert 'no completed run tagged "release" for this judge' in result.err


def test_json_prints_one_parseable_document_and_the_run_line_on_stderr(answers: Path) -> None:
    result = docket(["eval", str(answers), "--judge", "2", "--fail-under", "0.8", "--json"], FakeDocket())

    document = json.loads(result.out)
    assert document["run"]["id"] == 12
    assert document["gate"]["passed"] is False
    assert [row["name"] for row in document["evaluators"]] == ["politeness", "concision"]
    assert result.err.strip().splitlines()[-1] == "run 12: completed"


def test_invalid_rows_exit_2_with_one_line_per_row(answers: Path) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return problem(
            422,
            "2 rows are invalid.",
            errors=[
                {"line": 7, "column": "answer", "field": None, "message": "is empty"},
                {"line": 9, "column": "answer", "field": None, "message": "is empty"},
            ],
        )

    result = docket(["eval", str(answers), "--judge", "2"], handler)

    assert result.code == 2
    assert "line 7, column answer: is empty" in result.err
    assert "line 9, column answer: is empty" in result.err
    assert result.out == ""


def test_a_refused_token_says_so_without_showing_it(answers: Path) -> None:
    result = docket(
        ["eval", str(answers), "--judge", "2"], lambda request: problem(401, "Send a valid API token.")
    )

    assert result.code == 2
    assert "DOCKET_TOKEN was refused (401): Send a valid API token." in result.err
    assert TOKEN not in result.err


def test_a_missing_token_or_file_is_a_usage_error(answers: Path, tmp_path: Path) -> None:
    no_token = docket(["eval", str(answers), "--judge", "2"], FakeDocket(), env={"DOCKET_TOKEN": ""})
    no_file = docket(["eval", str(tmp_path / "missing.csv"), "--judge", "2"], FakeDocket())

    assert no_token.code == 2 and "DOCKET_TOKEN" in no_token.err
    assert no_file.code == 2 and "missing.csv: no such file" in no_file.err
    assert no_token.requests == [] and no_file.requests == []


# --- Retries -------------------------------------------------------------------------------------------


def test_503_then_unreachable_exits_3_after_the_retry_budget() -> None:
    answers = iter([problem(503, "Docket is starting.")])

    def handler(request: httpx.Request) -> httpx.Response:
        answer = next(answers, None)
        if answer is None:
            raise httpx.ConnectError("Connection refused", request=request)
        return answer

    result = docket(["runs"], handler, env={"DOCKET_RETRY_SECONDS": "5"})

    assert result.code == 3
    assert "Docket unreachable" in result.err and "cannot connect" in result.err
    assert len(result.requests) > 2
    assert sum(result.time.sleeps) <= 5


def test_429_waits_as_long_as_retry_after_asks() -> None:
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) == 1:
            return httpx.Response(
                429, json={"status": 429, "detail": "Slow down."}, headers={"Retry-After": "7"}
            )
        return httpx.Response(200, json={"items": [], "next_cursor": None})

    result = docket(["runs"], handler, env={"DOCKET_RETRY_SECONDS": "10"})

    assert result.code == 0, result.err
    assert result.time.sleeps == [7.0]
    assert "(no runs)" in result.out


def test_a_retry_after_beyond_the_budget_gives_up_at_once() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            429, json={"status": 429, "detail": "Slow down."}, headers={"Retry-After": "50"}
        )

    result = docket(["runs"], handler, env={"DOCKET_RETRY_SECONDS": "10"})

    assert result.code == 3
    assert result.time.sleeps == []
    assert "429 Slow down." in result.err


def test_a_run_is_not_created_twice_when_its_post_times_out(answers: Path) -> None:
    fake = FakeDocket()

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v1/runs/" and request.method == "POST":
            raise httpx.ReadTimeout("timed out", request=request)
        return fake(request)

    result = docket(["eval", str(answers), "--judge", "2"], handler, env={"DOCKET_RETRY_SECONDS": "30"})

    assert result.code == 3
    assert [r.url.path for r in result.requests if r.method == "POST"] == [
        "/api/v1/datasets/",
        "/api/v1/runs/",
    ]


# --- runs, export, compare -----------------------------------------------------------------------------


def test_export_streams_to_a_file(tmp_path: Path) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/api/v1/runs/12/export.jsonl"
        return httpx.Response(200, content=b'{"position": 0}\n{"position": 1}\n')

    target = tmp_path / "run-12.jsonl"
    result = docket(["export", "12", "--format", "jsonl", "--output", str(target)], handler)

    assert result.code == 0, result.err
    assert target.read_bytes() == b'{"position": 0}\n{"position": 1}\n'
    assert not (tmp_path / "run-12.jsonl.part").exists()


def test_compare_fails_on_regression_only_when_asked() -> None:
    fake = FakeDocket()
    fake.comparison_regression = True

    plain = docket(["compare", "5", "12"], fake)
    gated = docket(["compare", "5", "12", "--fail-on-regression"], fake)

    assert plain.code == 0
    assert "regression in politeness" in plain.out
    assert gated.code == 1


def test_compare_of_an_unknown_run_is_a_usage_error() -> None:
    result = docket(["compare", "5", "99"], lambda request: problem(404, "No run 99."))

    assert result.code == 2
    assert "No run 99." in result.err


class BreaksOff(httpx.SyncByteStream):
    def __iter__(self) -> Iterator[bytes]:
        yield b'{"position": 0}\n'
        raise httpx.ReadError("connection reset")


def test_an_export_that_breaks_off_exits_3_and_leaves_no_file(tmp_path: Path) -> None:
    target = tmp_path / "run-12.jsonl"

    result = docket(
        ["export", "12", "--format", "jsonl", "--output", str(target)],
        lambda request: httpx.Response(200, stream=BreaksOff()),
    )

    assert result.code == 3
    assert "connection broke" in result.err
    assert list(tmp_path.iterdir()) == []


def test_a_run_unfinished_at_timeout_exits_3_and_says_it_goes_on(answers: Path) -> None:
    result = docket(["eval", str(answers), "--judge", "2", "--timeout", "4"], FakeDocket(polls=100))

    assert result.code == 3
    assert "is still running after 4 s (--timeout); it goes on in Docket" in result.err
    assert result.last_line == "run 12: running"
    assert sum(result.time.sleeps) <= 4
