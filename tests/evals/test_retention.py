"""Deleting runs and datasets (by hand, by `purge`, by DOCKET_RETENTION_DAYS) and abandoned uploads."""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from django.apps import apps
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, models
from django.utils import timezone
from pytest_django.fixtures import Settings as SettingsWrapper

from evals import tasks
from evals.models import (
    Dataset,
    Example,
    Item,
    Judge,
    JudgeApiEvent,
    RemoteBatch,
    Review,
    Run,
    Score,
    Upload,
)
from evals.pump import pump
from evals.services import retention
from evals.services.retention import dataset_delete_with_runs, purge_older_than, run_delete
from evals.services.retry import run_retry_failed
from evals.services.runs import run_create
from evals.services.sharing import share_link_create
from tests.conftest import SUPPORT_JUDGE

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("offline_judge")]


@pytest.fixture(autouse=True)
def uploads_dir(settings: SettingsWrapper, tmp_path: Path) -> Path:
    settings.FILE_UPLOAD_TEMP_DIR = tmp_path / "uploads"
    Path(settings.FILE_UPLOAD_TEMP_DIR).mkdir()
    return Path(settings.FILE_UPLOAD_TEMP_DIR)


def finish(run: Run) -> Run:
    for _ in range(20):
        pump(budget_seconds=30, concurrency=1, requeue=False)
        run.refresh_from_db()
        if run.is_finished:
            return run
    raise AssertionError("run did not finish")


def age(obj: Run | Dataset, days: float) -> None:
    type(obj).objects.filter(pk=obj.pk).update(created_at=timezone.now() - timedelta(days=days))
    obj.refresh_from_db()


def judged_chain(
    judges: dict[str, Judge], dataset: Dataset, offline_judge: Callable[[str], None]
) -> list[Run]:
    """A finished run with failures, a finished retry of them, a share link and an API event on each."""
    offline_judge("item_ms=1,lanes=100,item_fail=0.3,seed=5")
    first = finish(run_create(dataset=dataset, judge=judges[SUPPORT_JUDGE], batch_size=5))
    assert first.failed_count
    offline_judge("item_ms=1,lanes=100")
    retry = finish(run_retry_failed(run=first))
    for run in (first, retry):
        share_link_create(run=run, created_by=None, label="for the vendor")
        JudgeApiEvent.objects.create(action="poll", status="503", message="busy", run=run)
    return [first, retry]


def rows_pointing_at(run_ids: set[int]) -> dict[str, int]:
    """Every row of every model that still points at one of these runs, or at their items, batches, scores."""
    items = set(Item.objects.filter(run_id__in=run_ids).values_list("pk", flat=True))
    batches = set(RemoteBatch.objects.filter(run_id__in=run_ids).values_list("pk", flat=True))
    scores = set(Score.objects.filter(run_id__in=run_ids).values_list("pk", flat=True))
    targets: dict[type[models.Model], set[int]] = {
        Run: run_ids,
        Item: items,
        RemoteBatch: batches,
        Score: scores,
    }
    found = {}
    for model in apps.get_models():
        for field in model._meta.get_fields():
            if isinstance(field, models.ForeignKey) and field.related_model in targets:
                ids = targets[field.related_model]
                count = model._default_manager.filter(**{f"{field.name}__in": ids}).count()
                if count:
                    found[f"{model.__name__}.{field.name}"] = count
    return found


def test_deleting_a_run_leaves_no_row_behind_in_any_table_and_takes_its_retries(
    judges: dict[str, Judge], make_dataset: Callable[..., Dataset], offline_judge: Callable[[str], None]
) -> None:
    dataset = make_dataset(20)
    chain = judged_chain(judges, dataset, offline_judge)
    bystander = finish(run_create(dataset=dataset, judge=judges[SUPPORT_JUDGE]))
    share_link_create(run=bystander, created_by=None)
    ids = {run.pk for run in chain}
    before = rows_pointing_at(ids)
    assert before["Item.run"] == 20 + chain[1].total_count and before["Score.item"] > 0

    # Deleting the retry deletes the chain it belongs to, the first run included.
    deleted = run_delete(runs=[chain[1]], by="ada")

    assert {run.pk for run in deleted.runs} == ids
    assert (deleted.items, deleted.scores, deleted.share_links) == (
        before["Item.run"],
        before["Score.run"],
        before["ShareLink.run"],
    )
    assert not Run.objects.filter(pk__in=ids).exists()
    assert rows_pointing_at(ids) == {}
    assert not JudgeApiEvent.objects.filter(message="busy").exclude(run=bystander).exists()
    connection.check_constraints()  # no dangling foreign key anywhere (SQLite checks them only at commit)
    # Everything else is untouched.
    bystander.refresh_from_db()
    assert bystander.items.count() == 20 and bystander.scores.count() == 20 * len(bystander.evaluators)
    assert bystander.share_links.count() == 1
    assert Example.objects.filter(dataset=dataset).count() == 20


