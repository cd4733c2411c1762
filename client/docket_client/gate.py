"""The CI gate: from the run's document (and the comparison with a baseline), pass or fail, and why.

Pure functions of the API's JSON documents, so the decision can be checked without a server.

- A run that finished `failed` or `cancelled` fails the gate: there is nothing trustworthy to gate on.
- `--fail-under X`: an evaluator fails when its mean is under X, or when it has no scores at all.
  With `--evaluator E` only E is checked; an E the run does not have is a usage error.
- A baseline: an evaluator fails when the comparison marks it `regression` (the 95% paired interval of
  new - baseline lies wholly below 0); with `--evaluator E`, only E's row counts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

FAILED_STATUSES = ("failed", "cancelled")


class GateUsageError(ValueError):
    """The gate was asked for something the run cannot answer (an evaluator it does not have)."""


@dataclass(frozen=True)
class GateResult:
    run_status: str
    # Why the run as a whole fails (failed or cancelled), else "".
    run_failure: str
    # evaluator -> the reasons it failed (empty list: passed or not checked)
    failures: dict[str, list[str]] = field(default_factory=dict)
    checked: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.run_failure and not any(self.failures.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "run_failure": self.run_failure or None,
            "checked": self.checked,
            "failures": {name: reasons for name, reasons in self.failures.items() if reasons},
        }


def evaluator_names(run: dict[str, Any]) -> list[str]:
    """Every evaluator of the run: those with statistics first, then any named without (no scores yet)."""
    names = [row["name"] for row in run.get("evaluators") or []]
    names += [name for name in run.get("evaluator_names") or [] if name not in names]
    return names


def check_evaluator(run: dict[str, Any], evaluator: str | None) -> None:
    if evaluator is None:
        return
    names = evaluator_names(run)
    if names and evaluator not in names:
        raise GateUsageError(
            f'--evaluator "{evaluator}": this run\'s judge has no such evaluator; it has {", ".join(names)}.'
        )


def gate_decide(
    run: dict[str, Any],
    *,
    fail_under: float | None = None,
    evaluator: str | None = None,
    comparison: dict[str, Any] | None = None,
) -> GateResult:
    check_evaluator(run, evaluator)
    status = str(run.get("status", ""))
    run_failure = ""
    if status in FAILED_STATUSES:
        run_failure = f"run {run.get('id')} finished as {status}" + (
            f": {run['last_error']}" if run.get("last_error") else ""
        )
    names = evaluator_names(run)
    stats = {row["name"]: row for row in run.get("evaluators") or []}
    failures: dict[str, list[str]] = {name: [] for name in names}
    checked = [name for name in names if evaluator is None or name == evaluator]
    if fail_under is not None:
        for name in checked:
            reason = _under(stats.get(name), fail_under)
            if reason:
                failures[name].append(reason)
    for row in (comparison or {}).get("evaluators") or []:
        if row.get("regression") and (evaluator is None or row.get("name") == evaluator):
            failures.setdefault(row["name"], []).append(regression_reason(row))
    return GateResult(status, run_failure, failures, checked)


def _under(row: dict[str, Any] | None, fail_under: float) -> str:
    mean = None if row is None else row.get("mean")
    if mean is None:
        return f"no scores, so the mean cannot reach --fail-under {fail_under:g}"
    if mean < fail_under:
        return f"mean {mean:.3f} is under --fail-under {fail_under:g}"
    return ""


def regression_reason(row: dict[str, Any]) -> str:
    return (
        f"regression against the baseline: mean {_number(row.get('mean_a'))} -> {_number(row.get('mean_b'))}, "
        f"difference {_signed(row.get('diff'))} (95% CI {_signed(row.get('ci_low'))} to {_signed(row.get('ci_high'))})"
    )


def _number(value: Any) -> str:
    return "-" if value is None else f"{value:.3f}"


def _signed(value: Any) -> str:
    return "-" if value is None else f"{value:+.3f}"
