"""A dataset family's history: which runs belong (the 90% share of input keys, the judge, retries, finished
runs), and each evaluator's mean and interval per run against numbers worked out independently."""

from __future__ import annotations

import math
import statistics
from datetime import timedelta

import pytest
from django.utils import timezone

from evals.models import Example, Run
from evals.services.history import family_trend, run_family
from tests.factories import QUESTIONS, build_run, make_judge, run_over

pytestmark = pytest.mark.django_db


def new_questions(count: int, tag: str) -> list[str]:
    return [f"A question only {tag} has ({number})" for number in range(count)]


def test_a_dataset_sharing_exactly_90_percent_of_keys_is_in_and_one_key_fewer_is_out() -> None:
    judge = make_judge(evaluators=["Politeness"])
    anchor = run_over(QUESTIONS, judge=judge, name="v1")
    # 90 of the 100 questions, plus 10 new ones: 90 / max(100, 100) = 90%.
    ninety = run_over(QUESTIONS[:90] + new_questions(10, "ninety"), judge=judge, name="ninety")
    # 89 of them plus 11 new ones: 89%.
    eighty_nine = run_over(QUESTIONS[:89] + new_questions(11, "eighty-nine"), judge=judge, name="89")
    family = run_family(run=anchor)
    assert [run.name for run in family.runs] == ["v1", "ninety"]
    assert family.shares == {anchor.dataset_id: 1.0, ninety.dataset_id: 0.9}
    assert family.anchor_keys == 100
    # The share is symmetric: seen from either member, the other belongs; the 89% one has only itself.
    assert [run.pk for run in run_family(run=ninety).runs] == [anchor.pk, ninety.pk]
    assert [run.pk for run in run_family(run=eighty_nine).runs] == [eighty_nine.pk]


def test_a_subset_or_superset_counts_against_the_larger_dataset() -> None:
    judge = make_judge(evaluators=["Politeness"])
    anchor = run_over(QUESTIONS, judge=judge, name="all")
    subset_in = run_over(QUESTIONS[:90], judge=judge, name="90 of 100")  # 90 / 100
    subset_out = run_over(QUESTIONS[:89], judge=judge, name="89 of 100")  # 89 / 100
    superset_in = run_over(
        QUESTIONS + new_questions(11, "plus 11"), judge=judge, name="100 + 11"
    )  # 100 / 111
    superset_out = run_over(
        QUESTIONS + new_questions(12, "plus 12"), judge=judge, name="100 + 12"
    )  # 100 / 112
    family = run_family(run=anchor)
    assert [run.name for run in family.runs] == ["all", "90 of 100", "100 + 11"]
    assert family.shares[superset_in.dataset_id] == pytest.approx(100 / 111)
    assert subset_out.dataset_id not in family.shares and superset_out.dataset_id not in family.shares
    assert subset_in.dataset_id in family.shares


def test_rows_pair_by_their_inputs_whatever_the_order_the_answers_or_repeats() -> None:
    judge = make_judge(evaluators=["Politeness"])
    anchor = run_over(QUESTIONS[:10], judge=judge, name="v1")
    # v2: the same questions shuffled, every answer rewritten, and each question uploaded twice.
    shuffled = list(reversed(QUESTIONS[:10])) * 2
    v2 = run_over(shuffled, judge=judge, name="v2", responses=[f"A better answer {n}" for n in range(20)])
    family = run_family(run=anchor)
    assert [run.pk for run in family.runs] == [anchor.pk, v2.pk]
    # Distinct keys: 10 in each, all shared.
    assert family.shares[v2.dataset_id] == 1.0


def test_runs_of_another_judge_are_not_in_the_family() -> None:
    judge = make_judge("Support", evaluators=["Politeness"])
    other = make_judge("Support", evaluators=["Politeness"])
    anchor = run_over(QUESTIONS[:10], judge=judge)
    same_dataset_other_judge = build_run(
        {"Politeness": [0.9] * 10}, dataset=anchor.dataset, judge=other, name="other judge"
    )
    same_questions_other_judge = run_over(QUESTIONS[:10], judge=other)
    family = run_family(run=anchor)
    assert [run.pk for run in family.runs] == [anchor.pk]
    assert same_dataset_other_judge.pk not in [run.pk for run in run_family(run=anchor).runs]
    assert [run.pk for run in run_family(run=same_questions_other_judge).runs] == [
        same_dataset_other_judge.pk,
        same_questions_other_judge.pk,
    ]


