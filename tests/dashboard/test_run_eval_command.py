"""`manage.py run_eval`: the CI gate."""

from __future__ import annotations

import io
import re
from collections.abc import Callable

import httpx
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from pytest_django.fixtures import Settings as SettingsWrapper

from evals import client
from evals.models import Dataset, Judge, Run
from evals.services.runs import run_cancel, run_create
from tests.conftest import JUDGE_URL, QA_JUDGE, RAG_JUDGE, SUPPORT_JUDGE

pytestmark = pytest.mark.usefixtures("offline_judge")


@pytest.fixture(autouse=True)
def no_worker_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    # No qcluster runs in these tests: let the command work the run itself at once.
    monkeypatch.setattr("dashboard.management.commands.run_eval.WORKER_GRACE", 0.0)


def run_eval(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("run_eval", *args, stdout=out, stderr=err)
        code = 0
    except SystemExit as exit:
        code = int(exit.code or 0)
    except CommandError as error:
        code = error.returncode
        err.write(str(error))
    return code, out.getvalue(), err.getvalue()


def test_wait_prints_progress_a_summary_per_evaluator_and_ends_with_the_status(
    judges: dict[str, Judge], make_dataset: Callable[..., Dataset]
) -> None:
    dataset = make_dataset(30)
    code, out, err = run_eval("--dataset", str(dataset.pk), "--judge", SUPPORT_JUDGE, "--tag", "ci", "--wait")
    run = Run.objects.get()
    lines = out.strip().splitlines()
    assert code == 0, err
    assert lines[-1] == f"run {run.pk}: completed"
    assert run.tags == ["ci"]
    assert any(line.startswith(f"run {run.pk}: completed, 30/30 done") for line in lines)
    assert lines[-1 - len(run.evaluators) - 1].split() == [
        "evaluator",
        "n",
        "mean",
        "min",
        "threshold",
        "pass",
    ]
    for name, mean, n in run.evaluator_means:
        row = next(line for line in lines if line.startswith(name))
        assert row.split()[-6:-3] == [str(n), f"{mean:.3f}", f"{run.score_summary[name]['min']:.3f}"]


def summary_rows(out: str, run: Run) -> dict[str, list[str]]:
    """Per evaluator: threshold, where it came from, pass rate (the last three columns)."""
    lines = out.strip().splitlines()
    return {
        name: next(line for line in lines if line.startswith(name)).split()[-3:] for name in run.evaluators
    }


def half_curt(position: int) -> str:
    # Politeness 0.7 + 0.15 ("thanks") - 0.35 ("obviously") = 0.5 on even rows, 0.85 on odd rows.
    if position % 2 == 0:
        return "Thanks, obviously you open Settings and press Reset."
    return f"Thanks for asking! Open Settings, choose Security and press Reset ({position})."


def test_the_pass_column_counts_at_the_runs_own_thresholds_and_marks_an_override(
    judges: dict[str, Judge], make_dataset: Callable[..., Dataset]
) -> None:
    dataset = make_dataset(10, response=half_curt)
    code, out, err = run_eval(
        "--dataset", str(dataset.pk), "--judge", SUPPORT_JUDGE, "--wait", "--fail-under", "0"
    )
    assert code == 0, err
    run = Run.objects.get()
    # No worker ran the learning task: the command learned the judge's thresholds itself.
    assert run.thresholds_learned_at is not None
    rows = summary_rows(out, run)
    # The judge passes Politeness at 0.6 (offline_judge/catalogue.py): the 0.5 rows fail, not pass.
    assert rows["Politeness"] == ["0.6", "judge's", "50%"]
    assert rows["PII safety"] == ["1", "judge's", "100%"]

    # --threshold counts at another bar, and says so; --fail-under is still only the mean gate.
    code, out, err = run_eval(
        "--dataset",
        str(dataset.pk),
        "--judge",
        SUPPORT_JUDGE,
        "--wait",
        "--threshold",
        "0.5",
        "--fail-under",
        "0.6",
    )
    assert code == 0, err
    rows = summary_rows(out, Run.objects.order_by("-pk").first())  # type: ignore[arg-type]
    assert rows["Politeness"] == ["0.5", "override", "100%"]
    assert rows["Concision"] == ["0.5", "override", "100%"]


def test_fail_under_exits_1_when_a_mean_is_under_the_bar(
    judges: dict[str, Judge], make_dataset: Callable[..., Dataset]
) -> None:
    dataset = make_dataset(10, expected_output="something else entirely")
    code, out, err = run_eval(
        "--dataset",
        str(dataset.pk),
        "--judge",
        QA_JUDGE,
        "--wait",
        "--fail-under",
        "0.9",
        "--evaluator",
        "Exact match",
    )
    assert code == 1
    assert "Exact match mean 0.000 is under 0.9" in err
    assert out.strip().splitlines()[-1].endswith(": completed")


def test_fail_under_passes_when_every_mean_clears_the_bar(
    judges: dict[str, Judge], make_dataset: Callable[..., Dataset]
) -> None:
    dataset = make_dataset(5)
    code, _, err = run_eval(
        "--dataset", str(dataset.pk), "--judge", SUPPORT_JUDGE, "--wait", "--fail-under", "0.0"
    )
    assert code == 0, err


def test_without_wait_the_run_is_left_to_the_worker(
    judges: dict[str, Judge], make_dataset: Callable[..., Dataset]
) -> None:
    dataset = make_dataset(5)
    judge = judges[SUPPORT_JUDGE]
    code, out, _ = run_eval("--dataset", str(dataset.pk), "--judge", judge.remote_id)
    run = Run.objects.get()
    assert code == 0
    assert out.strip().splitlines()[-1] == f"run {run.pk}: queued"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dataset", "999", "--judge", SUPPORT_JUDGE], "There is no dataset 999."),
        (["--judge", "No such judge"], 'No judge is called "No such judge"'),
        (["--judge", RAG_JUDGE], 'needs "contexts"'),
        (["--judge", SUPPORT_JUDGE, "--fail-under", "0.5"], "--fail-under needs --wait"),
        (["--judge", SUPPORT_JUDGE, "--tag", "docket:x"], "reserved"),
        (["--judge", SUPPORT_JUDGE, "--batch-size", "500"], "between 1 and 100"),
        (["--judge", SUPPORT_JUDGE, "--threshold", "nan"], "--threshold must be a finite number"),
    ],
)
def test_usage_and_validation_errors_exit_2_and_start_nothing(
    judges: dict[str, Judge], make_dataset: Callable[..., Dataset], args: list[str], message: str
) -> None:
    dataset = make_dataset(3)
    if "--dataset" not in args:
        args = ["--dataset", str(dataset.pk), *args]
    code, _, err = run_eval(*args)
    assert code == 2
    assert message in err
    assert not Run.objects.exists()


