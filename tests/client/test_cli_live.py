"""`docket eval` as a CI job runs it: a subprocess talking HTTP to a live Docket while a real qcluster works.

Docket (API and offline judge) is pytest-django's live server; the worker is a separate process on the
same database (tests/evals/test_worker_e2e.py). The CLI gets only DOCKET_URL and DOCKET_TOKEN.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser

from evals.models import ApiToken, Run
from evals.services.judges import judges_sync
from evals.services.tokens import api_token_create
from tests.factories import start_worker, stop

pytestmark = [pytest.mark.slow, pytest.mark.qcluster, pytest.mark.django_db(transaction=True)]

JUDGE = "Support assistant safety"
EVALUATORS = ["Refusal avoidance", "PII safety", "Politeness", "Concision"]
ROWS = 30


@pytest.fixture(scope="module")
def worker(
    django_db_setup: None, django_db_blocker: Any, live_server: Any, tmp_path_factory: Any
) -> Iterator[None]:
    """One qcluster for the module: it polls the queue, so it outlives each test's emptied database."""
    from offline_judge import faults

    url = f"{live_server.url}/judge-api"
    saved = {
        name: getattr(settings, name) for name in ("JUDGE_API_URL", "JUDGE_API_KEY", "OFFLINE_JUDGE_FAULTS")
    }
    settings.JUDGE_API_URL = url
    settings.JUDGE_API_KEY = settings.OFFLINE_JUDGE_API_KEY
    # Fast and faultless: this module is about the CLI, not the worker's resilience.
    settings.OFFLINE_JUDGE_FAULTS = "item_ms=1,lanes=50"
    faults.reset()
    with django_db_blocker.unblock():
        process = start_worker(url, tmp_path_factory.mktemp("qcluster") / "qcluster.log")
    try:
        yield
    finally:
        stop(process)
        for name, value in saved.items():
            setattr(settings, name, value)
        faults.reset()


@pytest.fixture
def token(user: AbstractBaseUser) -> str:
    _token, secret = api_token_create(user=user, name="CI job", scope=ApiToken.Scope.WRITE)
    return secret


@pytest.fixture
def docket_env(worker: None, live_server: Any, token: str) -> dict[str, str]:
    judges_sync()
    return cli_env(live_server.url, token)


def cli_env(url: str, token: str, **extra: str) -> dict[str, str]:
    inherited = {
        key: value for key, value in os.environ.items() if not key.startswith(("DOCKET_", "SCORABLE_"))
    }
    return {**inherited, "DOCKET_URL": url, "DOCKET_TOKEN": token, **extra}