def test_retries_are_not_runs_of_the_family_but_their_verdicts_count_for_the_run_they_retried() -> None:
    judge = make_judge(evaluators=["Politeness"])
    first = run_over(QUESTIONS[:4], judge=judge, scores={"Politeness": [0.2, None, 0.6, 0.4]}, name="v1")
    # The retry scores row 1, which failed the first time.
    retry = build_run(
        {"Politeness": [0.9]}, dataset=first.dataset, judge=judge, retry_of=first, positions=[1], name="retry"
    )
    later = run_over(QUESTIONS[:4], judge=judge, scores={"Politeness": [0.5, 0.5, 0.7, 0.7]}, name="v2")
    family = run_family(run=later)
    assert [run.pk for run in family.runs] == [first.pk, later.pk]
    # Opened from the retry, the history is that of the run it retried.
    from_retry = run_family(run=retry)
    assert from_retry.anchor.pk == first.pk
    assert [run.pk for run in from_retry.runs] == [first.pk, later.pk]

    [politeness] = family_trend(runs=family.runs).evaluators
    merged = politeness.points[0]
    assert merged is not None
    # Rows 0, 2, 3 from the run, row 1 from its retry: 0.2, 0.9, 0.6, 0.4.
    assert merged.n == 4
    assert merged.mean == pytest.approx(statistics.fmean([0.2, 0.9, 0.6, 0.4]))


def test_runs_not_finished_are_left_out_but_the_anchor_always_counts() -> None:
    judge = make_judge(evaluators=["Politeness"])
    done = run_over(QUESTIONS[:10], judge=judge, name="done")
    running = build_run({"Politeness": [0.5] * 10}, dataset=done.dataset, judge=judge, name="running")
    Run.objects.filter(pk=running.pk).update(status=Run.Status.RUNNING)
    running.refresh_from_db()
    assert [run.name for run in run_family(run=done).runs] == ["done"]
    assert [run.name for run in run_family(run=running).runs] == ["done", "running"]
    # Cancelled, failed and partial runs have finished: they count.
    Run.objects.filter(pk=running.pk).update(status=Run.Status.CANCELLED)
    assert [run.name for run in run_family(run=done).runs] == ["done", "running"]


def test_a_dataset_without_keys_is_a_family_of_its_own_runs() -> None:
    judge = make_judge(evaluators=["Politeness"])
    anchor = run_over(QUESTIONS[:10], judge=judge, name="first")
    build_run({"Politeness": [0.7] * 10}, dataset=anchor.dataset, judge=judge, name="again")
    twin = run_over(QUESTIONS[:10], judge=judge, name="twin")
    Example.objects.filter(dataset__in=[anchor.dataset, twin.dataset]).update(input_key="")
    family = run_family(run=anchor)
    assert [run.name for run in family.runs] == ["first", "again"]
    assert family.anchor_keys == 0


def test_the_family_is_in_time_order_and_bounded_around_the_anchor() -> None:
    judge = make_judge(evaluators=["Politeness"])
    first = run_over(QUESTIONS[:10], judge=judge, name="r0")
    runs = [first] + [
        build_run({"Politeness": [0.5] * 10}, dataset=first.dataset, judge=judge, name=f"r{number}")
        for number in range(1, 6)
    ]
    # Started in the order r0..r5, whatever their ids: give r0 the newest id's time and so on in reverse.
    start = timezone.now() - timedelta(days=30)
    for number, run in enumerate(runs):
        Run.objects.filter(pk=run.pk).update(created_at=start + timedelta(days=number))
    Run.objects.filter(pk=runs[0].pk).update(created_at=start + timedelta(days=10))
    # r0 is now the newest.
    order = ["r1", "r2", "r3", "r4", "r5", "r0"]
    anchor = Run.objects.get(pk=runs[2].pk)  # r2
    assert [run.name for run in run_family(run=anchor).runs] == order
    # With room for 3: the anchor and the runs after it first, then the runs before.
    bounded = run_family(run=anchor, limit=3)
    assert [run.name for run in bounded.runs] == ["r2", "r3", "r4"]
    assert bounded.older_left_out and bounded.newer_left_out
    newest = run_family(run=Run.objects.get(pk=runs[0].pk), limit=3)
    assert [run.name for run in newest.runs] == ["r4", "r5", "r0"]
    assert newest.older_left_out and not newest.newer_left_out


