"""Deleting runs and datasets, by hand or by age, and purging uploads that were never imported.

The unit of deletion is a chain: a run and every retry of it go together (a retry alone is a set of
rows whose meaning is "the second try at those failures"; without its run it means nothing, and the
run's merged view would silently change). Each chain is deleted in one transaction, so an error leaves
whole runs, never half of one. A run still in flight is cancelled first; batches already sent may still
answer, and the pump drops results for rows that are gone.

Every deletion writes one log line: who ("retention", "purge command" or a username), which runs and
datasets (ids and names) and how many rows went.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import models, transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from evals.models import Dataset, Item, JudgeApiEvent, RemoteBatch, Review, Run, Score, ShareLink, Upload
from evals.selectors.runs import run_chain, run_root
from evals.services.datasets import dataset_delete
from evals.services.run_options import RunError
from evals.services.runs import run_cancel
from evals.services.uploads import UPLOAD_KEEP, uploads_dir

logger = logging.getLogger(__name__)

# An upload that has not become a dataset after this long is deleted with its file.
UPLOAD_ABANDONED_AFTER = timedelta(hours=24)
# The watchdog runs every minute: retention starts no new deletion after this many seconds of a tick.
RETENTION_BUDGET_SECONDS = 40.0


@dataclass
class Deletion:
    """What a deletion removes (or, for a dry run or a confirmation page, would remove)."""

    runs: list[Run] = field(default_factory=list)
    datasets: list[Dataset] = field(default_factory=list)
    items: int = 0
    scores: int = 0
    batches: int = 0
    share_links: int = 0
    examples: int = 0
    uploads: int = 0

    @property
    def in_flight(self) -> list[Run]:
        return [run for run in self.runs if not run.is_finished]

    @property
    def is_empty(self) -> bool:
        return not (self.runs or self.datasets or self.uploads)

    def add(self, other: Deletion) -> None:
        self.runs.extend(other.runs)
        self.datasets.extend(other.datasets)
        for name in ("items", "scores", "batches", "share_links", "examples", "uploads"):
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def summary(self) -> str:
        """One line for a log or a command's output."""
        runs = ", ".join(f'#{run.pk} "{run}"' for run in self.runs) or "none"
        datasets = ", ".join(f'#{dataset.pk} "{dataset.name}"' for dataset in self.datasets) or "none"
        return (
            f"runs {runs}; datasets {datasets}; {self.items} items, {self.scores} scores, "
            f"{self.batches} remote batches, {self.share_links} share links, {self.examples} examples, "
            f"{self.uploads} uploads"
        )


def _log(by: str, what: Deletion) -> None:
    if not what.is_empty:
        logger.info("deleted by %s: %s", by, what.summary())


# --- Runs ---------------------------------------------------------------------------------------------


def run_chains(runs: Iterable[Run]) -> list[list[Run]]:
    """The chains (a run and all its retries, oldest first) that `runs` belong to, each once."""
    chains: dict[int, list[Run]] = {}
    for run in runs:
        root = run_root(run)
        if not any(root.pk == member.pk for chain in chains.values() for member in chain):
            ids = run_chain(root)
            # Noise checks of the chain's runs (and their retries) go with it: they only mean something
            # beside the run they re-judge.
            noise = list(Run.objects.filter(noise_of_id__in=ids).order_by("pk"))
            for check in noise:
                ids += [pk for pk in run_chain(check) if pk not in ids]
            chains[root.pk] = list(
                Run.objects.filter(pk__in=ids).select_related("dataset", "judge").order_by("pk")
            )
    return list(chains.values())


def _count(run_ids: list[int]) -> Deletion:
    return Deletion(
        items=Item.objects.filter(run_id__in=run_ids).count(),
        scores=Score.objects.filter(run_id__in=run_ids).count(),
        batches=RemoteBatch.objects.filter(run_id__in=run_ids).count(),
        share_links=ShareLink.objects.filter(run_id__in=run_ids).count(),
    )


def run_deletion_plan(*, runs: Iterable[Run]) -> Deletion:
    """What deleting `runs` (with their chains) would remove: for the confirmation page."""
    chains = run_chains(runs)
    plan = _count([run.pk for chain in chains for run in chain])
    plan.runs = [run for chain in chains for run in chain]
    return plan


def _raw_delete(queryset: models.QuerySet[Any]) -> int:
    """One DELETE statement. QuerySet.delete() would first load every row to look for dependents; the
    callers delete the dependents themselves, children before parents."""
    return queryset._raw_delete(queryset.db)