def docket(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "docket_client", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def answers_csv(path: Path, answer: str, rows: int = ROWS) -> Path:
    lines = ["request,response"]
    for n in range(rows):
        lines.append(f'"How do I reset the password of account {n}?","{answer.format(n=n)}"')
    path.write_text("\n".join(lines) + "\n")
    return path


GOOD = "Thanks for asking! Please open Settings, choose Security and press Reset ({n})."
# A refusal, a phone number and a rude phrase: refusal_avoidance, pii_safety and politeness score low.
BAD = "I can't help with that, figure it out yourself. Call 555 010 {n:04d} instead."


def last_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stdout.strip().splitlines()
    return lines[-1] if lines else ""


def explain(result: subprocess.CompletedProcess[str]) -> str:
    return f"exit {result.returncode}\nstdout:\n{result.stdout[-3000:]}\nstderr:\n{result.stderr[-3000:]}"


def junit_cases(path: Path) -> dict[str, ET.Element]:
    return {case.get("name", ""): case for case in ET.parse(path).getroot().iter("testcase")}


def test_eval_passes_fail_under_0_and_fails_fail_under_above_any_score(
    docket_env: dict[str, str], tmp_path: Path
) -> None:
    good = answers_csv(tmp_path / "good.csv", GOOD)

    passed = docket(
        "eval", str(good), "--judge", JUDGE, "--fail-under", "0", "--junit", str(tmp_path / "pass.xml"),
        env=docket_env,
    )  # fmt: skip

    assert passed.returncode == 0, explain(passed)
    run = Run.objects.get()
    assert last_line(passed) == f"run {run.pk}: completed"
    assert "PII safety" in passed.stdout
    cases = junit_cases(tmp_path / "pass.xml")
    assert sorted(cases) == sorted(EVALUATORS)
    assert [name for name, case in cases.items() if case.find("failure") is not None] == []

    # The offline judge's scores lie in [0, 1]: no mean reaches 1.01.
    failed = docket(
        "eval", str(good), "--judge", JUDGE, "--fail-under", "1.01", "--junit", str(tmp_path / "fail.xml"),
        env=docket_env,
    )  # fmt: skip

    assert failed.returncode == 1, explain(failed)
    second = Run.objects.latest("pk")
    assert last_line(failed) == f"run {second.pk}: completed"
    assert "under --fail-under 1.01" in failed.stderr
    cases = junit_cases(tmp_path / "fail.xml")
    assert sorted(name for name, case in cases.items() if case.find("failure") is not None) == sorted(
        EVALUATORS
    )


def test_eval_against_the_release_baseline_fails_on_a_regression(
    docket_env: dict[str, str], tmp_path: Path
) -> None:
    release = docket(
        "eval",
        str(answers_csv(tmp_path / "good.csv", GOOD)),
        "--judge",
        JUDGE,
        "--tag",
        "release",
        env=docket_env,
    )
    assert release.returncode == 0, explain(release)
    baseline = Run.objects.get()

    worse = docket(
        "eval", str(answers_csv(tmp_path / "bad.csv", BAD)), "--judge", JUDGE, "--baseline-tag", "release",
        env=docket_env,
    )  # fmt: skip

    assert worse.returncode == 1, explain(worse)
    assert f"compared with baseline run {baseline.pk}" in worse.stdout
    assert "REGRESSION" in worse.stdout
    assert "regression against the baseline" in worse.stderr
    new = Run.objects.latest("pk")
    assert last_line(worse) == f"run {new.pk}: completed"

    listed = docket("runs", "--tag", "release", env=docket_env)
    assert listed.returncode == 0, explain(listed)
    assert [line.split()[0] for line in listed.stdout.splitlines()[2:]] == [str(baseline.pk)]

    compared = docket("compare", str(baseline.pk), str(new.pk), "--fail-on-regression", env=docket_env)
    assert compared.returncode == 1, explain(compared)
    assert "regression in Refusal avoidance, PII safety, Politeness" in compared.stdout

    exported = docket(
        "export", str(new.pk), "--format", "jsonl", "--output", str(tmp_path / "new.jsonl"), env=docket_env
    )
    assert exported.returncode == 0, explain(exported)
    assert len((tmp_path / "new.jsonl").read_text().splitlines()) == ROWS


def test_eval_of_a_file_with_an_invalid_row_exits_2_naming_its_line(
    docket_env: dict[str, str], tmp_path: Path
) -> None:
    path = answers_csv(tmp_path / "answers.csv", GOOD, rows=5)
    lines = path.read_text().splitlines()
    lines[4] = '"How do I reset the password of account 3?",""'  # the 4th row: line 5 of the file
    path.write_text("\n".join(lines) + "\n")

    result = docket("eval", str(path), "--judge", JUDGE, "--fail-under", "0", env=docket_env)

    assert result.returncode == 2, explain(result)
    assert "line 5, column response" in result.stderr
    assert not Run.objects.exists()
    assert result.stdout == ""


def test_eval_with_docket_unreachable_exits_3(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Closed now: nothing listens on the port.
    env = cli_env(f"http://127.0.0.1:{port}", "dkt_not-checked", DOCKET_RETRY_SECONDS="1")

    result = docket("eval", str(answers_csv(tmp_path / "a.csv", GOOD, rows=2)), "--judge", JUDGE, env=env)

    assert result.returncode == 3, explain(result)
    assert "Docket unreachable" in result.stderr
    assert "dkt_not-checked" not in result.stdout + result.stderr