def test_means_and_intervals_equal_those_computed_from_the_scores() -> None:
    judge = make_judge(evaluators=["Politeness", "Concision"])
    v1_scores = {"Politeness": [0.2, 0.5, 0.9, 0.4], "Concision": [1.0, 0.0, 1.0, 1.0]}
    v2_scores = {"Politeness": [0.6, 0.3, 0.9, 0.8], "Concision": [1.0, 1.0, 1.0, 1.0]}
    v1 = run_over(QUESTIONS[:4], judge=judge, scores=v1_scores, name="v1")
    v2 = run_over(QUESTIONS[:4], judge=judge, scores=v2_scores, name="v2")
    trend = family_trend(runs=run_family(run=v2).runs)
    assert [evaluator.name for evaluator in trend.evaluators] == ["Politeness", "Concision"]
    assert [(a.pk, b.pk) for a, b in trend.pairs] == [(v1.pk, v2.pk)]
    # t(0.975, 3) from a printed table; mean and sample standard deviation by the statistics module.
    t_975_3 = 3.182446
    for evaluator in trend.evaluators:
        for point, scores in zip(evaluator.points, (v1_scores, v2_scores), strict=True):
            assert point is not None
            values = scores[evaluator.name]
            mean = statistics.fmean(values)
            half = t_975_3 * statistics.stdev(values) / math.sqrt(len(values))
            assert point.n == 4
            assert point.mean == pytest.approx(mean)
            assert point.interval.low == pytest.approx(mean - half, abs=1e-6)
            assert point.interval.high == pytest.approx(mean + half, abs=1e-6)
    politeness, concision = trend.evaluators
    # Politeness 0.5 -> 0.65: up 0.15, inside overlapping intervals. Concision 0.75 -> 1.0, every v2 score
    # the same: an interval of width 0 that lies inside v1's wide one.
    assert politeness.points[1] is not None and politeness.points[1].change == pytest.approx(0.15)
    assert politeness.points[1].direction == "same"
    assert concision.points[1] is not None and concision.points[1].change == pytest.approx(0.25)
    assert politeness.points[0] is not None and politeness.points[0].change is None


def test_a_clear_improvement_is_marked_better_and_a_single_score_has_no_interval() -> None:
    judge = make_judge(evaluators=["Politeness"])
    low = run_over(QUESTIONS[:5], judge=judge, scores={"Politeness": [0.1, 0.2, 0.1, 0.2, 0.15]})
    high = run_over(QUESTIONS[:5], judge=judge, scores={"Politeness": [0.9, 0.8, 0.9, 0.8, 0.85]})
    lone = run_over(QUESTIONS[:5], judge=judge, scores={"Politeness": [0.5, None, None, None, None]})
    points = family_trend(runs=[low, high, lone]).evaluators[0].points
    assert [point.direction for point in points if point is not None] == ["same", "better", "same"]
    assert points[2] is not None and points[2].n == 1
    assert points[2].interval.low is None and points[2].mean == 0.5
    assert family_trend(runs=[high, low]).evaluators[0].points[1].direction == "worse"  # type: ignore[union-attr]


def test_an_evaluator_missing_from_a_run_leaves_a_gap_and_the_change_skips_it() -> None:
    judge = make_judge(evaluators=["Politeness", "Concision"])
    v1 = run_over(
        QUESTIONS[:3], judge=judge, scores={"Politeness": [0.5] * 3, "Concision": [0.2, 0.4, 0.6]}, name="v1"
    )
    v2 = run_over(QUESTIONS[:3], judge=judge, scores={"Politeness": [0.6] * 3}, name="v2")
    v3 = run_over(
        QUESTIONS[:3], judge=judge, scores={"Politeness": [0.7] * 3, "Concision": [0.8, 0.8, 0.8]}, name="v3"
    )
    trend = family_trend(runs=run_family(run=v1).runs)
    assert [run.pk for run in trend.runs] == [v1.pk, v2.pk, v3.pk]
    concision = next(evaluator for evaluator in trend.evaluators if evaluator.name == "Concision")
    first, missing, last = concision.points
    assert missing is None and concision.gaps == 1
    assert last is not None and last.previous is first
    assert last.change == pytest.approx(0.8 - 0.4)
