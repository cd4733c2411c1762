"""Each run's pass thresholds: learned once from one execution log when its first item completes, then fixed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.db import transaction

from evals import tasks
from evals.client import ExecutionLog, JudgeAPI, JudgeError
from evals.models import Dataset, Item, Judge, Run
from evals.selectors.stats import run_statistics
from evals.services.runs import run_create
from evals.services.thresholds import run_thresholds_learn, runs_thresholds_learn_due
from tests.conftest import JUDGE_URL, RAG_JUDGE, SUPPORT_JUDGE
from tests.factories import build_run, pump_until_finished

pytestmark = pytest.mark.django_db

CONTEXTS = ["To reset a password, open Settings, choose Security and press Reset."]


class FakeLogs:
    """A judge API that answers execution logs only, with these thresholds (or this error)."""

    def __init__(
        self,
        thresholds: dict[str, float] | None = None,
        *,
        error: JudgeError | None = None,
        during: Callable[[], None] | None = None,
        base_url: str = JUDGE_URL,
    ) -> None:
        self.thresholds = thresholds or {}
        self.error = error
        self.during = during
        self.base_url = base_url
        self.asked: list[str] = []

    def get_execution_log(self, log_id: str) -> ExecutionLog:
        self.asked.append(log_id)
        if self.during is not None:
            self.during()
        if self.error is not None:
            raise self.error
        return ExecutionLog(
            id=log_id,
            score=0.5,
            cost=0.001,
            model="fake-model",
            model_call_duration=0.1,
            evaluator_latencies=(),
            thresholds=dict(self.thresholds),
        )

    def close(self) -> None:
        pass


def learn(run: Run, api: FakeLogs) -> str:
    return run_thresholds_learn(run=run, api=api)  # type: ignore[arg-type]


def log_fetches(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The execution logs Docket asks the judge for, counted at the client."""
    asked: list[str] = []
    original = JudgeAPI.get_execution_log

    def counting(self: JudgeAPI, log_id: str) -> ExecutionLog:
        asked.append(log_id)
        return original(self, log_id)

    monkeypatch.setattr(JudgeAPI, "get_execution_log", counting)
    return asked


def test_a_run_learns_the_judges_thresholds_when_its_first_item_completes(
    judges: dict[str, Judge],
    make_dataset: Callable[..., Dataset],
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: Any,
) -> None:
    enqueued: list[int] = []
    monkeypatch.setattr("evals.pump.learn_thresholds_later", enqueued.append)
    asked = log_fetches(monkeypatch)
    # Two batches, several polls with completed items: only the first one asks for the thresholds.
    run = run_create(dataset=make_dataset(150, contexts=CONTEXTS), judge=judges[RAG_JUDGE])
    with django_capture_on_commit_callbacks(execute=True):
        run = pump_until_finished(run)
    assert enqueued == [run.pk]
    assert run.threshold_for("Context support") == (0.5, "pending")

    tasks.run_thresholds_learn(run.pk)
    run.refresh_from_db()
    # The offline judge's own thresholds (offline_judge/catalogue.py), not Docket's 0.5.
    assert run.thresholds == {"Context support": 0.7, "Request relevance": 0.5, "Context use": 0.5}
    assert run.threshold_for("Context support") == (0.7, "judge")
    assert run.thresholds_learned_at is not None
    assert len(asked) == 1
    # The log read is kept on its item, as the item page keeps one.
    item = Item.objects.get(run=run, execution_log_id=asked[0])
    assert item.log_detail is not None and item.log_detail["thresholds"]["Context support"] == 0.7
    stats = {entry.name: entry for entry in run_statistics(run=run).evaluators}
    assert (stats["Context support"].threshold, stats["Context support"].threshold_source) == (0.7, "judge")

    # Learned once: the task run again (a duplicate, the watchdog) asks the judge nothing.
    tasks.run_thresholds_learn(run.pk)
    assert len(asked) == 1


def test_a_run_that_has_its_thresholds_enqueues_no_learning(
    judges: dict[str, Judge],
    make_dataset: Callable[..., Dataset],
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: Any,
) -> None:
    enqueued: list[int] = []
    monkeypatch.setattr("evals.pump.learn_thresholds_later", enqueued.append)
    run = run_create(dataset=make_dataset(5), judge=judges[SUPPORT_JUDGE])
    Run.objects.filter(pk=run.pk).update(thresholds={"Politeness": 0.6}, thresholds_learned_at=run.created_at)
    with django_capture_on_commit_callbacks(execute=True):
        pump_until_finished(run)
    assert enqueued == []


def test_two_learners_at_once_leave_one_answer() -> None:
    run = build_run({"Politeness": [0.5, 0.65, 0.8]})
    outcomes: list[str] = []
    # The second learner reads its log and stores it while the first is still waiting for its own.
    second = FakeLogs({"Politeness": 0.7})
    first = FakeLogs(
        {"Politeness": 0.9},
        during=lambda: outcomes.append(learn(Run.objects.select_related("judge").get(pk=run.pk), second)),
    )
    outcomes.insert(0, learn(run, first))
    assert outcomes == ["already", "learned"]
    run.refresh_from_db()
    assert run.thresholds == {"Politeness": 0.7}
    assert run.threshold_for("Politeness") == (0.7, "judge")
    # A learned run never changes, whatever a later log says.
    later = FakeLogs({"Politeness": 0.1})
    assert learn(run, later) == "already" and later.asked == []
    run.refresh_from_db()
    assert run.thresholds == {"Politeness": 0.7}


