"""Which items a reviewer walks through, in which order: a review queue.

A queue is described entirely by its parameters (`QueueSpec`: order, size, seed, evaluator), so it lives
in the URL and the same URL always gives the same queue of a finished run. Only items the judge scored
(at least one evaluator gave a number) are reviewable.

Building a queue reads item ids, and at most one evaluator's scores, through the indexes
((run, position) and (run, evaluator, score, item)): never a model object per item, so a queue of a
100,000-item run costs a fraction of a second. The ids are cached per run version (`Run.change_seq`), so
moving from one item to the next costs one cache read.
"""

from __future__ import annotations

import hashlib
import random
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.cache import cache
from django.db.models import Exists, OuterRef

from evals.models import Item, Review, Run, Score

ORDERS = {
    "all": "Every item, in row order",
    "worst": "Worst first",
    "sample": "A random sample",
    "bands": "Stratified by score band",
}
RANDOM_ORDERS = ("sample", "bands")
DEFAULT_SIZE = 50
MAX_SIZE = 1_000
MAX_SEED = 2**31 - 1
# Score bands of the stratified queue: 0-0.2, 0.2-0.4, ..., 0.8-1.0 (the last one includes 1.0).
BANDS = 5
CACHE_SECONDS = 60 * 60


class QueueError(ValueError):
    """A queue parameter that cannot be used; `field` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True)
class QueueSpec:
    order: str = "all"
    # How many items; None only for "all" (every reviewable item).
    size: int | None = None
    seed: int | None = None
    evaluator: str = ""

    @property
    def needs_seed(self) -> bool:
        return self.order in RANDOM_ORDERS and self.seed is None

    def params(self) -> dict[str, str]:
        """The URL parameters that rebuild this queue (without the index)."""
        params = {"order": self.order}
        if self.size is not None:
            params["n"] = str(self.size)
        if self.order in RANDOM_ORDERS and self.seed is not None:
            params["seed"] = str(self.seed)
        if self.evaluator:
            params["evaluator"] = self.evaluator
        return params

    def describe(self) -> str:
        """The queue in words, as the review page heads it."""
        if self.order == "all":
            text = f"the first {self.size:,} items in row order" if self.size else "every item in row order"
            return text + (f" scored by {self.evaluator}" if self.evaluator else "")
        if self.order == "worst":
            by = f"{self.evaluator}'s score" if self.evaluator else "the lowest score of any evaluator"
            return f"the {self.size:,} worst items by {by}"
        if self.order == "sample":
            scored = f" scored by {self.evaluator}" if self.evaluator else ""
            return f"a random sample of {self.size:,} items{scored} (seed {self.seed})"
        return f"{self.size:,} items stratified by {self.evaluator}'s score band (seed {self.seed})"


def _whole_number(value: str, field: str, low: int, high: int, what: str) -> int:
    text = value.strip()
    if not (text.isascii() and text.isdigit()) or len(text) > 12 or not low <= int(text) <= high:
        raise QueueError(field, f"{what} must be a whole number from {low:,} to {high:,}.")
    return int(text)


def queue_spec_from_params(params: Mapping[str, str], *, run: Run) -> QueueSpec:
    """The queue the URL asks for; raises QueueError naming the parameter that cannot be used."""
    order = (params.get("order") or "all").strip()
    if order not in ORDERS:
        raise QueueError("order", f'The order must be one of: {", ".join(ORDERS)} (got "{order[:40]}").')
    evaluator = (params.get("evaluator") or "").strip()
    if evaluator and evaluator not in run.evaluators:
        raise QueueError("evaluator", f'This run has no evaluator "{evaluator[:100]}".')
    if order == "bands" and not evaluator:
        # Bands are bands of one evaluator's score: the run's first, unless the reviewer chose another.
        if not run.evaluators:
            raise QueueError("evaluator", "This run has no evaluator to stratify by.")
        evaluator = run.evaluators[0]
    raw_size = (params.get("n") or "").strip()
    size: int | None
    if raw_size:
        size = _whole_number(raw_size, "n", 1, MAX_SIZE, "The number of items")
    else:
        size = None if order == "all" else DEFAULT_SIZE
    seed = None
    if order in RANDOM_ORDERS and (params.get("seed") or "").strip():
        seed = _whole_number(params.get("seed") or "", "seed", 0, MAX_SEED, "The seed")
    return QueueSpec(order=order, size=size, seed=seed, evaluator=evaluator)


def new_seed() -> int:
    """A seed for a new random queue; it goes into the URL, so the queue then stays the same."""
    return random.SystemRandom().randint(1, 999_999)


# --- Building a queue -----------------------------------------------------------------------------------


def _reviewable_ids(run: Run, evaluator: str) -> list[int]:
    """Ids of the items with a score (of `evaluator`, or of any evaluator), in row order."""
    scores = Score.objects.filter(item=OuterRef("pk"), score__isnull=False)
    if evaluator:
        scores = scores.filter(evaluator_name=evaluator)
    return list(
        Item.objects.filter(run=run).filter(Exists(scores)).order_by("position").values_list("id", flat=True)
    )


def _scores_ascending(run: Run, evaluator: str, limit: int | None = None) -> list[tuple[int, float]]:
    """(item id, score) of one evaluator, lowest first: read from the (run, evaluator, score, item) index."""
    rows = (
        Score.objects.filter(run=run, evaluator_name=evaluator, score__isnull=False)
        .order_by("score", "item_id")
        .values_list("item_id", "score")
    )
    return [
        (item_id, value)
        for item_id, value in (rows[:limit] if limit is not None else rows)
        if value is not None
    ]


def _worst(run: Run, spec: QueueSpec, size: int) -> list[int]:
    if spec.evaluator:
        return [item_id for item_id, _ in _scores_ascending(run, spec.evaluator, size)]
    # Lowest score of any evaluator: the `size` items with the lowest minimum are all among each
    # evaluator's `size` lowest, so merging those short lists is exact, and reads no more than
    # size x evaluators index entries.
    lowest: dict[int, float] = {}
    for name in run.evaluators:
        for item_id, value in _scores_ascending(run, name, size):
            if item_id not in lowest or value < lowest[item_id]:
                lowest[item_id] = value
    return sorted(lowest, key=lambda item_id: (lowest[item_id], item_id))[:size]


def _band(value: float) -> int:
    return min(max(int(value * BANDS), 0), BANDS - 1)


def _bands(run: Run, spec: QueueSpec, size: int, seed: int) -> list[int]:
    members: list[list[int]] = [[] for _ in range(BANDS)]
    for item_id, value in _scores_ascending(run, spec.evaluator):
        members[_band(value)].append(item_id)
    # Equal shares from each band; a band with too few items gives its shortfall to the others.
    quotas = [0] * BANDS
    left = size
    while left:
        open_bands = [band for band in range(BANDS) if quotas[band] < len(members[band])]
        if not open_bands:
            break
        for band in open_bands:
            if not left:
                break
            quotas[band] += 1
            left -= 1
    rng = random.Random(seed)
    chosen: list[int] = []
    for band in range(BANDS):
        chosen.extend(rng.sample(sorted(members[band]), quotas[band]))
    return chosen


def _in_row_order(run: Run, ids: list[int]) -> list[int]:
    positions = dict(Item.objects.filter(run=run, pk__in=ids).values_list("id", "position"))
    return sorted(ids, key=lambda item_id: positions.get(item_id, 0))


def _build(run: Run, spec: QueueSpec) -> list[int]:
    if spec.order == "worst":
        return _worst(run, spec, spec.size or DEFAULT_SIZE)
    if spec.order == "bands":
        chosen = _bands(run, spec, spec.size or DEFAULT_SIZE, spec.seed or 0)
        return _in_row_order(run, chosen)
    ids = _reviewable_ids(run, spec.evaluator)
    if spec.order == "sample":
        rng = random.Random(spec.seed or 0)
        picked = set(rng.sample(ids, min(spec.size or DEFAULT_SIZE, len(ids))))
        return [item_id for item_id in ids if item_id in picked]
    return ids[: spec.size] if spec.size else ids


def review_queue(*, run: Run, spec: QueueSpec) -> list[int]:
    """The item ids of the queue, in the order the reviewer walks them."""
    if spec.order not in ORDERS:
        raise QueueError("order", f'Unknown order "{spec.order[:40]}".')
    evaluator = hashlib.sha256(spec.evaluator.encode()).hexdigest()[:16]
    # The run's uid and change_seq: a new run, or a new score of this one, is a new key.
    key = f"docket:review-queue:{run.uid}:{run.change_seq}:{spec.order}:{spec.size}:{spec.seed}:{evaluator}"
    ids = cache.get(key)
    if ids is None:
        ids = _build(run, spec)
        cache.set(key, ids, CACHE_SECONDS)
    return list(ids)


# --- Progress ---------------------------------------------------------------------------------------------


def reviewed_by(*, run: Run, reviewer: AbstractBaseUser | AnonymousUser) -> set[int]:
    """Ids of the run's items `reviewer` has reviewed in full: every evaluator that scored the item.

    Reads only the reviewer's own reviews and the scores of those items, so it costs the same on a run of
    100 items and of 100,000.
    """
    if not reviewer.is_authenticated:
        return set()
    marked: dict[int, set[str]] = defaultdict(set)
    for item_id, name in Review.objects.filter(run=run, reviewer_id=reviewer.pk).values_list(
        "item_id", "evaluator_name"
    ):
        marked[item_id].add(name)
    if not marked:
        return set()
    scored: dict[int, set[str]] = defaultdict(set)
    mine = Review.objects.filter(run=run, reviewer_id=reviewer.pk).values("item_id")
    for item_id, name in Score.objects.filter(item_id__in=mine, score__isnull=False).values_list(
        "item_id", "evaluator_name"
    ):
        scored[item_id].add(name)
    return {item_id for item_id, names in marked.items() if scored[item_id] and scored[item_id] <= names}
