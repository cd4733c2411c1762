"""What the CLI prints: tables, the progress line, problems as messages. Plain functions of documents."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from docket_client.gate import GateResult

PROGRESS_EVERY_SECONDS = 10.0
BAR_WIDTH = 24


# --- Problems ------------------------------------------------------------------------------------------


def problem_lines(status: int, detail: str, errors: Sequence[dict[str, Any]] = ()) -> list[str]:
    """A problem document as lines for stderr: the detail, then one line per error naming what to fix."""
    if status == 401:
        head = f"DOCKET_TOKEN was refused (401): {detail}"
    elif status == 403:
        head = f"DOCKET_TOKEN may not do this (403): {detail}"
    else:
        head = f"Docket answered {status}: {detail}"
    lines = [error_line(error) for error in errors]
    # A validation problem's detail may already be its one error ("name: Field required"): say it once.
    return [head, *(line for line in lines if line.strip() != detail.strip())]


def error_line(error: dict[str, Any]) -> str:
    """ "line 7, column answer: is empty" for a row; "map: ..." for a request field."""
    where = []
    if error.get("line") is not None:
        where.append(f"line {error['line']}")
    if error.get("column"):
        where.append(f"column {error['column']}")
    elif error.get("field"):
        where.append(str(error["field"]))
    message = str(error.get("message", ""))
    return f"  {', '.join(where)}: {message}" if where else f"  {message}"


# --- Progress ------------------------------------------------------------------------------------------


def done_count(counts: dict[str, Any]) -> int:
    return int(counts.get("completed", 0)) + int(counts.get("failed", 0)) + int(counts.get("cancelled", 0))


def progress_line(status: dict[str, Any]) -> str:
    """ "run 12: running, 400/1000 done, 3 failed" (and why it waits, when it does)."""
    counts = status.get("counts") or {}
    line = (
        f"run {status.get('id')}: {status.get('status')}, {done_count(counts)}/{counts.get('total', 0)} done"
    )
    if counts.get("failed"):
        line += f", {counts['failed']} failed"
    if status.get("backoff_reason"):
        line += f" (waiting: {status['backoff_reason']})"
    return line


def progress_bar(status: dict[str, Any], width: int = BAR_WIDTH) -> str:
    counts = status.get("counts") or {}
    total = int(counts.get("total", 0))
    share = done_count(counts) / total if total else 0.0
    filled = round(share * width)
    return f"[{'#' * filled}{'.' * (width - filled)}] {share:4.0%} {progress_line(status)}"


@dataclass
class Progress:
    """On a terminal, one line redrawn in place; in a CI log, a line every ~10 s or each 10% further."""

    stream: TextIO
    tty: bool
    now: Callable[[], float]
    _last_time: float | None = None
    _last_tenth: int = -1
    _last_status: str = ""
    _width: int = field(default=0)

    def show(self, status: dict[str, Any]) -> None:
        if self.tty:
            line = progress_bar(status)
            self.stream.write("\r" + line.ljust(self._width))
            self._width = len(line)
            self.stream.flush()
            return
        counts = status.get("counts") or {}
        total = int(counts.get("total", 0))
        tenth = done_count(counts) * 10 // total if total else 0
        now = self.now()
        due = (
            self._last_time is None
            or tenth > self._last_tenth
            or status.get("status") != self._last_status
            or now - self._last_time >= PROGRESS_EVERY_SECONDS
        )
        if due:
            self.stream.write(progress_line(status) + "\n")
            self.stream.flush()
            self._last_time, self._last_tenth, self._last_status = now, tenth, str(status.get("status"))

    def end(self) -> None:
        if self.tty and self._width:
            self.stream.write("\n")
            self.stream.flush()
            self._width = 0


# --- Tables --------------------------------------------------------------------------------------------


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell; numbers (cells starting with a digit or sign) right-aligned."""
    widths = [max([len(h), *(len(row[i]) for row in rows)]) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            cell.rjust(width) if _numeric(cell) else cell.ljust(width)
            for cell, width in zip(cells, widths, strict=True)
        ).rstrip()

    return "\n".join([line(headers), line(["-" * width for width in widths]), *(line(row) for row in rows)])