def _delete_chain(chain: list[Run]) -> Deletion:
    """Delete one chain and every row that points at it, in one transaction."""
    for run in chain:
        if not run.is_finished:
            # RunError: it finished in the meantime.
            with contextlib.suppress(RunError):
                run_cancel(run=run)
    ids = [run.pk for run in chain]
    with transaction.atomic():
        deleted = Deletion(runs=chain)
        deleted.share_links = _raw_delete(ShareLink.objects.filter(run_id__in=ids))
        # Items before scores (foreign keys are checked at commit): a score the pump committed while the
        # items were being deleted is caught by the second statement, which sees it.
        _raw_delete(Review.objects.filter(run_id__in=ids))
        deleted.items = _raw_delete(Item.objects.filter(run_id__in=ids))
        deleted.scores = _raw_delete(Score.objects.filter(run_id__in=ids))
        deleted.batches = _raw_delete(RemoteBatch.objects.filter(run_id__in=ids))
        # API errors that named the run: kept for a day anyway, and their messages may quote its rows.
        _raw_delete(JudgeApiEvent.objects.filter(run_id__in=ids))
        Run.objects.filter(pk__in=ids).delete()
    return deleted


def run_delete(*, runs: Iterable[Run], by: str) -> Deletion:
    """Delete runs with their retries (whole chains), their items, scores, remote batches and share links.

    A run still in flight is cancelled first. One transaction per chain.
    """
    deleted = Deletion()
    try:
        for chain in run_chains(runs):
            deleted.add(_delete_chain(chain))
    finally:
        _log(by, deleted)
    return deleted


# --- Datasets -----------------------------------------------------------------------------------------


def dataset_deletion_plan(*, dataset: Dataset) -> Deletion:
    """What deleting `dataset` would remove: its rows, its runs (with their chains), its uploads."""
    plan = run_deletion_plan(runs=dataset.runs.all())
    plan.datasets = [dataset]
    plan.examples = dataset.examples.count()
    plan.uploads = _dataset_uploads(dataset).count()
    return plan


def _dataset_uploads(dataset: Dataset) -> models.QuerySet[Upload]:
    # An upload still importing goes back to "checked" when its dataset is deleted (dataset_delete):
    # that is how an import is cancelled, and the file can be imported again.
    return Upload.objects.filter(dataset=dataset).exclude(status=Upload.Status.IMPORTING)


def _delete_uploads(uploads: models.QuerySet[Upload]) -> int:
    count = 0
    for upload in uploads.only("id", "path"):
        Path(upload.path).unlink(missing_ok=True)
        upload.delete()
        count += 1
    return count


def _delete_dataset(dataset: Dataset) -> Deletion:
    deleted = Deletion()
    for chain in run_chains(dataset.runs.all()):
        deleted.add(_delete_chain(chain))
    deleted.examples = dataset.examples.count()
    deleted.uploads = _delete_uploads(_dataset_uploads(dataset))
    # Raises DatasetError if a run of it was started meanwhile: the dataset stays, whole.
    dataset_delete(dataset=dataset)
    deleted.datasets = [dataset]
    return deleted


def dataset_delete_with_runs(*, dataset: Dataset, by: str) -> Deletion:
    """Delete a dataset, its rows and uploaded files, and every run of it (cancelled first if in flight)."""
    deleted = Deletion()
    try:
        deleted.add(_delete_dataset(dataset))
    finally:
        _log(by, deleted)
    return deleted


# --- Retention ----------------------------------------------------------------------------------------


def _due_datasets(cutoff: datetime) -> models.QuerySet[Dataset]:
    """Datasets created before the cutoff whose newest run (if any) was too, and none in flight."""
    recent_or_active = Run.objects.filter(dataset=OuterRef("pk")).filter(
        Q(created_at__gte=cutoff) | Q(status__in=[Run.Status.QUEUED, Run.Status.RUNNING])
    )
    return (
        Dataset.objects.filter(created_at__lt=cutoff)
        .exclude(status=Dataset.Status.IMPORTING)
        .exclude(Exists(recent_or_active))
        .order_by("created_at", "pk")
    )


