"""`docket`: upload a dataset, run a judge over it, wait, print the scores and gate a CI job on them.

Exit codes (the contract CI scripts rely on):
    0  passed
    1  the gate failed: a mean under --fail-under, a regression against the baseline, or the run
       finished failed or cancelled
    2  usage or data: a missing setting or argument, a file not found, a problem Docket answered
       (bad rows, unknown judge, token refused...)
    3  Docket (or the judge behind it) unreachable: connection errors, timeouts, 5xx for the whole
       retry budget (DOCKET_RETRY_SECONDS, default 60), or the run not finished within --timeout

Results go to stdout; progress, warnings and errors to stderr. Once a run exists, the last line of
stdout is `run <id>: <status>`; with --json stdout holds only the JSON document and that line goes to
stderr instead.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import httpx

from docket_client import __version__
from docket_client.api import DEFAULT_RETRY_SECONDS, ApiProblem, Clock, DocketAPI, Unreachable
from docket_client.gate import FAILED_STATUSES, GateResult, GateUsageError, check_evaluator, gate_decide
from docket_client.junit import junit_write
from docket_client.output import (
    Progress,
    comparison_text,
    evaluators_table,
    problem_lines,
    runs_table,
)

EXIT_OK = 0
EXIT_GATE = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_INTERRUPTED = 130
POLL_FIRST = 1.0
# How long the report waits for a finished run's thresholds to be learned (see `settled`).
THRESHOLDS_WAIT = 30.0
POLL_MAX = 5.0
BASELINE_CANDIDATES = 10


class UsageError(Exception):
    """The command cannot go on as asked; the message says what to change (exit 2)."""


@dataclass
class Console:
    out: TextIO
    err: TextIO

    def say(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    def note(self, text: str) -> None:
        print(text, file=self.err, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(argv, environ=os.environ, console=Console(sys.stdout, sys.stderr))


def run_cli(
    argv: Sequence[str] | None,
    *,
    environ: Mapping[str, str],
    console: Console,
    transport: httpx.BaseTransport | None = None,
    clock: Clock | None = None,
) -> int:
    """The whole command with its inputs passed in, so tests can give a transport and a clock."""
    try:
        with contextlib.redirect_stderr(console.err), contextlib.redirect_stdout(console.out):
            args = build_parser().parse_args(argv)
    except SystemExit as stop:  # argparse: --help, --version or a usage error (already printed)
        return stop.code if isinstance(stop.code, int) else EXIT_USAGE
    try:
        with connect(args, environ, transport=transport, clock=clock) as api:
            code: int = args.handler(api, args, console)
            return code
    except (UsageError, GateUsageError) as error:
        console.note(f"docket: {error}")
        return EXIT_USAGE
    except ApiProblem as problem:
        for line in problem_lines(problem.status, problem.detail, problem.errors):
            console.note(line)
        return EXIT_UNREACHABLE if problem.status >= 500 or problem.status == 429 else EXIT_USAGE
    except Unreachable as error:
        console.note(f"docket: Docket unreachable: {error}")
        return EXIT_UNREACHABLE
    except httpx.TransportError as error:  # a download that broke off mid-way (not retried: bytes were out)
        console.note(f"docket: Docket unreachable: the connection broke ({type(error).__name__}: {error})")
        return EXIT_UNREACHABLE
    except KeyboardInterrupt:
        console.note("docket: interrupted (a run already started goes on in Docket).")
        return EXIT_INTERRUPTED


def connect(
    args: argparse.Namespace,
    environ: Mapping[str, str],
    *,
    transport: httpx.BaseTransport | None,
    clock: Clock | None,
) -> DocketAPI:
    url = args.url or environ.get("DOCKET_URL", "")
    token = args.token or environ.get("DOCKET_TOKEN", "")
    if not url:
        raise UsageError(
            "set DOCKET_URL to the Docket server's address (e.g. https://docket.example.com) or pass --url."
        )
    if not url.startswith(("http://", "https://")):
        raise UsageError(f"DOCKET_URL must start with http:// or https://, not {url!r}.")
    if not token:
        raise UsageError(
            "set DOCKET_TOKEN to an API token (made on Docket's API tokens page) or pass --token."
        )
    raw_budget = environ.get("DOCKET_RETRY_SECONDS", "")
    try:
        budget = float(raw_budget) if raw_budget else DEFAULT_RETRY_SECONDS
    except ValueError:
        raise UsageError(f"DOCKET_RETRY_SECONDS must be a number of seconds, not {raw_budget!r}.") from None
    return DocketAPI(url, token, retry_seconds=budget, transport=transport, clock=clock or Clock())


# --- Arguments -----------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", help="Docket's address (default: $DOCKET_URL)")
    common.add_argument(
        "--token",
        help="API token (default: $DOCKET_TOKEN; prefer the variable, a flag shows in process lists)",
    )
    parser = argparse.ArgumentParser(
        prog="docket",
        description="Run Docket evaluations from a terminal or a CI job, and gate on their scores.",
        epilog="Exit codes: 0 passed, 1 gate failed, 2 usage or data error, 3 Docket unreachable.",
    )
    parser.add_argument("--version", action="version", version=f"docket-client {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    evaluate = commands.add_parser(
        "eval", parents=[common], help="upload a file, run a judge over it, wait, gate on the scores"
    )
    evaluate.add_argument("file", type=Path, help="CSV, TSV, JSON Lines, JSON or XLSX file of examples")
    evaluate.add_argument("--judge", required=True, help="judge id, remote id or name")
    evaluate.add_argument(
        "--map",
        action="append",
        default=[],
        metavar="FIELD=COLUMN",
        help="map a field to a column (repeatable)",
    )
    evaluate.add_argument("--tag", action="append", default=[], help="tag the run (repeatable)")
    evaluate.add_argument("--name", default="", help="the run's name")
    evaluate.add_argument(
        "--fail-under", type=float, metavar="X", help="fail when an evaluator's mean is under X"
    )
    evaluate.add_argument("--evaluator", metavar="E", help="gate on evaluator E only")
    baseline = evaluate.add_mutually_exclusive_group()
    baseline.add_argument(
        "--baseline", type=int, metavar="RUN_ID", help="fail on a regression against this run"
    )
    baseline.add_argument(
        "--baseline-tag",
        metavar="TAG",
        help="fail on a regression against the newest completed run tagged TAG",
    )
    evaluate.add_argument("--junit", type=Path, metavar="PATH", help="write a JUnit XML report")
    evaluate.add_argument(
        "--json",
        action="store_true",
        help="print one JSON document (the `run <id>: <status>` line goes to stderr)",
    )
    evaluate.add_argument(
        "--timeout", type=float, metavar="SECONDS", help="give up waiting after SECONDS (exit 3)"
    )
    evaluate.set_defaults(handler=command_eval)

    runs = commands.add_parser("runs", parents=[common], help="list runs, newest first")
    runs.add_argument("--tag")
    runs.add_argument("--status")
    runs.add_argument("--limit", type=int, default=20)
    runs.add_argument("--json", action="store_true")
    runs.set_defaults(handler=command_runs)

    export = commands.add_parser("export", parents=[common], help="download a run's items and scores")
    export.add_argument("run", type=int, metavar="RUN")
    export.add_argument("--format", choices=("csv", "jsonl"), default="csv")
    export.add_argument("--output", type=Path, metavar="PATH", help="file to write (default: stdout)")
    export.set_defaults(handler=command_export)

    compare = commands.add_parser("compare", parents=[common], help="compare run B against run A")
    compare.add_argument("a", type=int, metavar="A")
    compare.add_argument("b", type=int, metavar="B")
    compare.add_argument("--json", action="store_true")
    compare.add_argument(
        "--fail-on-regression", action="store_true", help="exit 1 when B regresses against A"
    )
    compare.set_defaults(handler=command_compare)
    return parser


# --- docket eval ---------------------------------------------------------------------------------------


@dataclass
class RunState:
    """The run once it exists: its id and last known status, for the closing `run <id>: <status>` line."""

    id: int | None = None
    status: str = ""


def command_eval(api: DocketAPI, args: argparse.Namespace, console: Console) -> int:
    state = RunState()
    try:
        return _evaluate(api, args, console, state)
    finally:
        if state.id is not None:
            print(
                f"run {state.id}: {state.status}", file=console.err if args.json else console.out, flush=True
            )


def _evaluate(api: DocketAPI, args: argparse.Namespace, console: Console, state: RunState) -> int:
    _check_arguments(args)
    # What can be checked before anything is uploaded, so a mistyped gate costs no run.
    judge = _known_judge(api, args.judge) if args.evaluator or args.baseline_tag else None
    _check_judge_evaluator(judge, args.evaluator)
    baseline_id = _baseline_run(api, args.baseline) if args.baseline is not None else None
    if args.baseline_tag and judge is not None:
        baseline_id = baseline_by_tag(
            api, args.baseline_tag, judge_id=judge["id"], judge_name=judge.get("name")
        )

    dataset = api.dataset_upload(args.file, mapping=args.map)
    console.note(f"dataset {dataset.get('id')}: {dataset.get('name')}, {dataset.get('row_count')} rows")
    run = api.run_create(dataset_id=dataset["id"], judge=args.judge, name=args.name, tags=args.tag)
    state.id, state.status = run["id"], run["status"]
    console.note(f"run {run['id']} started: {run.get('url')}")
    check_evaluator(run, args.evaluator)
    if args.baseline_tag and baseline_id is None:  # the judge is not listed: known from the run now
        judge_of_run = run.get("judge") or {}
        baseline_id = baseline_by_tag(
            api,
            args.baseline_tag,
            judge_id=judge_of_run.get("id"),
            judge_name=judge_of_run.get("name"),
            exclude=run["id"],
        )

    if not wait_for(api, run["id"], console, state, timeout=args.timeout):
        console.note(
            f"docket: run {run['id']} is still {state.status} after {args.timeout:g} s (--timeout); "
            f"it goes on in Docket: {run.get('url')}"
        )
        return EXIT_UNREACHABLE
    run = settled(api, run["id"])
    state.status = run["status"]
    if judge_unavailable(api, run):
        console.note(
            f"docket: the judge could not judge any item of run {run['id']}, and rejected none of them: "
            f"it was unreachable or failing ({run.get('last_error') or 'no message'}). Nothing is wrong "
            f"with the rows; retry the run in Docket once the judge answers: {run.get('url')}"
        )
        return EXIT_UNREACHABLE
    return _report(api, args, console, run, baseline_id)


def judge_unavailable(api: DocketAPI, run: dict[str, Any]) -> bool:
    """A failed run with no item judged whose every failure a retry could fix (none rejected by the
    judge, none missing an input): the judge never answered, which is exit 3, not a failed gate."""
    counts = run.get("counts") or {}
    if run.get("status") != "failed" or counts.get("completed") or not counts.get("failed"):
        return False
    plan = api.retry_plan(run["id"])
    return not plan.get("excluded") and plan.get("to_send") == counts.get("failed")


def settled(api: DocketAPI, run_id: int) -> dict[str, Any]:
    """The finished run once its pass thresholds are learned (a worker task reads them from the judge
    right after the first item completes; a short run can finish first). Waits at most
    THRESHOLDS_WAIT seconds: after that the report prints what it has, marked "pending"."""
    clock = api.clock
    deadline = clock.now() + THRESHOLDS_WAIT
    while True:
        run = api.run(run_id)
        pending = any(row.get("threshold_source") == "pending" for row in run.get("evaluators") or [])
        if not pending or not (run.get("counts") or {}).get("completed") or clock.now() >= deadline:
            return run
        clock.sleep(1.0)


def _check_arguments(args: argparse.Namespace) -> None:
    if not args.file.is_file():
        raise UsageError(f"{args.file}: no such file.")
    if any("=" not in pair for pair in args.map):
        raise UsageError("--map wants FIELD=COLUMN, e.g. --map response=answer.")
    if args.fail_under is not None and not math.isfinite(args.fail_under):
        raise UsageError("--fail-under wants a number, such as 0.8.")
    if args.evaluator and args.fail_under is None and args.baseline is None and not args.baseline_tag:
        raise UsageError("--evaluator names the evaluator to gate on: give --fail-under or a baseline too.")


def _check_judge_evaluator(judge: dict[str, Any] | None, evaluator: str | None) -> None:
    names = (judge or {}).get("evaluators") or []
    if judge is not None and evaluator and evaluator not in names:
        raise UsageError(
            f'--evaluator "{evaluator}": judge "{judge.get("name")}" has no such evaluator; '
            f"it has {', '.join(names)}."
        )


def _report(
    api: DocketAPI, args: argparse.Namespace, console: Console, run: dict[str, Any], baseline_id: int | None
) -> int:
    """Compare with the baseline, decide the gate, print and write the reports; the exit code."""
    comparison = None
    if baseline_id is not None and run["status"] not in FAILED_STATUSES:
        comparison = api.compare(baseline_id, run["id"])
    gate = gate_decide(run, fail_under=args.fail_under, evaluator=args.evaluator, comparison=comparison)
    if args.junit:
        junit_write(args.junit, run, gate)
    if args.json:
        console.say(json.dumps(eval_document(run, gate, baseline_id, comparison), indent=2))
    else:
        gated = args.fail_under is not None or comparison is not None
        _print_eval(console, run, gate if gated else None, comparison)
    if run["status"] == "partial":
        console.note(f"warning: run {run['id']} is partial: some items have no scores ({run.get('counts')}).")
    for line in gate_messages(gate):
        console.note(line)
    return EXIT_OK if gate.passed else EXIT_GATE


def _known_judge(api: DocketAPI, reference: str) -> dict[str, Any] | None:
    """The judge as /judges/ lists it, to check --evaluator and find a baseline before uploading anything."""
    wanted = reference.strip()
    for judge in api.judges():
        if wanted in (str(judge.get("id")), judge.get("remote_id"), judge.get("name")):
            return judge
    return None  # not listed: Docket decides when the run is made


def _baseline_run(api: DocketAPI, run_id: int) -> int:
    try:
        api.run(run_id)
    except ApiProblem as problem:
        if problem.status == 404:
            raise UsageError(f"--baseline {run_id}: there is no such run.") from None
        raise
    return run_id


def baseline_by_tag(
    api: DocketAPI, tag: str, *, judge_id: Any, judge_name: Any, exclude: int | None = None
) -> int:
    """The newest completed run tagged `tag` for this judge; none is an error, never a silent pass."""
    page = api.runs(tag=tag, status="completed", judge=judge_id, limit=BASELINE_CANDIDATES)
    candidates = [run["id"] for run in page.get("items") or [] if run.get("id") != exclude]
    if not candidates:
        raise UsageError(
            f'no completed run tagged "{tag}" for this judge ({judge_name}); nothing to compare with.'
        )
    return int(max(candidates))


def wait_for(
    api: DocketAPI, run_id: int, console: Console, state: RunState, *, timeout: float | None
) -> bool:
    """Poll the cheap status until the run finishes (True) or --timeout passes (False)."""
    clock = api.clock
    progress = Progress(console.err, tty=_is_tty(console.err), now=clock.now)
    started = clock.now()
    interval = POLL_FIRST
    try:
        while True:
            status = api.run_status(run_id)
            state.status = status["status"]
            progress.show(status)
            if status.get("finished"):
                return True
            if timeout is not None and clock.now() - started + interval > timeout:
                return False
            clock.sleep(interval)
            interval = min(interval * 1.5, POLL_MAX)
    finally:
        progress.end()


def _is_tty(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def _print_eval(
    console: Console, run: dict[str, Any], gate: GateResult | None, comparison: dict[str, Any] | None
) -> None:
    title = " ".join(
        str(part)
        for part in (f"run {run['id']}", run.get("name"), f"({(run.get('judge') or {}).get('name', '')})")
        if part
    )
    console.say(f"{title}: {run['status']}")
    console.say(evaluators_table(run, gate))
    console.say(str(run.get("url") or ""))
    if comparison is not None:
        console.say("")
        console.say(f"compared with baseline run {(comparison.get('a') or {}).get('id')}:")
        console.say(comparison_text(comparison))


def gate_messages(gate: GateResult) -> list[str]:
    lines = [f"gate failed: {gate.run_failure}"] if gate.run_failure else []
    lines += [
        f"gate failed: {name}: {reason}" for name, reasons in gate.failures.items() for reason in reasons
    ]
    return lines


def eval_document(
    run: dict[str, Any], gate: GateResult, baseline_id: int | None, comparison: dict[str, Any] | None
) -> dict[str, Any]:
    return {
        "run": run,
        "evaluators": run.get("evaluators") or [],
        "gate": gate.as_dict(),
        "baseline": baseline_id,
        "comparison": comparison,
    }


# --- docket runs, export, compare ----------------------------------------------------------------------


def command_runs(api: DocketAPI, args: argparse.Namespace, console: Console) -> int:
    page = api.runs(tag=args.tag, status=args.status, limit=args.limit)
    if args.json:
        console.say(json.dumps(page, indent=2))
    else:
        console.say(runs_table(page.get("items") or []))
    return EXIT_OK


def command_export(api: DocketAPI, args: argparse.Namespace, console: Console) -> int:
    with api.export(args.run, args.format) as response:
        if args.output is None:
            _copy(response.iter_bytes(), console.out)
            return EXIT_OK
        # Written beside the target and renamed at the end: a broken download leaves no half file.
        partial = args.output.with_name(args.output.name + ".part")
        try:
            with partial.open("wb") as handle:
                for chunk in response.iter_bytes():
                    handle.write(chunk)
            partial.replace(args.output)
        finally:
            partial.unlink(missing_ok=True)
    console.note(f"run {args.run}: wrote {args.output}")
    return EXIT_OK


def _copy(chunks: Iterator[bytes], stream: TextIO) -> None:
    binary = getattr(stream, "buffer", None)
    for chunk in chunks:
        if binary is not None:
            binary.write(chunk)
        else:
            stream.write(chunk.decode("utf-8"))
    (binary or stream).flush()


def command_compare(api: DocketAPI, args: argparse.Namespace, console: Console) -> int:
    try:
        comparison = api.compare(args.a, args.b)
    except ApiProblem as problem:
        if problem.status == 404:
            raise UsageError(f"compare {args.a} {args.b}: {problem.detail}") from None
        raise
    if args.json:
        console.say(json.dumps(comparison, indent=2))
    else:
        console.say(comparison_text(comparison))
    if args.fail_on_regression and comparison.get("regression"):
        console.note(f"gate failed: run {args.b} regresses against run {args.a}.")
        return EXIT_GATE
    return EXIT_OK