def test_an_unknown_evaluator_for_the_gate_exits_2(
    judges: dict[str, Judge], make_dataset: Callable[..., Dataset]
) -> None:
    dataset = make_dataset(3)
    code, _, err = run_eval(
        "--dataset",
        str(dataset.pk),
        "--judge",
        SUPPORT_JUDGE,
        "--wait",
        "--fail-under",
        "0.5",
        "--evaluator",
        "Nope",
    )
    assert code == 2 and 'no evaluator "Nope"' in err


def test_retry_sends_the_cancelled_rows_again_once_and_says_how_many(
    judges: dict[str, Judge], make_dataset: Callable[..., Dataset]
) -> None:
    run = run_cancel(run=run_create(dataset=make_dataset(12), judge=judges[SUPPORT_JUDGE]))
    code, out, err = run_eval("--retry", str(run.pk))
    retry = Run.objects.get(retry_of=run)
    assert code == 0, err
    assert (
        f"run {retry.pk} started: a retry of run {run.pk}, 12 items will be sent (0 failed, 12 cancelled)"
        in out
    )
    # A second call while the retry is queued starts nothing and points at it.
    code, out, _ = run_eval("--retry", str(run.pk))
    assert code == 0
    assert (
        f"run {retry.pk} is already retrying run {run.pk} (queued, 0/12 done): nothing new was started" in out
    )
    assert out.strip().splitlines()[-1] == f"run {retry.pk}: queued"
    assert Run.objects.filter(retry_of=run).count() == 1