def test_deleting_a_run_takes_its_reviews_and_its_noise_checks(
    judges: dict[str, Judge], make_dataset: Callable[..., Dataset], django_user_model: Any
) -> None:
    dataset = make_dataset(6)
    run = finish(run_create(dataset=dataset, judge=judges[SUPPORT_JUDGE]))
    sample = Example.objects.filter(dataset=dataset, position__in=[1, 4])
    check = finish(
        run_create(
            dataset=dataset, judge=judges[SUPPORT_JUDGE], examples=sample, noise_of=run, noise_repeat=1
        )
    )
    reviewer = django_user_model.objects.create_user(username="rita", password="a-long-test-password")
    for target in (run, check):
        item = target.items.order_by("position").first()
        assert item is not None
        Review.objects.create(
            item=item,
            run=target,
            evaluator_name=target.evaluators[0],
            reviewer=reviewer,
            reviewer_name="rita",
            label=Review.Label.FAIL,
        )

    deleted = run_delete(runs=[run], by="ada")

    assert {gone.pk for gone in deleted.runs} == {run.pk, check.pk}
    assert not Review.objects.exists()
    assert rows_pointing_at({run.pk, check.pk}) == {}
    connection.check_constraints()


def test_a_run_in_flight_is_cancelled_first_then_deleted(
    judges: dict[str, Judge], make_dataset: Callable[..., Dataset]
) -> None:
    run = run_create(dataset=make_dataset(30), judge=judges[SUPPORT_JUDGE], batch_size=10)
    with mock.patch.object(retention, "run_cancel", wraps=retention.run_cancel) as cancel:
        deleted = run_delete(runs=[run], by="ada")
    cancel.assert_called_once()
    assert [r.pk for r in deleted.runs] == [run.pk] and deleted.items == 30 and deleted.batches == 3
    assert not Run.objects.exists() and not Item.objects.exists() and not RemoteBatch.objects.exists()


def test_a_failure_half_way_leaves_whole_runs(
    judges: dict[str, Judge], make_dataset: Callable[..., Dataset]
) -> None:
    dataset = make_dataset(10)
    first = run_create(dataset=dataset, judge=judges[SUPPORT_JUDGE])
    second = run_create(dataset=dataset, judge=judges[SUPPORT_JUDGE])
    real = retention._raw_delete
    calls: list[str] = []

    def fail_on_the_second_runs_items(queryset: Any) -> int:
        calls.append(queryset.model.__name__)
        if calls.count("Item") == 2:
            raise RuntimeError("disk full")
        return real(queryset)

    with (
        mock.patch.object(retention, "_raw_delete", fail_on_the_second_runs_items),
        pytest.raises(RuntimeError, match="disk full"),
    ):
        run_delete(runs=[first, second], by="ada")
    assert not Run.objects.filter(pk=first.pk).exists()
    # The second run is whole: its batches and share links were not deleted either.
    assert Run.objects.filter(pk=second.pk).exists() and second.items.count() == 10
    assert second.batches.count() == 1


def test_every_deletion_logs_one_line_saying_who_what_and_how_many(
    judges: dict[str, Judge], make_dataset: Callable[..., Dataset], caplog: pytest.LogCaptureFixture
) -> None:
    dataset = make_dataset(4, name="PII answers")
    run = run_create(dataset=dataset, judge=judges[SUPPORT_JUDGE], name="nightly")
    with caplog.at_level(logging.INFO, logger="evals.services.retention"):
        run_delete(runs=[run], by="ada")
        dataset_delete_with_runs(dataset=dataset, by="grace")
    lines = [record.getMessage() for record in caplog.records if record.name == "evals.services.retention"]
    assert len(lines) == 2
    assert lines[0].startswith(f'deleted by ada: runs #{run.pk} "nightly"; datasets none; 4 items, 0 scores')
    assert lines[1].startswith(f'deleted by grace: runs none; datasets #{dataset.pk} "PII answers"; 0 items')
    assert "4 examples" in lines[1]


