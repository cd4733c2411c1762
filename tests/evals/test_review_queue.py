"""Review queues: which items, in which order, stable for a seed, and cheap to build."""

from __future__ import annotations

import random
from collections.abc import Sequence

import pytest
from django.contrib.auth.models import AbstractBaseUser
from django.core.cache import cache

from evals.models import Run
from evals.services.review_queue import (
    QueueError,
    QueueSpec,
    queue_spec_from_params,
    review_queue,
    reviewed_by,
)
from evals.services.reviews import review_save
from tests.factories import build_run

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def empty_cache() -> None:
    cache.clear()


def positions(run: Run, ids: list[int]) -> list[int]:
    by_id = dict(run.items.values_list("id", "position"))
    return [by_id[item_id] for item_id in ids]


def queue(run: Run, **params: str) -> list[int]:
    return positions(run, review_queue(run=run, spec=queue_spec_from_params(params, run=run)))


def test_the_all_queue_is_every_scored_item_in_row_order() -> None:
    # Row 2 has no score at all (it failed); row 4 only a Facts score.
    run = build_run({"Tone": [0.9, 0.1, None, 0.3, None], "Facts": [0.2, 0.8, None, 0.9, 0.4]})
    assert queue(run, order="all") == [0, 1, 3, 4]
    assert queue(run, order="all", n="2") == [0, 1]
    assert queue(run, order="all", evaluator="Tone") == [0, 1, 3]


def test_worst_first_by_one_evaluator() -> None:
    run = build_run({"Tone": [0.9, 0.1, 0.5, 0.3, 0.7], "Facts": [0.2, 0.8, 0.6, 0.9, 0.05]})
    # Tone ascending: 0.1 (row 1), 0.3 (row 3), 0.5 (row 2), 0.7, 0.9.
    assert queue(run, order="worst", evaluator="Tone", n="3") == [1, 3, 2]


def test_worst_first_by_any_evaluator_takes_each_items_lowest_score() -> None:
    run = build_run({"Tone": [0.9, 0.1, 0.5, 0.3, 0.7], "Facts": [0.2, 0.8, 0.6, 0.9, 0.05]})
    # Lowest score per row: 0.2, 0.1, 0.5, 0.3, 0.05 -> rows 4 (0.05), 1 (0.1), 0 (0.2), 3 (0.3), 2 (0.5).
    assert queue(run, order="worst", n="3") == [4, 1, 0]
    assert queue(run, order="worst", n="5") == [4, 1, 0, 3, 2]


@pytest.mark.parametrize("size", [1, 7, 40, 150])
def test_worst_first_by_any_evaluator_matches_sorting_every_item(size: int) -> None:
    rng = random.Random(11)
    rows = 150
    scores: dict[str, Sequence[float | None]] = {
        name: [None if rng.random() < 0.2 else round(rng.random(), 2) for _ in range(rows)]
        for name in ("Tone", "Facts", "Safety")
    }
    run = build_run(scores)
    lowest: dict[int, float] = {}
    for row in range(rows):
        present = [value for values in scores.values() if (value := values[row]) is not None]
        if present:
            lowest[row] = min(present)
    by_id = dict(run.items.values_list("position", "id"))
    # Ties between equal lowest scores go to the smaller item id, as the queue orders them.
    expected = sorted(lowest, key=lambda row: (lowest[row], by_id[row]))[:size]
    assert queue(run, order="worst", n=str(size)) == expected


def test_a_sample_is_the_same_for_the_same_seed_and_only_holds_scored_items() -> None:
    values = [None if row % 10 == 0 else (row % 7) / 7 for row in range(100)]
    run = build_run({"Tone": values})
    first = queue(run, order="sample", n="10", seed="42")
    assert len(first) == 10
    assert first == sorted(first)  # walked in row order
    assert all(row % 10 for row in first)  # every tenth row failed: never in the queue
    cache.clear()
    assert queue(run, order="sample", n="10", seed="42") == first
    assert queue(run, order="sample", n="10", seed="43") != first
    # Asking for more than there is gives every scored item.
    assert queue(run, order="sample", n="500", seed="1") == [row for row in range(100) if row % 10]


