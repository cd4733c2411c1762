"""Large runs: the queries behind a page walk an index range, never the whole run (issue 16).

Checked from the database's own plan, not from a timing: a query the planner answers from a range of
an index costs about the same on a 1,000,000-item run as on a 1,000-item one.
"""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.models import QuerySet

from evals.models import Run, Score
from evals.selectors.results import ResultsQuery, results_neighbours
from evals.selectors.results_cursor import rows_after
from tests.factories import build_run

pytestmark = pytest.mark.django_db


def plan(queryset: QuerySet[Score]) -> str:
    sql, params = queryset.query.sql_with_params()
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute(f"EXPLAIN QUERY PLAN {sql}", params)
            return "\n".join(str(row[-1]) for row in cursor.fetchall())
        # A few test rows would be read whole: ask for the plan the index allows, as on a big table.
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute(f"EXPLAIN {sql}", params)
        return "\n".join(row[0] for row in cursor.fetchall())


@pytest.mark.parametrize("descending", [False, True])
def test_the_next_score_after_a_position_starts_from_an_index_range(descending: bool) -> None:
    run = build_run({"Politeness": [index / 40 for index in range(40)]})
    order = ["-score", "-item_id"] if descending else ["score", "item_id"]
    scores = Score.objects.filter(run=run, evaluator_name="Politeness", score__isnull=False)
    after = scores.filter(rows_after(order, {"score": 0.5, "item_id": 0})).order_by(*order)[:1]
    found = plan(after.values("item_id"))
    if connection.vendor == "sqlite":
        # SQLite bounds an ascending walk by itself (from `score IS NOT NULL`); a descending one needs
        # the bound on score as part of the index search, not as a filter on every row.
        bounds = "score>? AND score<?" if descending else "score>?"
        assert f"score_sort_idx (run_id=? AND evaluator_name=? AND {bounds})" in found, found
    else:
        condition = next(line for line in found.splitlines() if "Index Cond" in line)
        assert ("score <=" if descending else "score >=") in condition, found


def test_neighbours_by_score_are_the_same_with_the_leading_bound() -> None:
    values = [0.5, 0.2, 0.5, 0.9, None, 0.5, 0.1]
    run = build_run({"Politeness": values})
    query = ResultsQuery(sort="score:Politeness")
    items = list(run.items.order_by("position"))
    # Score order, ties by item id, then the unscored by position: 6, 1, 0, 2, 5, 3, then 4.
    expected = [items[i].pk for i in (6, 1, 0, 2, 5, 3, 4)]
    for index, pk in enumerate(expected):
        previous, following = results_neighbours(run, query, next(i for i in items if i.pk == pk))
        assert previous == (expected[index - 1] if index else None)
        assert following == (expected[index + 1] if index + 1 < len(expected) else None)


def test_statistics_are_read_once_per_version_of_the_run_and_follow_every_new_score() -> None:
    from django.test.utils import CaptureQueriesContext

    from evals.selectors.stats import run_statistics
    from evals.services.runs import bump_change_seq

    run = build_run({"Politeness": [0.2, 0.4, 0.9]})
    first = run_statistics(run=run)
    with CaptureQueriesContext(connection) as seen:
        again = run_statistics(run=Run.objects.get(pk=run.pk))
    assert again.evaluators == first.evaluators
    assert not [query for query in seen.captured_queries if 'FROM "evals_score"' in query["sql"]]
    # A new score comes with a new change number (as every write of the pump's does): read afresh.
    item = run.items.order_by("position").first()
    assert item is not None
    Score.objects.filter(item=item).update(score=1.0)
    bump_change_seq(run)
    after = run_statistics(run=Run.objects.get(pk=run.pk)).evaluators[0]
    assert after.interval.mean == pytest.approx((1.0 + 0.4 + 0.9) / 3)
    assert after.maximum == 1.0 and first.evaluators[0].interval.mean == pytest.approx(0.5)


def test_the_retry_plan_is_counted_once_per_version_of_the_chain() -> None:
    from django.test.utils import CaptureQueriesContext

    from evals.models import Item
    from evals.services.retry import run_retry_plan
    from evals.services.runs import bump_change_seq

    run = build_run({"Politeness": [0.2, None, None, 0.9]})
    assert run_retry_plan(run=run).failed == 2
    with CaptureQueriesContext(connection) as seen:
        assert run_retry_plan(run=Run.objects.get(pk=run.pk)).failed == 2
    assert not [query for query in seen.captured_queries if "COUNT(" in query["sql"].upper()]
    # A row's new verdict comes with a new change number: counted afresh.
    Item.objects.filter(run=run, position=1).update(status=Item.Status.COMPLETED)
    bump_change_seq(run)
    assert run_retry_plan(run=Run.objects.get(pk=run.pk)).failed == 1