def _numeric(cell: str) -> bool:
    return bool(cell) and (cell[0].isdigit() or (cell[0] in "+-" and cell[1:2].isdigit()))


def number(value: Any, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def signed(value: Any) -> str:
    return "-" if value is None else f"{value:+.3f}"


def percent(value: Any) -> str:
    return "-" if value is None else f"{value:.1%}"


def interval(low: Any, high: Any, *, sign: bool = False) -> str:
    show = signed if sign else number
    return "-" if low is None or high is None else f"[{show(low)}, {show(high)}]"


# Where a threshold came from, as run_eval and the pages say it ("pending": 0.5 until the judge's is read).
THRESHOLD_SOURCES = {"judge": "judge's", "default": "default", "pending": "pending", "override": "override"}


def evaluators_table(run: dict[str, Any], gate: GateResult | None = None) -> str:
    headers = ["evaluator", "n", "mean", "95% interval", "pass rate", "threshold"]
    if gate is not None:
        headers.append("gate")
    rows = []
    for row in run.get("evaluators") or []:
        cells = [
            row["name"],
            str(row.get("n", 0)),
            number(row.get("mean")),
            interval(row.get("ci_low"), row.get("ci_high")),
            percent(row.get("pass_rate")),
            f"{number(row.get('threshold'), 2)} {THRESHOLD_SOURCES.get(row.get('threshold_source'), '')}".strip(),
        ]
        if gate is not None:
            cells.append(_gate_cell(gate, row["name"]))
        rows.append(cells)
    if not rows:
        return "(no scores)"
    return table(headers, rows)


def _gate_cell(gate: GateResult, name: str) -> str:
    if gate.failures.get(name):
        return "FAIL"
    return "pass" if name in gate.checked else ""


def comparison_table(comparison: dict[str, Any]) -> str:
    headers = ["evaluator", "pairs", "baseline", "this run", "diff", "95% interval", "verdict"]
    rows = [
        [
            row["name"],
            str(row.get("pairs", 0)),
            number(row.get("mean_a")),
            number(row.get("mean_b")),
            signed(row.get("diff")),
            interval(row.get("ci_low"), row.get("ci_high"), sign=True),
            str(row.get("verdict", "")) + ("  REGRESSION" if row.get("regression") else ""),
        ]
        for row in comparison.get("evaluators") or []
    ]
    if not rows:
        return "(no evaluators in common)"
    return table(headers, rows)


def comparison_text(comparison: dict[str, Any]) -> str:
    a, b = comparison.get("a") or {}, comparison.get("b") or {}
    lines = [
        f"A: run {a.get('id')} ({a.get('name')}, {a.get('status')})   B: run {b.get('id')} ({b.get('name')}, {b.get('status')})",
        f"paired by {comparison.get('paired_by')}: {comparison.get('pairs')} pairs"
        f" ({comparison.get('only_a', 0)} only in A, {comparison.get('only_b', 0)} only in B)",
        comparison_table(comparison),
    ]
    lines += [f"warning: {warning}" for warning in comparison.get("warnings") or []]
    regressions = [row["name"] for row in comparison.get("evaluators") or [] if row.get("regression")]
    if regressions:
        lines.append(f"regression in {', '.join(regressions)} (95% interval of B - A wholly below 0)")
    return "\n".join(lines)


def runs_table(runs: Sequence[dict[str, Any]]) -> str:
    if not runs:
        return "(no runs)"
    headers = ["id", "status", "done", "judge", "tags", "created", "name"]
    rows = [
        [
            str(run.get("id")),
            str(run.get("status")),
            f"{done_count(run.get('counts') or {})}/{(run.get('counts') or {}).get('total', 0)}",
            str((run.get("judge") or {}).get("name", "")),
            ",".join(run.get("tags") or []),
            str(run.get("created_at") or "")[:16].replace("T", " "),
            str(run.get("name") or ""),
        ]
        for run in runs
    ]
    return table(headers, rows)
