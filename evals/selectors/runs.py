"""A run's retry chain: the runs it spans, its root, and the latest verdict per row across them."""

from __future__ import annotations

from django.db.models import Exists, OuterRef, Q, QuerySet

from evals.models import Item, Run


def run_root(run: Run) -> Run:
    """The run a chain of retries started from: retries link to it, never to another retry.

    Linking every retry to the root lets the `run_one_active_retry` constraint guard the whole chain:
    at most one queued or running retry, whichever run of the chain the user was looking at. Runs
    made before that rule may be retries of retries; following `retry_of` to the top covers them.
    """
    seen = {run.pk}
    while run.retry_of_id is not None and run.retry_of_id not in seen:
        seen.add(run.retry_of_id)
        parent = Run.objects.filter(pk=run.retry_of_id).select_related("dataset", "judge").first()
        if parent is None:
            break
        run = parent
    return run


def run_chain(run: Run) -> list[int]:
    """The run and every retry made from it (and from those), oldest first."""
    chain = [run.pk]
    frontier = [run.pk]
    while frontier:
        frontier = list(Run.objects.filter(retry_of__in=frontier).order_by("pk").values_list("pk", flat=True))
        chain.extend(frontier)
    return chain


def run_items_merged(run: Run) -> QuerySet[Item]:
    """The latest verdict per row across a run and its retries.

    The newest item that is not cancelled wins (a cancelled retry never ran, so the earlier verdict
    stands); a row cancelled everywhere shows its newest cancelled item.
    """
    chain = run_chain(run)
    same_row = Item.objects.filter(run_id__in=chain, position=OuterRef("position"))
    later_verdict = same_row.filter(run_id__gt=OuterRef("run_id")).exclude(status=Item.Status.CANCELLED)
    later_any = same_row.filter(run_id__gt=OuterRef("run_id"))
    any_verdict = same_row.exclude(status=Item.Status.CANCELLED)
    return Item.objects.filter(run_id__in=chain).filter(
        (~Q(status=Item.Status.CANCELLED) & ~Exists(later_verdict))
        | (Q(status=Item.Status.CANCELLED) & ~Exists(any_verdict) & ~Exists(later_any))
    )


def runs_version(run_ids: list[int]) -> str:
    """These runs at their current change numbers: a new score, verdict or retry gives a new version."""
    rows = Run.objects.filter(pk__in=run_ids).order_by("pk").values_list("pk", "uid", "change_seq")
    return ",".join(f"{pk}.{uid}.{seq}" for pk, uid, seq in rows)