def test_deleting_a_dataset_takes_its_runs_rows_and_uploaded_files(
    judges: dict[str, Judge], make_dataset: Callable[..., Dataset], uploads_dir: Path
) -> None:
    dataset = make_dataset(6)
    other = make_dataset(3, name="other")
    runs = [run_create(dataset=dataset, judge=judges[SUPPORT_JUDGE]) for _ in range(2)]
    kept_run = run_create(dataset=other, judge=judges[SUPPORT_JUDGE])
    file = uploads_dir / "docket-answers.csv"
    file.write_text("request,response\n")
    Upload.objects.create(
        path=str(file), original_name="answers.csv", status=Upload.Status.IMPORTED, dataset=dataset
    )

    plan = retention.dataset_deletion_plan(dataset=dataset)
    assert (len(plan.runs), plan.items, plan.examples, plan.uploads) == (2, 12, 6, 1)
    deleted = dataset_delete_with_runs(dataset=dataset, by="ada")

    assert sorted(run.pk for run in deleted.runs) == sorted(run.pk for run in runs)
    assert (deleted.items, deleted.examples, deleted.uploads) == (12, 6, 1)
    assert not Dataset.objects.filter(pk=dataset.pk).exists()
    assert not Example.objects.filter(dataset_id=dataset.pk).exists()
    assert not Run.objects.filter(dataset_id=dataset.pk).exists()
    assert not Upload.objects.exists() and not file.exists()
    assert Run.objects.get() == kept_run and other.examples.count() == 3
    connection.check_constraints()


def purge(*args: str) -> tuple[int, str]:
    out = io.StringIO()
    try:
        call_command("purge", *args, stdout=out)
    except CommandError as error:
        return error.returncode, str(error)
    return 0, out.getvalue()


def old_and_new(judges: dict[str, Judge], make_dataset: Callable[..., Dataset]) -> dict[str, Any]:
    """An old dataset with only old runs, an old dataset still in use, and a new one."""
    judge = judges[SUPPORT_JUDGE]
    stale = make_dataset(5, name="stale")
    stale_run = run_create(dataset=stale, judge=judge, name="stale run")
    used = make_dataset(3, name="still used")
    old_run = run_create(dataset=used, judge=judge, name="old run")
    recent_run = run_create(dataset=used, judge=judge, name="recent run")
    fresh = make_dataset(2, name="fresh")
    for run in (stale_run, old_run, recent_run):
        run.batches.update(status=RemoteBatch.Status.CANCELLED)
        Run.objects.filter(pk=run.pk).update(status=Run.Status.CANCELLED, finished_at=timezone.now())
    for obj, days in (
        (stale, 200),
        (stale_run, 120),
        (used, 200),
        (old_run, 150),
        (recent_run, 10),
        (fresh, 1),
    ):
        age(obj, days)
    return {
        "stale": stale,
        "stale_run": stale_run,
        "used": used,
        "old_run": old_run,
        "recent_run": recent_run,
    }


def test_purge_dry_run_deletes_nothing_and_reports_what_would_go(
    judges: dict[str, Judge], make_dataset: Callable[..., Dataset]
) -> None:
    made = old_and_new(judges, make_dataset)
    counts = (Run.objects.count(), Dataset.objects.count(), Item.objects.count(), Example.objects.count())
    code, out = purge("--older-than", "90d", "--dry-run")
    assert code == 0
    assert out.splitlines()[0] == "would delete: 2 runs, 1 datasets, 8 items, 0 scores, 5 examples, 0 uploads"
    assert f'run {made["old_run"].pk} "old run"' in out and f'dataset {made["stale"].pk} "stale"' in out
    assert "dry run: nothing was deleted" in out
    assert (
        Run.objects.count(),
        Dataset.objects.count(),
        Item.objects.count(),
        Example.objects.count(),
    ) == counts


def test_purge_deletes_what_is_older_and_keeps_a_dataset_whose_newest_run_is_recent(
    judges: dict[str, Judge], make_dataset: Callable[..., Dataset]
) -> None:
    made = old_and_new(judges, make_dataset)
    code, out = purge("--older-than", "90d")
    assert code == 0 and out.startswith("deleted: 2 runs, 1 datasets, 8 items")
    assert set(Dataset.objects.values_list("name", flat=True)) == {"still used", "fresh"}
    assert list(Run.objects.values_list("name", flat=True)) == ["recent run"]
    assert not Run.objects.filter(pk__in=[made["stale_run"].pk, made["old_run"].pk]).exists()


