"""Write the reviewed items of a run, or of every run of a judge, as a calibration set.

    python manage.py export_reviews --run ID | --judge NAME [--evaluator E] [--format csv|jsonl] [--output PATH]

One record per reviewed (item, evaluator): the example's inputs, the human verdict (`human_label`,
`expected_score`), the judge's score and verdict, reviewer, comment; the same file as the API's
GET /runs/{id}/reviews/export.csv. `--judge` takes Docket's id for the judge, its remote id or its
name. Standard output unless --output is given; bad input is a CommandError (one line, exit status 2).
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from dashboard.http import row_number
from dashboard.management.output import OutputError, chunks_write
from evals.models import Run
from evals.services.calibration_set import (
    FORMATS,
    CalibrationSetError,
    calibration_runs,
    calibration_set_size,
    calibration_set_stream,
    judge_lookup,
    judge_runs,
    reviewed_evaluators,
)

EXIT_INVALID = 2


class Command(BaseCommand):
    help = (
        "Export the reviewed items of a run (--run) or of every run of a judge (--judge) as a calibration "
        "set, CSV or JSON Lines (to standard output unless --output is given)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        which = parser.add_mutually_exclusive_group(required=True)
        which.add_argument("--run", default=None, help="The run's number, as in /runs/<number>/.")
        which.add_argument(
            "--judge", default=None, help="Every run of this judge: its name, remote id or Docket's id."
        )
        parser.add_argument("--evaluator", default=None, help="Only this evaluator's reviews.")
        # Checked in handle() rather than with `choices`, for one clear sentence.
        parser.add_argument("--format", default="csv", help="csv (the default) or jsonl.")
        parser.add_argument("--output", default="", help="Write to this file instead of standard output.")

    def handle(self, *args: Any, **options: Any) -> None:
        fmt = str(options["format"]).strip().lower()
        if fmt not in FORMATS:
            raise _invalid(f'Unknown format "{options["format"]}": use --format csv or --format jsonl.')
        runs, what = self._runs(options)
        evaluator = options["evaluator"]
        if evaluator is not None and evaluator not in reviewed_evaluators(runs):
            known = ", ".join(reviewed_evaluators(runs)) or "none"
            raise _invalid(f'{what} has no evaluator "{evaluator}"; its evaluators: {known}.')
        chunks = calibration_set_stream(runs=runs, fmt=fmt, evaluator=evaluator)
        try:
            path = chunks_write(chunks, output=options["output"], stdout=self.stdout)
        except OutputError as error:
            raise _invalid(str(error)) from error
        if path is None:
            return
        records = calibration_set_size(runs=runs, evaluator=evaluator)
        self.stderr.write(f"{what}: {records:,} reviewed scores written to {path} ({fmt}).")

    def _runs(self, options: dict[str, Any]) -> tuple[list[Run], str]:
        if options["run"] is not None:
            raw = str(options["run"]).strip()
            pk = row_number(raw)
            if pk is None:
                raise _invalid(f'"{raw}" is not a run id: give the number of the run, as in /runs/<number>/.')
            run = Run.objects.select_related("judge").filter(pk=pk).first()
            if run is None:
                raise _invalid(f"There is no run {raw}.")
            return calibration_runs(run=run, pooled=False), f"Run {run.pk}"
        try:
            judge = judge_lookup(str(options["judge"]))
        except CalibrationSetError as error:
            raise _invalid(str(error)) from error
        runs = judge_runs(judge)
        return runs, f"{judge.name} ({len(runs)} reviewed run{'s' if len(runs) != 1 else ''})"


def _invalid(message: str) -> CommandError:
    return CommandError(message, returncode=EXIT_INVALID)