def test_retry_with_wait_finishes_the_retry_and_then_there_is_nothing_left(
    judges: dict[str, Judge], make_dataset: Callable[..., Dataset]
) -> None:
    run = run_cancel(run=run_create(dataset=make_dataset(6), judge=judges[SUPPORT_JUDGE]))
    code, out, err = run_eval("--retry", str(run.pk), "--wait")
    assert code == 0, err
    assert out.strip().splitlines()[-1].endswith(": completed")
    code, _, err = run_eval("--retry", str(run.pk))
    assert code == 2 and "nothing to retry" in err
    assert Run.objects.filter(retry_of=run).count() == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--retry", "999"], "There is no run 999."),
        (["--retry", "RUN", "--judge", SUPPORT_JUDGE], "--retry takes the dataset, judge"),
        ([], "Give --dataset and --judge (or --retry RUN_ID)."),
    ],
)
def test_retry_usage_errors_exit_2(
    judges: dict[str, Judge], make_dataset: Callable[..., Dataset], args: list[str], message: str
) -> None:
    run = run_cancel(run=run_create(dataset=make_dataset(2), judge=judges[SUPPORT_JUDGE]))
    code, _, err = run_eval(*[str(run.pk) if arg == "RUN" else arg for arg in args])
    assert code == 2 and message in err
    assert not Run.objects.filter(retry_of=run).exists()


# --- A judge API that throttles or fails for a while -------------------------------------------------


class Flaky(httpx.BaseTransport):
    """The offline judge behind a judge API that first answers GETs of matching paths with `replies`."""

    def __init__(self, inner: httpx.BaseTransport, path: str, replies: list[httpx.Response]) -> None:
        self.inner, self.path, self.replies = inner, re.compile(path), list(replies)
        self.faked = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "GET" and self.path.search(request.url.path) and self.replies:
            self.faked += 1
            return self.replies.pop(0)
        return self.inner.handle_request(request)


def throttled(seconds: int = 3) -> httpx.Response:
    return httpx.Response(
        429,
        headers={"Retry-After": str(seconds)},
        json={"title": "Throttled.", "detail": "Request was throttled.", "code": "throttled"},
    )


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """What the command would have slept for, waiting on the judge API (it never sleeps here)."""
    slept: list[float] = []
    monkeypatch.setattr(client, "patience_sleep", slept.append)
    return slept


def flaky(monkeypatch: pytest.MonkeyPatch, path: str, *replies: httpx.Response) -> Flaky:
    assert client.default_transport is not None
    transport = Flaky(client.default_transport, path, list(replies))
    monkeypatch.setattr(client, "default_transport", transport)
    return transport


