"""`manage.py run_eval`: the CI gate."""

from __future__ import annotations

import io
from collections.abc import Callable

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from evals.models import Dataset, Judge, Run
from tests.conftest import QA_JUDGE, RAG_JUDGE, SUPPORT_JUDGE

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
    assert lines[-1 - len(run.evaluators) - 1].split() == ["evaluator", "n", "mean", "min", ">=", "0.5"]
    for name, mean, n in run.evaluator_means:
        row = next(line for line in lines if line.startswith(name))
        assert row.split()[-4:-1] == [str(n), f"{mean:.3f}", f"{run.score_summary[name]['min']:.3f}"]


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
