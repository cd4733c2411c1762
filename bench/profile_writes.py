"""CPU of the pump's per-batch writes, without a profiler's distortion, on a finished bench run.

    .venv/bin/python bench/profile_writes.py /tmp/docket-bench-XXXX/docket

Takes the Docket var directory a `bench/pipeline.py --zero-latency` run left behind (its SQLite
database) and times, in CPU milliseconds per 100-item batch, the writes the profile points at:
Item.bulk_update of a poll's fields and of a costs read's fields, rebuilding and inserting a batch's
Score rows, and the same poll UPDATE as one executemany for comparison. All inside a transaction
that is rolled back: the database is left as it was. cProfile inflates Django's call-heavy expression
building several times over; these figures say what each write really costs.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPEATS = 20


class Rollback(Exception):
    pass


def cpu_ms(work: Callable[[], object]) -> float:
    started = time.process_time()
    for _ in range(REPEATS):
        work()
    return (time.process_time() - started) / REPEATS * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("var_dir", type=Path, help="the docket/ directory of a finished bench run")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    os.environ["DOCKET_VAR_DIR"] = str(args.var_dir)
    os.environ["DJANGO_SETTINGS_MODULE"] = "dashboard.settings"
    os.environ.pop("DATABASE_URL", None)
    import django

    django.setup()
    from django.db import connection, transaction

    from evals.models import Item, Score
    from evals.services.batches import ITEM_FIELDS

    batch_id = Item.objects.values_list("batch_id", flat=True).first()
    if batch_id is None:
        raise SystemExit(f"no items in {args.var_dir}")
    try:
        with transaction.atomic():
            items = list(Item.objects.filter(batch_id=batch_id))
            scores = list(Score.objects.filter(item__batch_id=batch_id))

            def poll_executemany() -> None:
                with connection.cursor() as cursor:
                    cursor.executemany(
                        "UPDATE evals_item SET status = %s, error_message = %s, execution_log_id = %s, "
                        "started_at = %s, completed_at = %s, change_seq = %s WHERE id = %s",
                        [
                            (
                                item.status,
                                item.error_message,
                                item.execution_log_id,
                                item.started_at,
                                item.completed_at,
                                item.change_seq,
                                item.pk,
                            )
                            for item in items
                        ],
                    )

            def scores_insert() -> None:
                fresh = [
                    Score(
                        item_id=score.item_id,
                        run_id=score.run_id,
                        evaluator_name=score.evaluator_name,
                        evaluator_id=score.evaluator_id,
                        score=score.score,
                        justification=score.justification,
                        confidence=score.confidence,
                    )
                    for score in scores
                ]
                Score.objects.bulk_create(fresh, ignore_conflicts=True)

            print(f"one batch: {len(items)} items, {len(scores)} scores; CPU ms per batch, mean of {REPEATS}")
            measures: list[tuple[str, Callable[[], object]]] = [
                ("load the batch's items", lambda: list(Item.objects.filter(batch_id=batch_id))),
                ("Item.bulk_update, poll fields", lambda: Item.objects.bulk_update(items, ITEM_FIELDS)),
                (
                    "Item.bulk_update, cost fields",
                    lambda: Item.objects.bulk_update(items, ["cost", "evaluator_costs", "change_seq"]),
                ),
                ("Score objects + bulk_create", scores_insert),
                ("poll fields as one executemany", poll_executemany),
            ]
            for name, work in measures:
                print(f"{name:<34} {cpu_ms(work):7.1f} ms")
            raise Rollback
    except Rollback:
        pass


if __name__ == "__main__":
    main()
