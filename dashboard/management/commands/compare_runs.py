"""Compare run B against run A from the command line: the CI gate against a baseline.

    manage.py compare_runs A B [--json] [--fail-on-regression] [--threshold X] [--corrected]

Per evaluator: pairs, means, the mean difference B - A with its paired 95% interval, and how many items
improved, regressed or stayed the same. Exit status: 0; 1 with --fail-on-regression when an evaluator's
interval lies wholly below 0; 2 for usage errors (an unknown run, a bad threshold).
"""

from __future__ import annotations

import json
import math
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from evals.models import Run
from evals.selectors.compare import (
    RunComparison,
    comparison_as_dict,
    runs_compare,
    shared_evaluators,
    threshold_source_label,
)


class Command(BaseCommand):
    help = "Compare run B against run A, evaluator by evaluator; optionally fail when B regressed."

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        exit_from_shell = parser.error

        def error(message: str) -> Any:
            # A missing or extra argument is a usage error: exit 2 from call_command too, as from a shell.
            if parser.called_from_command_line:
                exit_from_shell(message)
            raise CommandError(f"Error: {message}", returncode=2)

        parser.error = error  # type: ignore[method-assign]
        return parser

    def add_arguments(self, parser: CommandParser) -> None:
        # Run ids are read as text and checked here, so a bad one exits 2 like every usage error.
        parser.add_argument("a", help="The baseline run's id (A, before).")
        parser.add_argument("b", help="The run to compare with it (B, after).")
        parser.add_argument("--json", action="store_true", help="Print the comparison as JSON.")
        parser.add_argument(
            "--fail-on-regression",
            action="store_true",
            help="Exit 1 when an evaluator's 95%% interval of B - A lies wholly below 0.",
        )
        parser.add_argument(
            "--threshold",
            help="One pass threshold for both runs and every evaluator, instead of each run's own.",
        )
        parser.add_argument(
            "--corrected",
            action="store_true",
            help="Compare both runs with human corrections (reviewed scores as the reviewers said).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        a, b = self.find_run(options["a"], "A"), self.find_run(options["b"], "B")
        overrides = {}
        if options["threshold"] is not None:
            threshold = _number(options["threshold"])
            if threshold is None:
                raise CommandError(
                    f'--threshold must be a number, not "{options["threshold"]}".', returncode=2
                )
            overrides = dict.fromkeys(shared_evaluators(a, b), threshold)
        comparison = runs_compare(a=a, b=b, thresholds=overrides, corrected=options["corrected"])
        if options["json"]:
            self.stdout.write(json.dumps(comparison_as_dict(comparison), indent=2, ensure_ascii=False))
        else:
            self.write_text(comparison)
        regressions = [row.name for row in comparison.evaluators if row.regression]
        if options["fail_on_regression"] and regressions:
            self.stderr.write(
                f"B regressed on {', '.join(regressions)}: the 95% interval of B - A is below 0."
            )
            raise SystemExit(1)

    @staticmethod
    def find_run(raw: str, label: str) -> Run:
        run = None
        if raw.strip().isdigit():
            run = Run.objects.select_related("dataset", "judge").filter(pk=int(raw)).first()
        if run is None:
            raise CommandError(f'There is no run "{raw}" to use as {label}.', returncode=2)
        return run

    def write_text(self, comparison: RunComparison) -> None:
        for label, run in (("A", comparison.a), ("B", comparison.b)):
            self.stdout.write(
                f"{label}: run {run.pk} {str(run)!r}, dataset {run.dataset_id} ({run.dataset.name}), "
                f"judged by {run.judge.name}, {run.status}"
            )
        how = "by row (same dataset)" if comparison.paired_by == "position" else "by input"
        self.stdout.write(
            f"pairs {comparison.pairs} {how}, only_a {comparison.only_a}, only_b {comparison.only_b}, "
            f"duplicated keys {comparison.duplicated_keys_a} in A and {comparison.duplicated_keys_b} in B"
        )
        header = (
            f"{'evaluator':<28} {'pairs':>6} {'mean_a':>7} {'mean_b':>7} {'diff':>7} {'ci_low':>7} {'ci_high':>7}"
            f" {'improved':>8} {'regressed':>9} {'unchanged':>9}  threshold"
        )
        self.stdout.write(header)
        for row in comparison.evaluators:
            threshold = f"{row.threshold_a:g} ({threshold_source_label(row.threshold_source_a)})"
            if row.thresholds_differ:
                threshold += f" / {row.threshold_b:g} in B ({threshold_source_label(row.threshold_source_b)})"
            self.stdout.write(
                f"{row.name[:28]:<28} {row.n:>6} {_fixed(row.mean_a):>7} {_fixed(row.mean_b):>7} "
                f"{_fixed(row.difference.mean, sign=True):>7} {_fixed(row.difference.low):>7} "
                f"{_fixed(row.difference.high):>7} {row.improved:>8} {row.regressed:>9} {row.unchanged:>9}  "
                f"{threshold}  {row.verdict}"
            )
        if not comparison.evaluators:
            self.stdout.write("(the runs share no evaluator)")
        for warning in comparison.warnings:
            self.stdout.write(f"warning: {warning}")


def _fixed(value: float | None, *, sign: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.3f}" if sign else f"{value:.3f}"


def _number(raw: str) -> float | None:
    try:
        value = float(raw)
    except ValueError:
        return None
    return value if math.isfinite(value) else None
