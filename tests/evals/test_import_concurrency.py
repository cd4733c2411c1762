"""An import of a wide file in the background never locks other users out of writing.

The import runs in a thread with its own connection to the test database (a SQLite file, WAL,
IMMEDIATE transactions, as in production). It is held at a point of its Python work while the main
thread logs one user in and lets another rename a dataset, through their views: if the import held a
write transaction there, both requests would wait out the 20 s lock timeout and answer 500 "database
is locked" (as they did when the metadata columns were worked out inside the final transaction).
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from django.urls import reverse
from pytest_django.fixtures import Settings as SettingsWrapper

from evals import tasks
from evals.models import Dataset, Example, Upload
from evals.services import dataset_rows, uploads

pytestmark = pytest.mark.django_db(transaction=True)

COLUMNS = 1500  # under the columns-per-row cap; wide enough to be the kind of file that was slow
ROWS = 120


def wide_csv(path: Path) -> Path:
    header = ["question", "answer", *(f"field_{n}" for n in range(2, COLUMNS))]
    lines = [",".join(header)]
    for row in range(ROWS):
        lines.append(",".join([f"q{row}", f"a{row}", *(f"v{row}.{n}" for n in range(2, COLUMNS))]))
    path.write_text("\n".join(lines) + "\n")
    return path


@contextmanager
def held_inside(target: Any, name: str, reached: threading.Event, release: threading.Event) -> Iterator[None]:
    """Patch target.name so that the first call stops, says so, and waits for release before going on."""
    real = getattr(target, name)
    static = isinstance(inspect.getattr_static(target, name), staticmethod)

    def holding(*args: Any, **kwargs: Any) -> Any:
        result = real(*args, **kwargs)
        if not reached.is_set():
            reached.set()
            release.wait(timeout=120)
        return result

    with mock.patch.object(target, name, staticmethod(holding) if static else holding):
        yield


@pytest.mark.parametrize("held_at", ["reading rows", "working out the metadata columns"])
def test_other_users_log_in_and_rename_while_a_wide_file_imports(
    held_at: str,
    tmp_path: Path,
    settings: SettingsWrapper,
    make_dataset: Callable[..., Dataset],
) -> None:
    settings.FILE_UPLOAD_TEMP_DIR = tmp_path / "uploads"
    settings.DOCKET_INLINE_IMPORT_MAX_BYTES = 1  # the background path, as a wide file takes
    with mock.patch("django_q.tasks.async_task"):
        upload = uploads.upload_create(source=wide_csv(tmp_path / "in.csv"), original_name="wide.csv")
        tasks.upload_validate(str(upload.pk))
        upload.refresh_from_db()
        assert upload.report["valid"] == ROWS
        importing = uploads.upload_import(upload=upload, name="wide", skip_invalid=False)
    other = make_dataset(3, name="answers")
    get_user_model().objects.create_user(username="grace", password="a-long-test-password")
    renamer = Client(raise_request_exception=False)
    renamer.force_login(get_user_model().objects.create_user(username="ada"))

    reached, release = threading.Event(), threading.Event()
    failures: list[BaseException] = []

    def run_import() -> None:
        try:
            tasks.dataset_import(str(upload.pk))
        except BaseException as error:  # reported by the main thread
            failures.append(error)
        finally:
            release.set()
            connection.close()

    if held_at == "reading rows":
        hold = held_inside(Example, "make_input_key", reached, release)
    else:
        hold = held_inside(dataset_rows, "metadata_columns", reached, release)
    web = Client(raise_request_exception=False)
    with hold:
        worker = threading.Thread(target=run_import)
        worker.start()
        try:
            assert reached.wait(timeout=60), "the import never got to the hold"
            login = web.post(reverse("login"), {"username": "grace", "password": "a-long-test-password"})
            rename = renamer.post(reverse("dataset_rename", args=[other.pk]), {"name": "renamed meanwhile"})
            still_importing = Dataset.objects.get(pk=importing.pk).status
        finally:
            release.set()
            worker.join(timeout=120)

    assert (login.status_code, rename.status_code) == (302, 302)
    assert rename["Location"] == reverse("dataset_detail", args=[other.pk])
    assert Dataset.objects.get(pk=other.pk).name == "renamed meanwhile"
    assert get_user_model().objects.get(username="grace").last_login is not None
    assert still_importing == Dataset.Status.IMPORTING
    assert not worker.is_alive() and failures == []
    importing.refresh_from_db()
    assert (importing.status, importing.row_count) == (Dataset.Status.READY, ROWS)
    assert Example.objects.filter(dataset=importing).count() == ROWS
    assert len(importing.metadata_columns) == COLUMNS - 2
    assert Upload.objects.get(pk=upload.pk).status == Upload.Status.IMPORTED