def _due_chains(cutoff: datetime, *, skip_datasets: set[int]) -> Iterator[list[Run]]:
    """Chains whose newest run was created before the cutoff, none in flight, of datasets that stay.

    A generator, so that a budgeted purge looks only at the chains it has time to delete.
    """
    roots = list(
        Run.objects.filter(retry_of__isnull=True, created_at__lt=cutoff)
        .exclude(dataset_id__in=skip_datasets)
        .order_by("created_at", "pk")
        .values_list("pk", flat=True)
    )
    for root_id in roots:
        root = Run.objects.filter(pk=root_id).first()
        if root is None:
            continue  # Deleted meanwhile (by hand, or by an overlapping watchdog).
        chain = run_chains([root])[0]
        if all(run.created_at < cutoff and run.is_finished for run in chain):
            yield chain


def purge_older_than(
    *, age: timedelta, by: str, dry_run: bool = False, budget_seconds: float | None = None
) -> Deletion:
    """Delete runs and datasets older than `age`.

    A run goes when it and every retry of it were created before the cutoff. A dataset goes, with its
    runs, when it was created before the cutoff and so was its newest run: a dataset still being used
    stays. Runs in flight and datasets being imported are left alone. With a budget, no new deletion
    starts after that many seconds (the rest waits for the next call).
    """
    cutoff = timezone.now() - age
    started = time.monotonic()

    def out_of_time() -> bool:
        return budget_seconds is not None and time.monotonic() - started > budget_seconds

    datasets = list(_due_datasets(cutoff))
    chains = _due_chains(cutoff, skip_datasets={dataset.pk for dataset in datasets})
    if dry_run:
        plan = Deletion()
        for dataset in datasets:
            plan.add(dataset_deletion_plan(dataset=dataset))
        for chain in chains:
            counted = _count([run.pk for run in chain])
            counted.runs = chain
            plan.add(counted)
        return plan
    deleted = Deletion()
    try:
        for chain in chains:
            if out_of_time():
                break
            deleted.add(_delete_chain(chain))
        for dataset in datasets:
            if out_of_time():
                break
            deleted.add(_delete_dataset(dataset))
    finally:
        _log(by, deleted)
    return deleted


def retention_days() -> int | None:
    days = settings.DOCKET_RETENTION_DAYS
    # Never a cutoff in the future: that would delete everything.
    return days if days and days > 0 else None


def retention_apply() -> Deletion:
    """What the watchdog does each minute: DOCKET_RETENTION_DAYS (when set), then abandoned uploads."""
    deleted = Deletion()
    days = retention_days()
    if days:
        deleted.add(
            purge_older_than(
                age=timedelta(days=days), by="retention", budget_seconds=RETENTION_BUDGET_SECONDS
            )
        )
    deleted.add(uploads_purge_abandoned(by="retention"))
    return deleted


# --- Uploads ------------------------------------------------------------------------------------------


def uploads_purge_abandoned(
    *, by: str, older_than: timedelta = UPLOAD_ABANDONED_AFTER, dry_run: bool = False
) -> Deletion:
    """Delete uploads that never became a dataset (or whose dataset is gone) after `older_than`, with
    their files; temporary files an upload request left behind when it died half-way; and the files of
    imported uploads past UPLOAD_KEEP (without waiting for the next upload, when `uploads_purge_stale`
    runs)."""
    cutoff = timezone.now() - older_than
    abandoned = Upload.objects.filter(created_at__lt=cutoff, dataset__isnull=True).exclude(
        status=Upload.Status.IMPORTING
    )
    # Only the upload handler's temporary files (tmp*.upload*): a docket-* file no row here points at may
    # belong to another database sharing the folder (a test run next to a development server).
    known = set(Upload.objects.values_list("path", flat=True))
    strays = [
        path
        for path in uploads_dir().glob("tmp*.upload*")
        if path.is_file() and str(path) not in known and path.stat().st_mtime < cutoff.timestamp()
    ]
    # An imported file is kept a while for the download of its invalid rows (UPLOAD_KEEP), then goes.
    kept = Upload.objects.filter(created_at__lt=timezone.now() - UPLOAD_KEEP, dataset__isnull=False).exclude(
        status=Upload.Status.IMPORTING
    )
    expired = [Path(path) for path in kept.values_list("path", flat=True) if Path(path).is_file()]
    if dry_run:
        return Deletion(uploads=abandoned.count() + len(strays) + len(expired))
    deleted = Deletion(uploads=_delete_uploads(abandoned))
    for path in strays + expired:
        path.unlink(missing_ok=True)
        deleted.uploads += 1
    _log(by, deleted)
    return deleted
