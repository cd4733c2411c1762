"""Export a run's results, the same columns as the run page's export, streamed to a file or standard output.

    python manage.py export_run RUN_ID [--format csv|jsonl] [--output PATH] [--corrected]

Rows are in position order, every item of the run. A bad run id, format or output path is one line
on standard error and exit status 2.
"""

from __future__ import annotations

import sys
from typing import Any, NoReturn

from django.core.management.base import BaseCommand, CommandParser
from django.http import QueryDict

from dashboard.management.output import OutputError, chunks_write
from evals.models import Run
from evals.selectors.export import FORMATS, export_stream
from evals.selectors.results import ResultsQuery

EXIT_INVALID = 2


class Command(BaseCommand):
    help = "Export a run's results as CSV or JSON Lines (to standard output unless --output is given)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("run_id", help="The run's number, as in /runs/<number>/.")
        # Checked in handle() rather than with `choices`, for one clear sentence and exit status 2.
        parser.add_argument("--format", default="csv", help="csv (the default) or jsonl.")
        parser.add_argument("--output", default="", help="Write to this file instead of standard output.")
        parser.add_argument(
            "--corrected", action="store_true", help="Add each score's value with human corrections."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        raw_id = str(options["run_id"]).strip()
        fmt = str(options["format"]).strip().lower()
        if fmt not in FORMATS:
            self._fail(f'Unknown format "{options["format"]}": use --format csv or --format jsonl.')
        if not raw_id.isdigit():
            self._fail(f'"{raw_id}" is not a run id: give the number of the run, as in /runs/<number>/.')
        run = Run.objects.select_related("dataset", "judge").filter(pk=int(raw_id)).first()
        if run is None:
            self._fail(f"There is no run {raw_id}.")
        query = ResultsQuery.from_params(QueryDict("sort=position"), run=run)
        chunks = export_stream(run, query, fmt=fmt, corrected=options["corrected"])
        try:
            path = chunks_write(chunks, output=options["output"], stdout=self.stdout)
        except OutputError as error:
            self._fail(str(error))
        if path is None:
            return
        self.stderr.write(f"Run {run.pk}: {run.total_count:,} items written to {path} ({fmt}).")

    def _fail(self, message: str) -> NoReturn:
        self.stderr.write(message)
        sys.exit(EXIT_INVALID)