def test_a_throttled_judge_list_is_waited_out_and_the_wait_is_said(
    db: None, make_dataset: Callable[..., Dataset], waits: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    # No judge is known yet: the command lists them, and the API throttles the first two tries.
    api = flaky(monkeypatch, r"/v1/judges/$", throttled(3), throttled(4))
    code, out, err = run_eval("--dataset", str(make_dataset(3).pk), "--judge", SUPPORT_JUDGE)
    assert code == 0, err
    assert api.faked == 2 and waits == [3.0, 4.0]
    assert err.splitlines() == [
        "judge API throttled (429); trying again in 3 s",
        "judge API throttled (429); trying again in 4 s",
    ]
    assert out.strip().splitlines()[-1] == f"run {Run.objects.get().pk}: queued"


def test_a_judge_api_that_keeps_failing_exits_2_once_the_budget_is_spent(
    db: None, make_dataset: Callable[..., Dataset], waits: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(client, "RETRY_BUDGET_SECONDS", 20.0)
    flaky(monkeypatch, r"/v1/judges/$", *[httpx.Response(503, text="<h1>Service Unavailable</h1>")] * 50)
    code, _, err = run_eval("--dataset", str(make_dataset(3).pk), "--judge", SUPPORT_JUDGE)
    assert code == 2
    assert sum(waits) == pytest.approx(20.0, abs=1.0) and len(waits) > 3
    assert "judge API failed (503); trying again in" in err
    assert "judge API failed (503); giving up after 20 s" in err
    assert "Could not list the judges: The judge API failed (503): Service Unavailable" in err
    assert not Run.objects.exists()


def test_a_refused_key_exits_2_at_once(
    db: None, make_dataset: Callable[..., Dataset], waits: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    refused = httpx.Response(401, json={"title": "Not authenticated.", "detail": "Bad key.", "code": "x"})
    flaky(monkeypatch, r"/v1/judges/$", refused)
    code, _, err = run_eval("--dataset", str(make_dataset(3).pk), "--judge", SUPPORT_JUDGE)
    assert code == 2 and waits == []
    assert "Could not list the judges: The judge API refused Docket's key (401)" in err


def test_the_judges_version_is_pinned_after_waiting_out_a_throttle(
    judges: dict[str, Judge],
    make_dataset: Callable[..., Dataset],
    waits: list[float],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    judge = judges[SUPPORT_JUDGE]
    assert not judge.version_id  # list rows carry none: the command asks for the judge's detail
    flaky(monkeypatch, rf"/v1/judges/{judge.remote_id}/$", throttled(2))
    code, _, err = run_eval("--dataset", str(make_dataset(3).pk), "--judge", SUPPORT_JUDGE)
    assert code == 0, err
    assert waits == [2.0]
    run = Run.objects.get()
    assert run.judge_version_id and run.judge_version_id == Judge.objects.get(pk=judge.pk).version_id


def test_thresholds_are_learned_after_waiting_out_a_failing_log_read(
    judges: dict[str, Judge],
    make_dataset: Callable[..., Dataset],
    waits: list[float],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    flaky(monkeypatch, r"/v1/execution-logs/[^/]+/$", httpx.Response(502, text="Bad Gateway"), throttled(1))
    dataset = make_dataset(4, response=half_curt)
    code, out, err = run_eval("--dataset", str(dataset.pk), "--judge", SUPPORT_JUDGE, "--wait")
    assert code == 0, err
    assert "judge API failed (502); trying again in" in err
    assert "judge API throttled (429); trying again in 1 s" in err
    run = Run.objects.get()
    assert summary_rows(out, run)["Politeness"] == ["0.6", "judge's", "50%"]


@pytest.mark.parametrize("suffix", ["/", "/v1", "/v1/"])
def test_a_judge_api_url_with_v1_or_a_slash_judges_and_learns_thresholds(
    db: None, make_dataset: Callable[..., Dataset], settings: SettingsWrapper, suffix: str
) -> None:
    # Scorable's own CLI wants SCORABLE_API_URL with /v1; once that meant /v1/v1/ paths and 404s.
    settings.JUDGE_API_URL = JUDGE_URL + suffix
    code, out, err = run_eval("--dataset", str(make_dataset(4).pk), "--judge", SUPPORT_JUDGE, "--wait")
    assert code == 0, err
    run = Run.objects.get()
    assert run.status == Run.Status.COMPLETED and run.judge.api_url == JUDGE_URL
    # The judge's thresholds were read: the run's judge counts as judged through this very API.
    assert summary_rows(out, run)["Politeness"][:2] == ["0.6", "judge's"]
