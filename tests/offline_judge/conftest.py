from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.test import Client
from pytest_django.fixtures import Settings as SettingsWrapper

from offline_judge import faults, stats
from tests.offline_judge.harness import API_KEY, Api, FakeClock


@pytest.fixture(autouse=True)
def fresh_faults_and_stats() -> Iterator[None]:
    """Cached fault plans carry their random state, and stats are per process: start each test clean."""
    faults.reset()
    stats.reset()
    yield
    faults.reset()


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr("offline_judge.clock.now", fake.now)
    monkeypatch.setattr("offline_judge.clock.sleep", fake.sleep)
    return fake


@pytest.fixture
def judge_settings(settings: SettingsWrapper) -> SettingsWrapper:
    settings.OFFLINE_JUDGE_API_KEY = API_KEY
    settings.OFFLINE_JUDGE_FAULTS = ""
    return settings


@pytest.fixture
def api(db: None, client: Client, judge_settings: SettingsWrapper) -> Api:
    return Api(client)
