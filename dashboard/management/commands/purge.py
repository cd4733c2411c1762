"""Delete runs and datasets older than an age, and uploads that were never imported.

    python manage.py purge --older-than 90d [--dry-run]

A run goes when it and every retry of it are older than the age; a dataset goes, with its runs, when it
and its newest run are. Runs in flight and datasets being imported stay. Uploads not imported after 24
hours go too. --dry-run reports the same counts and deletes nothing. Exit status 2 on a bad age.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from evals.services.retention import Deletion, purge_older_than, uploads_purge_abandoned

AGE = re.compile(r"^\s*(\d+)\s*([dh])\s*$", re.IGNORECASE)


def parse_age(text: str) -> timedelta:
    """ "90d" or "12h"; CommandError (exit status 2) for anything else."""
    match = AGE.match(text or "")
    if not match or int(match.group(1)) == 0:
        raise CommandError(
            f'"{text}" is not an age: give a whole number of days or hours above 0, like 90d or 36h.',
            returncode=2,
        )
    number, unit = int(match.group(1)), match.group(2).lower()
    return timedelta(days=number) if unit == "d" else timedelta(hours=number)


class Command(BaseCommand):
    help = "Delete runs and datasets older than --older-than (e.g. 90d, 36h); --dry-run only counts."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--older-than", required=True, help="An age in days or hours: 90d, 36h.")
        parser.add_argument("--dry-run", action="store_true", help="Report what would go; delete nothing.")

    def handle(self, *args: Any, **options: Any) -> None:
        age = parse_age(str(options["older_than"]))
        dry_run = bool(options["dry_run"])
        found = purge_older_than(age=age, by="purge command", dry_run=dry_run)
        uploads = uploads_purge_abandoned(by="purge command", dry_run=dry_run)
        found.add(uploads)
        verb = "would delete" if dry_run else "deleted"
        self.stdout.write(f"{verb}: {self.counts(found)}")
        for run in found.runs:
            self.stdout.write(f'  run {run.pk} "{run}" ({run.created_at:%Y-%m-%d})')
        for dataset in found.datasets:
            self.stdout.write(f'  dataset {dataset.pk} "{dataset.name}" ({dataset.created_at:%Y-%m-%d})')
        if dry_run:
            self.stdout.write("dry run: nothing was deleted")

    @staticmethod
    def counts(found: Deletion) -> str:
        return (
            f"{len(found.runs)} runs, {len(found.datasets)} datasets, {found.items} items, "
            f"{found.scores} scores, {found.examples} examples, {found.uploads} uploads"
        )
