"""Import a dataset file from disk with the same parsing and checks as the upload page.

    python manage.py import_dataset PATH [--name NAME] [--map FIELD=COLUMN ...] [--skip-invalid]

On success the last line of standard output is `dataset <id>: <n> rows`. Problems go to standard error as
`line <n>, column <name>: <reason>`; with invalid rows and no --skip-invalid nothing is written and the
exit status is 2, as it is for a file that can't be read at all.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, NoReturn

from django.core.management.base import BaseCommand, CommandParser

from evals import ingest
from evals.ingest import Problem
from evals.services.datasets import DatasetError, dataset_import_file

EXIT_INVALID = 2


class Command(BaseCommand):
    help = "Import a CSV, TSV, JSON Lines, JSON or XLSX file as a dataset."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", help="The file to import.")
        parser.add_argument("--name", default="", help="The dataset's name (default: the file name).")
        parser.add_argument(
            "--map",
            action="append",
            default=[],
            metavar="FIELD=COLUMN",
            help=f"Map a column to a field ({', '.join(ingest.CHOICES)}); repeat for several. "
            "Columns not named are mapped from their names as on the upload page.",
        )
        parser.add_argument(
            "--skip-invalid",
            action="store_true",
            help="Import the valid rows and leave the invalid ones out.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        path = Path(options["path"])
        if not path.is_file():
            self._fail(f"{path}: no such file.")
        overrides: list[tuple[str, str]] = []
        for item in options["map"]:
            field, separator, column = item.partition("=")
            if not separator or not field.strip() or not column:
                self._fail(f"--map {item!r}: write it as FIELD=COLUMN, for example --map response=answer.")
            overrides.append((field.strip(), column))

        def on_problem(problem: Problem) -> None:
            self.stderr.write(str(problem))

        try:
            dataset, report = dataset_import_file(
                path=path,
                name=options["name"],
                overrides=overrides,
                skip_invalid=options["skip_invalid"],
                on_problem=on_problem,
            )
        except DatasetError as error:
            self._fail(f"{path.name}: {error}")
        if dataset is None:
            self._fail(
                f"{report.invalid:,} of {report.rows:,} rows are invalid; nothing was imported. "
                "Fix them, or pass --skip-invalid to import only the valid rows."
            )
        summary = f"{report.valid:,} rows imported"
        if report.invalid:
            summary += f", {report.invalid:,} invalid rows left out"
        if report.blank:
            summary += f", {report.blank:,} blank lines skipped"
        self.stdout.write(f"{path.name}: {summary}.")
        self.stdout.write(f"dataset {dataset.pk}: {dataset.row_count} rows")

    def _fail(self, message: str) -> NoReturn:
        # One sentence and exit status 2, without CommandError's "CommandError: " prefix or a traceback.
        self.stderr.write(message)
        sys.exit(EXIT_INVALID)
