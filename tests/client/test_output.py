"""What the CLI prints, from documents: progress lines, problems, tables."""

from __future__ import annotations

import io
from typing import Any

from docket_client.gate import gate_decide
from docket_client.output import Progress, evaluators_table, problem_lines, progress_bar, progress_line


def status(
    done: int, total: int = 1000, failed: int = 0, state: str = "running", **extra: Any
) -> dict[str, Any]:
    counts = {
        "total": total,
        "completed": done - failed,
        "failed": failed,
        "cancelled": 0,
        "pending": total - done,
    }
    return {"id": 12, "status": state, "finished": False, "counts": counts, "backoff_reason": "", **extra}


def test_progress_line_counts_done_and_failed_items() -> None:
    assert progress_line(status(400, failed=3)) == "run 12: running, 400/1000 done, 3 failed"
    assert progress_line(status(0, state="queued")) == "run 12: queued, 0/1000 done"


def test_progress_line_says_why_the_run_waits() -> None:
    line = progress_line(status(10, backoff_reason="the judge API is unreachable"))
    assert line == "run 12: running, 10/1000 done (waiting: the judge API is unreachable)"


def test_progress_bar_fills_with_the_share_done() -> None:
    assert progress_bar(status(500), width=10).startswith("[#####.....]  50% run 12: running, 500/1000")


class Ticks:
    def __init__(self) -> None:
        self.time = 0.0

    def __call__(self) -> float:
        return self.time


def test_in_a_log_progress_prints_at_each_tenth_or_every_ten_seconds() -> None:
    stream, ticks = io.StringIO(), Ticks()
    progress = Progress(stream, tty=False, now=ticks)

    for done, at in ((0, 0.0), (20, 1.0), (90, 2.0), (110, 3.0), (120, 14.0), (130, 15.0)):
        ticks.time = at
        progress.show(status(done))

    assert stream.getvalue().splitlines() == [
        "run 12: running, 0/1000 done",
        "run 12: running, 110/1000 done",
        "run 12: running, 120/1000 done",
    ]


def test_on_a_terminal_progress_redraws_one_line() -> None:
    stream = io.StringIO()
    progress = Progress(stream, tty=True, now=Ticks())

    progress.show(status(100))
    progress.show(status(200))
    progress.end()

    text = stream.getvalue()
    assert text.count("\r") == 2
    assert text.count("\n") == 1
    assert text.rstrip().endswith("200/1000 done")


def test_a_refused_token_names_the_variable() -> None:
    assert problem_lines(401, "Send a valid API token.") == [
        "DOCKET_TOKEN was refused (401): Send a valid API token."
    ]


def test_an_invalid_upload_lists_each_row_and_column() -> None:
    errors = [
        {"line": 7, "column": "answer", "field": None, "message": "is empty"},
        {"line": None, "column": None, "field": "map", "message": "no column named reply"},
    ]

    assert problem_lines(422, "2 problems.", errors) == [
        "Docket answered 422: 2 problems.",
        "  line 7, column answer: is empty",
        "  map: no column named reply",
    ]


def test_the_evaluators_table_shows_interval_pass_rate_and_gate() -> None:
    run = {
        "id": 3,
        "status": "completed",
        "evaluator_names": ["politeness"],
        "evaluators": [
            {
                "name": "politeness",
                "n": 30,
                "mean": 0.62,
                "ci_low": 0.55,
                "ci_high": 0.69,
                "pass_rate": 0.6,
                "threshold": 0.5,
            }
        ],
    }

    lines = evaluators_table(run, gate_decide(run, fail_under=0.8)).splitlines()

    assert lines[0].split() == [
        "evaluator",
        "n",
        "mean",
        "95%",
        "interval",
        "pass",
        "rate",
        "threshold",
        "gate",
    ]
    assert lines[2].split() == ["politeness", "30", "0.620", "[0.550,", "0.690]", "60.0%", "0.50", "FAIL"]


def test_an_error_the_detail_already_says_is_not_repeated() -> None:
    errors = [{"line": None, "column": None, "field": "name", "message": "Field required"}]

    assert problem_lines(422, "name: Field required", errors) == ["Docket answered 422: name: Field required"]
