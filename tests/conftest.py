"""Fixtures for every suite: users, the offline judge in-process (httpx.WSGITransport over Docket
itself, as the judge API client would reach it over HTTP), and datasets made directly in the database."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core import signals
from django.core.handlers.wsgi import WSGIHandler
from django.db import close_old_connections
from django.test import Client
from pytest_django.fixtures import Settings as SettingsWrapper

from dashboard.management.commands.ensure_var import var_folders
from evals import client
from evals.models import Dataset, Example, Judge
from evals.services.judges import judges_sync

# The SQLite test database is a file under var/, which importing the settings no longer makes; manage.py
# makes it for every command, this for pytest.
var_folders()

# Passwords hashed for tests need no strength: MD5 takes microseconds where PBKDF2's million rounds take
# about half a second per hash (every create_user and every password login). PBKDF2 stays second, so
# hashes made by a child process (a server started with the real settings) still verify here; no child
# process verifies a password made here (the reliability suite makes its users in its own processes).
settings.PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.MD5PasswordHasher",
    *[name for name in settings.PASSWORD_HASHERS if not name.endswith("MD5PasswordHasher")],
]


# A live server answers from the database whatever the test itself asks for.
DATABASE_FIXTURES = {
    "db",
    "transactional_db",
    "django_db_reset_sequences",
    "django_db_serialized_rollback",
    "live_server",
}


@pytest.hookimpl(tryfirst=True)  # before `-m` selects by the markers set here
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test with database access is marked `backend`, and the tests marked slow go first.

    `backend`: CI runs the suite once on SQLite, then only these again on PostgreSQL and Redis (`-m
    backend`); a test without the database has nothing there that could change its outcome.

    Slow first: pytest-xdist hands tests out in collection order, so a minute-long test collected last
    would run alone on one worker while the others sit idle. Started first, the long ones overlap the
    short ones. The sort is stable: the rest keep their order.
    """
    for item in items:
        if item.get_closest_marker("django_db") or DATABASE_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.backend)
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


JUDGE_URL = "http://127.0.0.1:8000/judge-api"
SUPPORT_JUDGE = "Support assistant safety"
RAG_JUDGE = "RAG answer quality"
QA_JUDGE = "Reference answer match"


@pytest.fixture
def user(db: None) -> AbstractBaseUser:
    return get_user_model().objects.create_user(username="ada", password="a-long-test-password")


@pytest.fixture
def logged_in(client: Client, user: AbstractBaseUser) -> Client:
    client.force_login(user)
    return client


@pytest.fixture
def fast_pump(settings: SettingsWrapper) -> SettingsWrapper:
    """Pump timings for tests: the same code paths, in tenths of seconds instead of seconds."""
    settings.DOCKET_POLL_MIN_SECONDS = 0.02
    settings.DOCKET_POLL_MAX_SECONDS = 0.2
    settings.DOCKET_BACKOFF_MAX_SECONDS = 0.05
    settings.JUDGE_API_TIMEOUT = 5.0
    return settings


class InProcessJudge(httpx.BaseTransport):
    """The offline judge served by this very process, as the judge API client sees it over HTTP.

    A finished WSGI request fires Django's close_old_connections, which would close the connection
    of the test (or of the pump) that made the call; Django's test client mutes it the same way.
    """

    _lock = threading.Lock()
    _depth = 0

    def __init__(self) -> None:
        self.inner = httpx.WSGITransport(app=WSGIHandler())

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        with self._muted():
            response = self.inner.handle_request(request)
            body = response.read()
        return httpx.Response(response.status_code, headers=response.headers, content=body, request=request)

    @classmethod
    @contextmanager
    def _muted(cls) -> Iterator[None]:
        with cls._lock:
            cls._depth += 1
            if cls._depth == 1:
                signals.request_started.disconnect(close_old_connections)
                signals.request_finished.disconnect(close_old_connections)
        try:
            yield
        finally:
            with cls._lock:
                cls._depth -= 1
                if cls._depth == 0:
                    signals.request_started.connect(close_old_connections)
                    signals.request_finished.connect(close_old_connections)


@pytest.fixture
def offline_judge(settings: SettingsWrapper, fast_pump: SettingsWrapper) -> Iterator[Callable[[str], None]]:
    """Point Docket's judge API client at the offline judge in this process; returns a fault setter."""
    from offline_judge import faults, stats

    settings.JUDGE_API_SOURCE = "offline"
    settings.JUDGE_API_URL = JUDGE_URL
    settings.JUDGE_API_KEY = settings.OFFLINE_JUDGE_API_KEY
    settings.OFFLINE_JUDGE_FAULTS = "item_ms=1,lanes=100"
    # Calls inline: the judge then answers on the test's own connection, inside its transaction.
    settings.DOCKET_HTTP_CONCURRENCY = 1
    faults.reset()
    stats.reset()
    previous = client.default_transport
    client.default_transport = InProcessJudge()

    def set_faults(spec: str) -> None:
        settings.OFFLINE_JUDGE_FAULTS = spec
        faults.reset()

    yield set_faults
    client.default_transport = previous
    faults.reset()


@pytest.fixture
def judges(db: None, offline_judge: Callable[[str], None]) -> dict[str, Judge]:
    judges_sync()
    return {judge.name: judge for judge in Judge.objects.all()}


@pytest.fixture
def make_dataset(db: None) -> Callable[..., Dataset]:
    def make(rows: int = 10, *, name: str = "support answers", **fields: Any) -> Dataset:
        dataset = Dataset.objects.create(name=name, row_count=rows, status=Dataset.Status.READY)
        Example.objects.bulk_create(
            Example(
                dataset=dataset,
                position=position,
                source_line=position + 2,
                **{
                    "request": f"How do I reset my password for account {position}?",
                    "response": f"Thanks for asking! Open Settings, choose Security and press Reset ({position}).",
                    **{key: (value(position) if callable(value) else value) for key, value in fields.items()},
                },
            )
            for position in range(rows)
        )
        return dataset

    return make


def subprocess_database_url() -> str:
    """DATABASE_URL for a child process (a real qcluster, a web server) that must share the test database."""
    from django.db import connection

    config = connection.settings_dict
    if config["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{config['NAME']}"
    auth = config.get("USER") or ""
    if config.get("PASSWORD"):
        auth += f":{config['PASSWORD']}"
    return (
        f"postgres://{auth}@{config.get('HOST') or '127.0.0.1'}:{config.get('PORT') or 5432}/{config['NAME']}"
    )
