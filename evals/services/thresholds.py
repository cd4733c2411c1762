"""Each run's pass thresholds, learned once from the judge and never changed after.

Scorable gives an evaluator's pass threshold only inside execution logs (scorable-api.md §5), one log
per judged item. Docket reads one log as soon as a run's first item completes and stores what it
names on the run (`Run.thresholds`, `Run.thresholds_learned_at`); every pass rate, compare, export and
gate of that run then reads those numbers, so no later click (fetching another item's log on the item
page) can move them.

Claimed like the pump claims a batch: the write is a conditional UPDATE on `thresholds_learned_at IS
NULL`, so two learners at once (the pump's task and the watchdog, say) leave exactly one answer.
"""

from __future__ import annotations

import logging
from typing import Literal

from django.conf import settings
from django.db.models import Count, F
from django.utils import timezone

from evals.client import JudgeAPI, JudgeError
from evals.models import Item, Run
from evals.services.judges import judge_api

logger = logging.getLogger("evals.thresholds")

# Items looked at to choose the log to read: the first completed ones, by position.
CANDIDATES = 50
# Runs the watchdog learns for in one round; the rest wait for the next minute.
WATCHDOG_LIMIT = 5

Learned = Literal["learned", "nothing", "already", "no-item", "elsewhere", "retry"]


def run_thresholds_learn(*, run: Run, api: JudgeAPI) -> Learned:
    """Learn the run's thresholds from one execution log of a completed item, unless already learned.

    "learned": stored what the log named. "nothing": the log cannot be had (404 or another refusal that
    asking again cannot change), so the run is marked learned with no thresholds and every evaluator
    passes at the default 0.5. "already": the run had them (maybe from a learner that won a race).
    "no-item": no completed item with a log yet. "elsewhere": the run was judged through another judge
    API than `api`, whose logs cannot be read from here. "retry": a passing failure; left unlearned.
    """
    if run.thresholds_learned_at is not None:
        return "already"
    if run.judge.api_url.rstrip("/") != api.base_url.rstrip("/"):
        return "elsewhere"
    item = _item_to_read(run)
    if item is None:
        if not Item.objects.filter(run=run, status=Item.Status.COMPLETED).exists():
            return "no-item"
        # Completed items, but the judge gave none of them a log: there is nothing to read, ever.
        return _store(run, {}, outcome="nothing", source="no execution log")
    kept = item.log_detail if isinstance(item.log_detail, dict) else None
    if kept is not None and isinstance(kept.get("thresholds"), dict):
        # Someone fetched this log on the item page before the run was learned: no need to ask again.
        thresholds = _numbers(kept["thresholds"])
        outcome: Learned = "learned"
    else:
        try:
            log = api.get_execution_log(item.execution_log_id)
        except JudgeError as error:
            # A bad key (401/403) is Docket's problem, not the log's: fixing it makes the log readable.
            if not error.permanent or error.status in (401, 403):
                logger.info("run %s: thresholds not learned yet (%s)", run.pk, error.message)
                return "retry"
            logger.info(
                "run %s: the execution log of item %s cannot be read (%s); every evaluator passes at the default",
                run.pk,
                item.pk,
                error.message,
            )
            thresholds, outcome = {}, "nothing"
        else:
            thresholds, outcome = dict(log.thresholds), "learned"
            # Kept as the item page keeps it: the item shows cost, model and latency without asking again.
            Item.objects.filter(pk=item.pk, log_detail__isnull=True).update(log_detail=log.as_dict())
    return _store(run, thresholds, outcome=outcome, source=f"item {item.pk}")


def _store(run: Run, thresholds: dict[str, float], *, outcome: Learned, source: str) -> Learned:
    """Write the thresholds unless another learner did first; the run object gets what was stored."""
    won = Run.objects.filter(pk=run.pk, thresholds_learned_at__isnull=True).update(
        thresholds=thresholds, thresholds_learned_at=timezone.now(), change_seq=F("change_seq") + 1
    )
    # A run deleted meanwhile has nothing to refresh; its learner simply stops.
    stored = Run.objects.filter(pk=run.pk).values("thresholds", "thresholds_learned_at").first()
    if stored is not None:
        run.thresholds, run.thresholds_learned_at = stored["thresholds"], stored["thresholds_learned_at"]
    if not won:
        return "already"
    logger.info("run %s: thresholds learned from %s: %s", run.pk, source, thresholds or "none")
    return outcome


def runs_thresholds_learn_due(*, api: JudgeAPI | None = None, limit: int = WATCHDOG_LIMIT) -> int:
    """Learn for runs that have a completed item but no thresholds (runs from before, a lost task).

    Called by the watchdog every minute, so it is bounded: at most `limit` runs, and it stops at the
    first passing failure (the judge API is probably down; the next round tries again). Only runs
    judged through this judge API: another API's logs cannot be read from here.
    Returns how many runs were learned.
    """
    base_url = (api.base_url if api is not None else str(settings.JUDGE_API_URL)).rstrip("/")
    due = list(
        Run.objects.filter(thresholds_learned_at__isnull=True, completed_count__gt=0)
        .filter(judge__api_url__in=[base_url, base_url + "/"])
        .select_related("judge")
        .order_by("-pk")[:limit]
    )
    if not due:
        return 0
    learned = 0
    with judge_api(api) as client:
        for run in due:
            outcome = run_thresholds_learn(run=run, api=client)
            if outcome == "retry":
                break
            learned += outcome in ("learned", "nothing")
    return learned


def _item_to_read(run: Run) -> Item | None:
    """A completed item with an execution log, among the first ones the one with the most scores.

    A log names thresholds only for the evaluators that scored that item, so the fullest one tells the most.
    """
    completed = Item.objects.filter(run=run, status=Item.Status.COMPLETED).exclude(execution_log_id="")
    candidates = list(completed.order_by("position").values_list("pk", flat=True)[:CANDIDATES])
    if not candidates:
        return None
    return (
        Item.objects.filter(pk__in=candidates)
        .annotate(scored=Count("scores"))
        .order_by("-scored", "position")
        .first()
    )


def _numbers(values: dict[str, object]) -> dict[str, float]:
    return {
        str(name): float(value)
        for name, value in values.items()
        if isinstance(value, int | float) and not isinstance(value, bool)
    }
