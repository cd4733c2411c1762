"""Judge noise: re-judging a sample of a run (the plan, the check's runs, idempotency) and the report."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence

import pytest
from django.contrib.auth.models import AbstractBaseUser
from django.db import connection

from evals import tasks
from evals.models import Dataset, Judge, Run
from evals.services import noise as noise_service
from evals.services.intervals import wilson
from evals.services.noise import (
    MAX_REPEATS,
    MAX_SAMPLE,
    NoiseError,
    noise_check_create,
    noise_check_plan,
    noise_report,
)
from evals.services.runs import run_create
from tests.conftest import RAG_JUDGE
from tests.factories import build_run, pump_until_finished

CONTEXTS = [
    "The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris, on the Seine.",
    "It was completed in 1889 as the entrance arch of the World's Fair.",
]


def repeat_of(
    run: Run, repeat: int, scores: dict[str, Sequence[float | None]], positions: Sequence[int]
) -> Run:
    """A finished noise run of `run` with these scores at these positions (None everywhere: failed)."""
    check = build_run(scores, dataset=run.dataset, judge=run.judge, positions=positions, thresholds={})
    Run.objects.filter(pk=check.pk).update(noise_of=run, noise_repeat=repeat)
    return check


def mark_finished(runs: Sequence[Run]) -> None:
    Run.objects.filter(pk__in=[run.pk for run in runs]).update(status=Run.Status.COMPLETED)


def sampled_positions(check: Run) -> list[int]:
    return sorted(check.items.values_list("position", flat=True))


# --- The report: worked examples ------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_report_pools_within_item_variances_and_counts_flips_by_hand() -> None:
    run = build_run({"quality": [0.4, 0.8, 0.2, 0.9]}, thresholds={"quality": 0.5})
    repeat_of(run, 1, {"quality": [0.6, 0.8, 0.3]}, positions=[0, 1, 2])
    repeat_of(run, 2, {"quality": [0.5, 0.7, None]}, positions=[0, 1, 2])

    report = noise_report(run=run)

    (entry,) = report.evaluators
    # Row 0: [0.4, 0.6, 0.5], mean 0.5, sample variance (0.01 + 0.01 + 0) / 2 = 0.01.
    # Row 1: [0.8, 0.8, 0.7], mean 0.7667, variance (2 × 0.0333² + 0.0667²) / 2 = 0.003333.
    # Row 2: [0.2, 0.3] (repeat 2 failed there), variance 0.05² × 2 / 1 = 0.005.
    # Row 3: only the run's own 0.9, never repeated: left out.
    # Pooled SD = sqrt((0.01 + 0.003333 + 0.005) / 3) = sqrt(0.0061111) = 0.078174.
    assert (entry.name, entry.items, entry.judgements) == ("quality", 3, 8)
    assert entry.sd.estimate == pytest.approx(0.078174, abs=1e-6)
    assert entry.sd.low is not None and entry.sd.high is not None
    assert entry.sd.low <= 0.078174 <= entry.sd.high
    # At 0.5, row 0 goes fail, pass, pass: one flip in three rows.
    assert entry.flips == 1
    assert entry.flip_share == wilson(1, 3)
    assert entry.threshold == 0.5
    assert len(report.checks) == 2 and not report.in_flight


@pytest.mark.django_db
def test_flips_are_judged_at_the_source_runs_threshold_not_the_repeats() -> None:
    run = build_run({"tone": [0.7, 0.7]}, thresholds={"tone": 0.75})
    # The repeat learned 0.5, where 0.7 and 0.8 both pass; at the run's 0.75, 0.7 fails and 0.8 passes.
    check = repeat_of(run, 1, {"tone": [0.8, 0.7]}, positions=[0, 1])
    Run.objects.filter(pk=check.pk).update(thresholds={"tone": 0.5})

    (entry,) = noise_report(run=run).evaluators

    assert (entry.flips, entry.items, entry.threshold) == (1, 2, 0.75)


@pytest.mark.django_db
def test_identical_repeats_report_zero_spread_and_no_flips() -> None:
    run = build_run({"quality": [0.3, 0.5, 0.9], "tone": [0.6, 0.6, 0.6]}, thresholds={})
    repeat_of(run, 1, {"quality": [0.3, 0.5, 0.9], "tone": [0.6, 0.6, 0.6]}, positions=[0, 1, 2])

    report = noise_report(run=run)

    assert [entry.name for entry in report.evaluators] == ["quality", "tone"]
    for entry in report.evaluators:
        assert (entry.sd.estimate, entry.sd.low, entry.sd.high) == (0.0, 0.0, 0.0)
        assert entry.flips == 0
        # Wilson for 0 of 3: an upper bound well above 0 (nothing seen in 3 tries proves little).
        assert entry.flip_share.estimate == 0.0
        assert entry.flip_share.high == pytest.approx(0.5615, abs=1e-4)


@pytest.mark.django_db
def test_a_run_without_checks_reports_nothing() -> None:
    run = build_run({"quality": [0.3, 0.5]})
    report = noise_report(run=run)
    assert (report.checks, report.in_flight, report.evaluators) == ([], False, [])


@pytest.mark.django_db
def test_a_check_in_flight_counts_only_its_completed_items() -> None:
    run = build_run({"quality": [0.2, 0.4, 0.6]}, thresholds={})
    check = repeat_of(run, 1, {"quality": [0.3, 0.4, 0.9]}, positions=[0, 1, 2])
    Run.objects.filter(pk=check.pk).update(status=Run.Status.RUNNING)
    check.items.filter(position=2).update(status="processing")

    report = noise_report(run=run)

    assert report.in_flight and [c.pk for c in report.active] == [check.pk]
    (entry,) = report.evaluators
    # Rows 0 and 1 only: variances 0.005 and 0 -> sqrt(0.0025) = 0.05.
    assert entry.items == 2
    assert entry.sd.estimate == pytest.approx(0.05)


# --- Plan and start ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_check_makes_m_linked_runs_over_the_same_random_sample_of_scored_items(
    user: AbstractBaseUser,
) -> None:
    values: list[float | None] = [0.1 * (index % 10) for index in range(30)]
    values[3] = values[7] = None  # two rows the judge failed: nothing to compare a repeat with
    run = build_run({"quality": values}, name="nightly", thresholds={"quality": 0.6})
    Run.objects.filter(pk=run.pk).update(threshold_overrides={"quality": 0.65}, batch_size=20)
    run.refresh_from_db()

    runs, created = noise_check_create(run=run, sample=10, repeats=3, created_by=user, seed=7)

    assert created and len(runs) == 3
    assert [(check.noise_of_id, check.noise_repeat) for check in runs] == [
        (run.pk, 1),
        (run.pk, 2),
        (run.pk, 3),
    ]
    assert [check.name for check in runs] == [f"Noise check {r} of 3 of nightly" for r in (1, 2, 3)]
    positions = sampled_positions(runs[0])
    assert len(positions) == 10 and 3 not in positions and 7 not in positions
    assert all(sampled_positions(check) == positions for check in runs)
    for check in runs:
        assert (check.judge_id, check.judge_version_id, check.batch_size) == (run.judge_id, "v1", 20)
        assert check.threshold_overrides == {"quality": 0.65}
        assert check.created_by == user and check.status == Run.Status.QUEUED and check.total_count == 10


@pytest.mark.django_db
def test_the_sample_is_all_scored_items_when_the_run_has_fewer() -> None:
    run = build_run({"quality": [0.5, None, 0.7, 0.2]})
    plan = noise_check_plan(run=run, sample=50, repeats=2)
    assert (plan.sample, plan.scored, plan.asked, plan.to_send, plan.blocked) == (3, 3, 50, 6, "")
    runs, _ = noise_check_create(run=run, sample=50, repeats=2)
    assert [sampled_positions(check) for check in runs] == [[0, 2, 3], [0, 2, 3]]


@pytest.mark.django_db
def test_the_same_seed_draws_the_same_sample() -> None:
    run = build_run({"quality": [0.5] * 100})
    drawn = []
    for seed in (7, 7, 8):
        runs, created = noise_check_create(run=run, sample=10, repeats=1, seed=seed)
        assert created
        drawn.append(sampled_positions(runs[0]))
        mark_finished(runs)
    assert drawn[0] == drawn[1]
    assert drawn[0] != drawn[2]


@pytest.mark.django_db
def test_while_a_check_is_in_flight_another_request_returns_it_and_sends_nothing() -> None:
    run = build_run({"quality": [0.5] * 20})
    first, created = noise_check_create(run=run, sample=5, repeats=2)
    assert created

    again, created_again = noise_check_create(run=run, sample=8, repeats=3)

    assert (again, created_again) == (first, False)
    assert Run.objects.filter(noise_of=run).count() == 2
    plan = noise_check_plan(run=run)
    assert plan.active == first and plan.blocked.startswith("A noise check of this run is already under way")


@pytest.mark.django_db
def test_a_finished_check_does_not_block_the_next_and_both_count_in_the_report() -> None:
    run = build_run({"quality": [0.5] * 20})
    first, _ = noise_check_create(run=run, sample=5, repeats=2)
    mark_finished(first)
    second, created = noise_check_create(run=run, sample=5, repeats=2)
    assert created and {check.pk for check in second}.isdisjoint(check.pk for check in first)
    assert len(noise_report(run=run).checks) == 4


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("sample", "repeats", "field", "message"),
    [
        (0, 2, "sample", f"Sample: choose between 1 and {MAX_SAMPLE:,} items."),
        (MAX_SAMPLE + 1, 2, "sample", f"Sample: choose between 1 and {MAX_SAMPLE:,} items."),
        (50, 0, "repeats", f"Repeats: choose between 1 and {MAX_REPEATS} repeats."),
        (50, MAX_REPEATS + 1, "repeats", f"Repeats: choose between 1 and {MAX_REPEATS} repeats."),
    ],
)
def test_out_of_bounds_numbers_are_refused_naming_the_field(
    sample: int, repeats: int, field: str, message: str
) -> None:
    run = build_run({"quality": [0.5] * 5})
    with pytest.raises(NoiseError) as raised:
        noise_check_create(run=run, sample=sample, repeats=repeats)
    assert (raised.value.field, raised.value.message) == (field, message)
    with pytest.raises(NoiseError):
        noise_check_plan(run=run, sample=sample, repeats=repeats)
    assert not Run.objects.filter(noise_of=run).exists()


@pytest.mark.django_db
def test_a_run_still_running_is_refused() -> None:
    run = build_run({"quality": [0.5] * 5})
    Run.objects.filter(pk=run.pk).update(status=Run.Status.RUNNING)
    run.refresh_from_db()
    with pytest.raises(NoiseError, match="Wait for the run to finish") as raised:
        noise_check_create(run=run)
    assert raised.value.field == "run"
    assert noise_check_plan(run=run).blocked.startswith("Wait for the run to finish")


@pytest.mark.django_db
def test_a_noise_run_cannot_be_checked_itself() -> None:
    run = build_run({"quality": [0.5] * 5})
    check = repeat_of(run, 1, {"quality": [0.5] * 5}, positions=range(5))
    check.refresh_from_db()
    with pytest.raises(NoiseError, match="itself a noise check") as raised:
        noise_check_create(run=check)
    assert raised.value.field == "run"


@pytest.mark.django_db
def test_a_run_with_no_scored_item_is_refused() -> None:
    run = build_run({"quality": [None, None]})
    assert noise_check_plan(run=run).sample == 0
    with pytest.raises(NoiseError, match="No item of this run has a score") as raised:
        noise_check_create(run=run)
    assert raised.value.field == "run"


@pytest.mark.django_db(transaction=True)
def test_two_simultaneous_requests_make_one_check(
    monkeypatch: pytest.MonkeyPatch, judges: dict[str, Judge], make_dataset: Callable[..., Dataset]
) -> None:
    run = judged_run(make_dataset, judges[RAG_JUDGE], 30)
    # Both requests find no check in flight before either inserts: only the database tells them apart.
    both_checked = threading.Barrier(2, timeout=30)
    real_checks = noise_service._checks_in_flight
    waited: set[int] = set()

    def checks_then_wait(source: Run) -> list[Run]:
        found = real_checks(source)
        if threading.get_ident() not in waited:
            waited.add(threading.get_ident())
            both_checked.wait()
        return found

    monkeypatch.setattr(noise_service, "_checks_in_flight", checks_then_wait)
    results: list[tuple[list[Run], bool]] = []
    errors: list[BaseException] = []

    def start() -> None:
        try:
            results.append(noise_check_create(run=run, sample=10, repeats=2))
        except BaseException as error:  # noqa: BLE001 - reported by the assertion below
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=start) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert not errors, errors
    checks = list(Run.objects.filter(noise_of=run).order_by("noise_repeat"))
    assert len(checks) == 2, "two simultaneous requests made two checks"
    assert sorted(created for _, created in results) == [False, True]
    assert all([check.pk for check in runs] == [check.pk for check in checks] for runs, _ in results)


# --- End to end on the offline judge -------------------------------------------------------------------


def judged_run(make_dataset: Callable[..., Dataset], judge: Judge, rows: int) -> Run:
    """A finished run of the RAG judge over rows that every evaluator scores 0.5 (mid-range)."""
    dataset = make_dataset(
        rows,
        request="Where is the tower and when was it finished?",
        response="The Eiffel Tower is on the Champ de Mars. It was painted gold by the mayor in 1999.",
        contexts=CONTEXTS,
    )
    run = pump_until_finished(run_create(dataset=dataset, judge=judge))
    # The pump leaves this to a task; run it here, so the run passes at the judge's own thresholds.
    tasks.run_thresholds_learn(run.pk)
    run.refresh_from_db()
    return run


def run_check(run: Run, *, sample: int, repeats: int) -> list[Run]:
    runs, created = noise_check_create(run=run, sample=sample, repeats=repeats, seed=1)
    assert created
    return [pump_until_finished(check) for check in runs]


@pytest.mark.django_db
def test_without_noise_the_offline_judge_repeats_itself_and_the_report_says_zero(
    judges: dict[str, Judge], make_dataset: Callable[..., Dataset], offline_judge: Callable[[str], None]
) -> None:
    offline_judge("item_ms=1,lanes=100,seed=3")
    run = judged_run(make_dataset, judges[RAG_JUDGE], 30)

    checks = run_check(run, sample=20, repeats=2)

    assert [check.status for check in checks] == [Run.Status.COMPLETED] * 2
    report = noise_report(run=run)
    assert [entry.name for entry in report.evaluators] == [
        "Context support",
        "Request relevance",
        "Context use",
    ]
    for entry in report.evaluators:
        assert (entry.items, entry.judgements) == (20, 60)
        assert (entry.sd.estimate, entry.sd.low, entry.sd.high) == (0.0, 0.0, 0.0)
        assert entry.flips == 0


@pytest.mark.django_db
def test_with_noise_the_report_measures_about_the_judges_standard_deviation(
    judges: dict[str, Judge], make_dataset: Callable[..., Dataset], offline_judge: Callable[[str], None]
) -> None:
    offline_judge("item_ms=1,lanes=100,noise=0.1,seed=3")
    run = judged_run(make_dataset, judges[RAG_JUDGE], 40)

    run_check(run, sample=30, repeats=2)

    report = noise_report(run=run)
    by_name = {entry.name: entry for entry in report.evaluators}
    for entry in report.evaluators:
        # 30 items × 3 judgements, each 0.5 + N(0, 0.1): a pooled SD on 60 degrees of freedom, whose
        # standard error is about 0.1 / sqrt(2 × 60) = 0.009; 0.1 ± 0.03 is over three of them.
        assert entry.items == 30
        assert entry.sd.estimate is not None and 0.07 < entry.sd.estimate < 0.13
        assert entry.sd.low is not None and entry.sd.high is not None
        assert entry.sd.low < entry.sd.estimate < entry.sd.high
    # Request relevance passes at 0.5, right where its scores sit: three judgements all on one side
    # happen with chance 2 × 0.5³ = 0.25, so about 75% of items flip. Context support passes at 0.7,
    # two SDs above: a flip needs one of three judgements past it (1 - 0.977³ = 7%).
    relevance, support = by_name["Request relevance"], by_name["Context support"]
    assert relevance.flip_share.estimate is not None and 0.5 < relevance.flip_share.estimate < 0.95
    assert support.flips < relevance.flips
    assert math.isclose(relevance.threshold, 0.5) and math.isclose(support.threshold, 0.7)