@pytest.mark.parametrize(
    ("error", "outcome", "source"),
    [
        (JudgeError("gone", status=404, permanent=True), "nothing", "default"),
        (JudgeError("bad request", status=400, permanent=True), "nothing", "default"),
        (JudgeError("unavailable", status=503), "retry", "pending"),
        (JudgeError("timed out", reason="timeout"), "retry", "pending"),
        # Docket's key was refused: fixing the key makes the log readable, so try again later.
        (JudgeError("refused", status=401, permanent=True), "retry", "pending"),
    ],
)
def test_a_log_that_cannot_be_had_learns_the_default_and_a_passing_failure_tries_again(
    error: JudgeError, outcome: str, source: str
) -> None:
    run = build_run({"Politeness": [0.4, 0.55, 0.8]})
    assert learn(run, FakeLogs(error=error)) == outcome
    run.refresh_from_db()
    assert run.threshold_for("Politeness") == (0.5, source)
    assert (run.thresholds_learned_at is not None) is (outcome == "nothing")
    stats = run_statistics(run=run).evaluators[0]
    assert (stats.threshold, stats.threshold_source, stats.passed) == (0.5, source, 2)


def test_a_log_already_fetched_on_the_item_page_is_read_instead_of_asking_again() -> None:
    run = build_run({"Politeness": [0.4, 0.55, 0.8]})
    Item.objects.filter(run=run, position=0).update(
        log_detail={"cost": 0.01, "model": "m", "thresholds": {"Politeness": 0.6}}
    )
    api = FakeLogs({"Politeness": 0.9})
    assert learn(run, api) == "learned"
    assert api.asked == [] and run.threshold_for("Politeness") == (0.6, "judge")


def test_a_run_judged_through_another_api_is_left_alone() -> None:
    run = build_run({"Politeness": [0.4, 0.8]})
    api = FakeLogs({"Politeness": 0.9}, base_url="https://api.scorable.ai")
    assert learn(run, api) == "elsewhere" and api.asked == []
    assert runs_thresholds_learn_due(api=api) == 0  # type: ignore[arg-type]
    run.refresh_from_db()
    assert run.thresholds_learned_at is None


def test_the_watchdog_learns_for_runs_that_missed_their_task_a_few_per_round() -> None:
    runs = [build_run({"Politeness": [0.4, 0.8]}, name=f"old {n}") for n in range(3)]
    learned = build_run({"Politeness": [0.4, 0.8]}, thresholds={"Politeness": 0.3})
    api = FakeLogs({"Politeness": 0.6})
    assert runs_thresholds_learn_due(api=api, limit=2) == 2  # type: ignore[arg-type]
    assert runs_thresholds_learn_due(api=api, limit=2) == 1  # type: ignore[arg-type]
    assert runs_thresholds_learn_due(api=api, limit=2) == 0  # type: ignore[arg-type]
    assert len(api.asked) == 3
    for run in [*runs, learned]:
        run.refresh_from_db()
    assert [run.threshold_for("Politeness") for run in runs] == [(0.6, "judge")] * 3
    assert learned.threshold_for("Politeness") == (0.3, "judge")


def test_the_watchdog_stops_at_the_first_passing_failure() -> None:
    for n in range(3):
        build_run({"Politeness": [0.4, 0.8]}, name=f"old {n}")
    api = FakeLogs(error=JudgeError("unavailable", status=503))
    assert runs_thresholds_learn_due(api=api) == 0  # type: ignore[arg-type]
    assert len(api.asked) == 1
    assert not Run.objects.exclude(thresholds_learned_at=None).exists()


def test_the_watchdog_task_learns_through_the_judge_api(
    judges: dict[str, Judge], make_dataset: Callable[..., Dataset], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("evals.services.runs.wake_pump", lambda: None)
    # Finished without its task (no on-commit here: the task was lost).
    run = pump_until_finished(run_create(dataset=make_dataset(4), judge=judges[SUPPORT_JUDGE]))
    assert run.thresholds_learned_at is None
    tasks.watchdog()
    run.refresh_from_db()
    assert run.threshold_for("Politeness") == (0.6, "judge")
    assert run.threshold_for("PII safety") == (1.0, "judge")


def test_completed_items_without_any_log_learn_the_default() -> None:
    run = build_run({"Politeness": [0.4, 0.8]})
    Item.objects.filter(run=run).update(execution_log_id="")
    api = FakeLogs({"Politeness": 0.6})
    assert learn(run, api) == "nothing" and api.asked == []
    assert run.threshold_for("Politeness") == (0.5, "default")


def test_a_run_with_nothing_completed_yet_stays_pending() -> None:
    run = build_run({"Politeness": [None, None]})
    assert learn(run, FakeLogs({"Politeness": 0.6})) == "no-item"
    assert run.threshold_for("Politeness") == (0.5, "pending")


def test_the_learning_task_of_a_deleted_run_does_nothing() -> None:
    run = build_run({"Politeness": [0.4, 0.8]})
    pk = run.pk
    with transaction.atomic():
        run.delete()
    tasks.run_thresholds_learn(pk)
    assert not Run.objects.filter(pk=pk).exists()