def test_bands_take_equal_numbers_from_each_band_and_fill_shortfalls() -> None:
    # 100 rows of Tone: 70 in 0.8-1.0, 20 in 0.6-0.8, 5 in 0.4-0.6, 3 in 0.2-0.4, 2 in 0-0.2.
    values = [0.9] * 70 + [0.7] * 20 + [0.5] * 5 + [0.3] * 3 + [0.1] * 2
    run = build_run({"Tone": values}, thresholds={"Tone": 0.5})
    rows = queue(run, order="bands", n="20", seed="7")
    assert len(rows) == 20
    # Four from each band is the fair share; 0-0.2 has 2 and 0.2-0.4 has 3, and the 3 places they cannot
    # fill go round the other bands: 0.4-0.6 reaches its 5, then 0.6-0.8 and 0.8-1.0 take one more each.
    counts: dict[float, int] = {}
    for row in rows:
        counts[values[row]] = counts.get(values[row], 0) + 1
    assert counts == {0.1: 2, 0.3: 3, 0.5: 5, 0.7: 5, 0.9: 5}
    # So passes (>= 0.5) and fails (< 0.5) are both reviewed: 15 and 5.
    assert sum(1 for row in rows if values[row] >= 0.5) == 15
    assert queue(run, order="bands", n="20", seed="7") == rows


def test_bands_follow_the_evaluator_chosen_or_else_the_first() -> None:
    run = build_run({"Tone": [0.1, 0.1, 0.9, 0.9], "Facts": [0.9, 0.9, 0.1, 0.1]})
    spec = queue_spec_from_params({"order": "bands", "n": "2", "seed": "3"}, run=run)
    assert spec.evaluator == "Tone"
    # One from each of the two bands that hold anything, whichever evaluator makes the bands.
    tone = queue(run, order="bands", n="2", seed="3")
    facts = queue(run, order="bands", n="2", seed="3", evaluator="Facts")
    assert sorted(row // 2 for row in tone) == [0, 1]
    assert sorted(row // 2 for row in facts) == [0, 1]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"order": "best"}, "order"),
        ({"order": "worst", "n": "0"}, "n"),
        ({"order": "worst", "n": "1001"}, "n"),
        ({"order": "sample", "n": "ten"}, "n"),
        ({"order": "sample", "n": "١٠"}, "n"),
        ({"order": "sample", "seed": "-4"}, "seed"),
        ({"order": "worst", "evaluator": "Nope"}, "evaluator"),
    ],
)
def test_a_parameter_that_cannot_be_used_is_named(params: dict[str, str], field: str) -> None:
    run = build_run({"Tone": [0.5]})
    with pytest.raises(QueueError) as caught:
        queue_spec_from_params(params, run=run)
    assert caught.value.field == field


def test_a_random_queue_without_a_seed_asks_for_one_and_the_url_keeps_it() -> None:
    run = build_run({"Tone": [0.5]})
    spec = queue_spec_from_params({"order": "sample"}, run=run)
    assert spec.needs_seed and spec.size == 50
    seeded = QueueSpec(order="sample", size=50, seed=123)
    assert seeded.params() == {"order": "sample", "n": "50", "seed": "123"}
    assert queue_spec_from_params(seeded.params(), run=run) == seeded


def test_building_a_queue_reads_a_fixed_number_of_rows_of_queries(django_assert_num_queries: object) -> None:
    rng = random.Random(5)
    run = build_run({name: [rng.random() for _ in range(300)] for name in ("Tone", "Facts", "Safety")})
    for params, queries in [
        ({"order": "all"}, 1),
        ({"order": "sample", "seed": "1"}, 1),
        ({"order": "worst", "evaluator": "Tone"}, 1),
        ({"order": "worst"}, 3),  # one index read per evaluator
        ({"order": "bands", "seed": "1"}, 2),  # one evaluator's scores, then the chosen items' rows
    ]:
        spec = queue_spec_from_params(params, run=run)
        with django_assert_num_queries(queries):  # type: ignore[operator]
            review_queue(run=run, spec=spec)
        with django_assert_num_queries(0):  # type: ignore[operator]
            review_queue(run=run, spec=spec)  # the second time it comes from the cache


def test_a_new_score_makes_a_new_queue() -> None:
    run = build_run({"Tone": [0.5, None, 0.2]})
    assert queue(run, order="all") == [0, 2]
    item = run.items.get(position=1)
    item.scores.create(run=run, evaluator_name="Tone", score=0.4)
    Run.objects.filter(pk=run.pk).update(change_seq=run.change_seq + 1)
    run.refresh_from_db()
    assert queue(run, order="all") == [0, 1, 2]


def test_an_item_counts_as_reviewed_once_every_evaluator_that_scored_it_is(user: AbstractBaseUser) -> None:
    run = build_run({"Tone": [0.9, 0.1, 0.5], "Facts": [0.2, None, 0.6]})
    items = list(run.items.order_by("position"))
    review_save(item=items[0], evaluator="Tone", reviewer=user, label="pass")
    review_save(item=items[1], evaluator="Tone", reviewer=user, label="fail")  # Facts gave row 1 no score
    review_save(item=items[2], evaluator="Tone", reviewer=user, label="pass")
    review_save(item=items[2], evaluator="Facts", reviewer=user, label="pass")
    assert reviewed_by(run=run, reviewer=user) == {items[1].pk, items[2].pk}