def test_purge_keeps_a_chain_whose_retry_is_recent_and_runs_in_flight(
    judges: dict[str, Judge], make_dataset: Callable[..., Dataset]
) -> None:
    dataset = make_dataset(4)
    age(dataset, 1)
    running = run_create(dataset=dataset, judge=judges[SUPPORT_JUDGE])
    age(running, 100)
    first = run_create(dataset=dataset, judge=judges[SUPPORT_JUDGE])
    Run.objects.filter(pk=first.pk).update(
        status=Run.Status.FAILED, failed_count=4, finished_at=timezone.now()
    )
    first.items.update(status=Item.Status.FAILED)
    first.batches.update(status=RemoteBatch.Status.FAILED)
    age(first, 100)
    retry = run_retry_failed(run=first)
    assert purge_older_than(age=timedelta(days=90), by="purge command").is_empty
    assert set(Run.objects.values_list("pk", flat=True)) == {running.pk, first.pk, retry.pk}


def test_purge_takes_hours_too(judges: dict[str, Judge], make_dataset: Callable[..., Dataset]) -> None:
    dataset = make_dataset(2)
    age(dataset, 0.5)  # 12 hours
    assert purge("--older-than", "36h")[0] == 0 and Dataset.objects.exists()
    assert purge("--older-than", "6H")[0] == 0 and not Dataset.objects.exists()


@pytest.mark.parametrize("value", ["90", "90x", "-5d", "0d", "d", "ninety days", "1.5d"])
def test_purge_refuses_an_age_it_cannot_read_with_exit_status_2(
    make_dataset: Callable[..., Dataset], value: str
) -> None:
    dataset = make_dataset(2)
    age(dataset, 1000)
    code, message = purge(f"--older-than={value}")
    assert code == 2 and "like 90d or 36h" in message
    assert Dataset.objects.exists()


@pytest.fixture
def no_pump(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("evals.services.runs.wake_pump", lambda: None)


@pytest.mark.usefixtures("no_pump")
def test_the_watchdog_applies_docket_retention_days_and_keeps_everything_when_unset(
    judges: dict[str, Judge], make_dataset: Callable[..., Dataset], settings: SettingsWrapper
) -> None:
    made = old_and_new(judges, make_dataset)
    settings.DOCKET_RETENTION_DAYS = None
    tasks.watchdog()
    assert Run.objects.count() == 3 and Dataset.objects.count() == 3
    settings.DOCKET_RETENTION_DAYS = 90
    tasks.watchdog()
    assert list(Run.objects.all()) == [made["recent_run"]]
    assert Dataset.objects.count() == 2


def test_uploads_never_imported_go_with_their_files_after_24_hours(
    make_dataset: Callable[..., Dataset], uploads_dir: Path
) -> None:
    def upload(name: str, hours: float, **fields: Any) -> tuple[Upload, Path]:
        path = uploads_dir / f"docket-{name}.csv"
        path.write_text("request,response\nmy card number is 4111,ok\n")
        made = Upload.objects.create(path=str(path), original_name=f"{name}.csv", **fields)
        Upload.objects.filter(pk=made.pk).update(created_at=timezone.now() - timedelta(hours=hours))
        return made, path

    abandoned, abandoned_file = upload("abandoned", 25, status=Upload.Status.VALIDATED)
    failed, failed_file = upload("failed", 30, status=Upload.Status.FAILED)
    recent, recent_file = upload("recent", 2, status=Upload.Status.RECEIVED)
    imported, imported_file = upload("imported", 48, status=Upload.Status.IMPORTED, dataset=make_dataset(1))
    importing, importing_file = upload("importing", 48, status=Upload.Status.IMPORTING)
    # A file a dead upload request left behind, with no upload row.
    stray = uploads_dir / "tmp1234.upload.csv"
    stray.write_text("half a file")
    two_days_ago = (timezone.now() - timedelta(hours=48)).timestamp()
    os.utime(stray, (two_days_ago, two_days_ago))
    fresh_stray = uploads_dir / "tmp5678.upload.csv"
    fresh_stray.write_text("an upload arriving now")

    tasks.watchdog_retention()

    assert set(Upload.objects.values_list("original_name", flat=True)) == {
        "recent.csv",
        "imported.csv",
        "importing.csv",
    }
    assert not abandoned_file.exists() and not failed_file.exists() and not stray.exists()
    assert (
        recent_file.exists() and imported_file.exists() and importing_file.exists() and fresh_stray.exists()
    )
