"""Compare two runs item by item: is run B better than run A, and is the difference real?

Items are paired by their example when both runs judged the same dataset, otherwise by the example's
content hash (the same request, response, contexts... uploaded twice). Per evaluator, with the
difference d = score in B - score in A over the n paired items:

    mean difference   d̄ = Σd / n
    paired 95% CI     d̄ ± t(0.975, n - 1) · s_d / √n, s_d the sample standard deviation of d
    significant       the interval excludes 0
    improved / regressed / unchanged: d > ε, d < -ε, |d| <= ε with ε = 1e-9 (float noise)
    pass to fail      score in A >= threshold and score in B < threshold, largest drop first

Per evaluator, both runs' scores are read in the order of the match key and merged in one streamed
pass, summed as they go, keeping only the largest drops: comparing two 100,000-item runs holds no
list of scores in memory.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Exists, OuterRef

from evals.models import Item, Run, Score
from evals.services.stats import MeanInterval, choose_threshold, interval_from_deviations, judge_thresholds

EPSILON = 1e-9
DROPS_SHOWN = 25


@dataclass(frozen=True)
class Drop:
    """One item that passed in run A and fails in run B."""

    position: int
    item_a: int
    item_b: int | None
    score_a: float
    score_b: float
    justification_a: str
    justification_b: str
    request: str

    @property
    def drop(self) -> float:
        return self.score_a - self.score_b


@dataclass(frozen=True)
class EvaluatorComparison:
    name: str
    n: int
    mean_a: float | None
    mean_b: float | None
    difference: MeanInterval
    improved: int
    regressed: int
    unchanged: int
    threshold: float
    threshold_source: str
    passed_a: int
    passed_b: int
    pass_to_fail: int
    fail_to_pass: int
    drops: list[Drop] = field(default_factory=list)

    @property
    def significant(self) -> bool:
        return self.difference.excludes_zero

    @property
    def direction(self) -> str:
        """ "better", "worse" or "same" (no significant difference)."""
        if not self.significant or self.difference.mean is None:
            return "same"
        return "better" if self.difference.mean > 0 else "worse"


@dataclass(frozen=True)
class RunComparison:
    a: Run
    b: Run
    # "example" (same dataset) or "content" (the example's content hash)
    matched_by: str
    items_a: int
    items_b: int
    matched_a: int
    matched_b: int
    evaluators: list[EvaluatorComparison]
    evaluators_only_a: list[str]
    evaluators_only_b: list[str]
    warnings: list[str]

    @property
    def only_a(self) -> int:
        return self.items_a - self.matched_a

    @property
    def only_b(self) -> int:
        return self.items_b - self.matched_b


def runs_compare(*, a: Run, b: Run, thresholds: Mapping[str, float] | None = None) -> RunComparison:
    """Compare run B against run A (B - A: positive means B scored higher)."""
    thresholds = dict(thresholds or {})
    # Over one dataset an item's position is its example's position: match on the (run, position) index.
    key = "position" if a.dataset_id == b.dataset_id else "example__content_hash"
    matched_by = "example" if key == "position" else "content"
    items_a = Item.objects.filter(run=a)
    items_b = Item.objects.filter(run=b)
    if matched_by == "content":
        # Rows imported without a hash cannot be matched across datasets.
        items_a = items_a.exclude(example__content_hash="")
        items_b = items_b.exclude(example__content_hash="")
    count_a, count_b = Item.objects.filter(run=a).count(), Item.objects.filter(run=b).count()
    matched_a = items_a.filter(Exists(items_b.filter(**{key: OuterRef(key)}))).count()
    matched_b = items_b.filter(Exists(items_a.filter(**{key: OuterRef(key)}))).count()

    own = {**judge_thresholds(b), **judge_thresholds(a)}
    names_b = set(b.evaluators)
    shared_names = [name for name in a.evaluators if name in names_b]
    evaluators = []
    for name in shared_names:
        threshold, source = choose_threshold(name, url=thresholds, judge=own)
        evaluators.append(
            _compare_evaluator(a, b, name, key=key, threshold=threshold, threshold_source=source)
        )
    comparison = RunComparison(
        a=a,
        b=b,
        matched_by=matched_by,
        items_a=count_a,
        items_b=count_b,
        matched_a=matched_a,
        matched_b=matched_b,
        evaluators=evaluators,
        evaluators_only_a=[name for name in a.evaluators if name not in names_b],
        evaluators_only_b=[name for name in b.evaluators if name not in set(a.evaluators)],
        warnings=[],
    )
    comparison.warnings.extend(_warnings(comparison))
    return comparison


def _warnings(comparison: RunComparison) -> list[str]:
    a, b = comparison.a, comparison.b
    warnings = []
    if a.pk == b.pk:
        warnings.append("Both sides are the same run: every difference is zero.")
    if a.judge_id != b.judge_id:
        names = (
            f"{a.judge.name} and {b.judge.name}"
            if a.judge.name != b.judge.name
            else f"two judges named {a.judge.name}, from {a.judge.api_url or 'one API'} and {b.judge.api_url or 'another'}"
            if a.judge.api_url != b.judge.api_url
            else f"two judges named {a.judge.name}"
        )
        warnings.append(
            f"The runs were judged by different judges ({names}): "
            "a difference may come from the judges rather than from the responses."
        )
    elif a.judge_version_id != b.judge_version_id:
        warnings.append(
            f"The runs were judged by different versions of {a.judge.name} "
            f"({a.judge_version_id or 'latest'} and {b.judge_version_id or 'latest'}): "
            "a difference may come from the judge rather than from the responses."
        )
    if comparison.evaluators_only_a or comparison.evaluators_only_b:
        parts = []
        if comparison.evaluators_only_a:
            parts.append("only in A: " + ", ".join(comparison.evaluators_only_a))
        if comparison.evaluators_only_b:
            parts.append("only in B: " + ", ".join(comparison.evaluators_only_b))
        warnings.append("The evaluators differ (" + "; ".join(parts) + "); those are left out.")
    if comparison.only_a or comparison.only_b:
        how = "by example" if comparison.matched_by == "example" else "by content hash"
        warnings.append(
            f"The item sets differ: {comparison.matched_a:,} item{'' if comparison.matched_a == 1 else 's'} "
            f"of A matched {how}, "
            f"{comparison.only_a:,} only in A, {comparison.only_b:,} only in B. "
            "The figures below cover the matched items only."
        )
    for label, run in (("A", a), ("B", b)):
        if not run.is_finished:
            warnings.append(f"Run {label} has not finished: this covers the items scored so far.")
    return warnings


Row = tuple[Any, int, int, float]  # (match key, item id, position, score)


def _sorted_scores(run: Run, name: str, *, key: str) -> Iterator[Row]:
    """One evaluator's scores of a run, ordered by the match key (then position), a chunk at a time."""
    scores = Score.objects.filter(run=run, evaluator_name=name, score__isnull=False)
    if key == "position":
        for item_id, position, score in (
            scores.order_by("item__position")
            .values_list("item_id", "item__position", "score")
            .iterator(chunk_size=5_000)
        ):
            yield position, item_id, position, float(score or 0.0)
        return
    rows = (
        scores.exclude(item__example__content_hash="")
        .order_by("item__example__content_hash", "item__position")
        .values_list("item__example__content_hash", "item_id", "item__position", "score")
        .iterator(chunk_size=5_000)
    )
    for content_hash, item_id, position, score in rows:
        yield content_hash, item_id, position, float(score or 0.0)


def _pairs(a: Run, b: Run, name: str, *, key: str) -> Iterator[tuple[Row, Row]]:
    """A's scores each with B's score of the same row, where B has one: a merge of two sorted streams.

    A merge rather than a lookup per item: two index scans and sorts cost a fifth of 100,000 lookups.
    A row that appears twice in B (the same content uploaded twice) pairs with its first occurrence.
    """
    rows_b = _sorted_scores(b, name, key=key)
    current = next(rows_b, None)
    for row_a in _sorted_scores(a, name, key=key):
        while current is not None and current[0] < row_a[0]:
            current = next(rows_b, None)
        if current is None:
            return
        if current[0] == row_a[0]:
            yield row_a, current


def _compare_evaluator(
    a: Run, b: Run, name: str, *, key: str, threshold: float, threshold_source: str
) -> EvaluatorComparison:
    """One streamed pass over the pairs: sums and counts as they pass, and the largest drops so far.

    The difference's variance is accumulated with Welford's method: one pass, no cancellation.
    """
    n = improved = regressed = passed_a = passed_b = pass_to_fail = fail_to_pass = 0
    sum_a = sum_b = mean_d = squares_d = 0.0
    # The largest drops from pass to fail so far: a min-heap of (drop, -position, A item, B item, A, B).
    largest: list[tuple[float, int, int, int, float, float]] = []
    for (_, item_a, position, score_a), (_, item_b, _, score_b) in _pairs(a, b, name, key=key):
        n += 1
        sum_a += score_a
        sum_b += score_b
        d = score_b - score_a
        delta = d - mean_d
        mean_d += delta / n
        squares_d += delta * (d - mean_d)
        if d > EPSILON:
            improved += 1
        elif d < -EPSILON:
            regressed += 1
        a_passes, b_passes = score_a >= threshold, score_b >= threshold
        passed_a += a_passes
        passed_b += b_passes
        if a_passes and not b_passes:
            pass_to_fail += 1
            entry = (-d, -position, item_a, item_b, score_a, score_b)
            if len(largest) < DROPS_SHOWN:
                heapq.heappush(largest, entry)
            elif entry > largest[0]:
                heapq.heapreplace(largest, entry)
        elif b_passes and not a_passes:
            fail_to_pass += 1
    return EvaluatorComparison(
        name=name,
        n=n,
        mean_a=sum_a / n if n else None,
        mean_b=sum_b / n if n else None,
        difference=interval_from_deviations(n, mean_d, squares_d),
        improved=improved,
        regressed=regressed,
        unchanged=n - improved - regressed,
        threshold=threshold,
        threshold_source=threshold_source,
        passed_a=passed_a,
        passed_b=passed_b,
        pass_to_fail=pass_to_fail,
        fail_to_pass=fail_to_pass,
        drops=_drops(name, sorted(largest, reverse=True)),
    )


def _drops(name: str, ranked: list[tuple[float, int, int, int, float, float]]) -> list[Drop]:
    """The chosen drops with both justifications and A's request, in one small query."""
    if not ranked:
        return []
    ids = [entry[2] for entry in ranked] + [entry[3] for entry in ranked]
    found: dict[int, dict[str, Any]] = {
        row["item_id"]: dict(row)
        for row in Score.objects.filter(evaluator_name=name, item_id__in=ids).values(
            "item_id", "justification", "item__example__request"
        )
    }
    empty: dict[str, Any] = {}
    return [
        Drop(
            position=-negative_position,
            item_a=item_a,
            item_b=item_b,
            score_a=score_a,
            score_b=score_b,
            justification_a=found.get(item_a, empty).get("justification", ""),
            justification_b=found.get(item_b, empty).get("justification", ""),
            request=found.get(item_a, empty).get("item__example__request", ""),
        )
        for _, negative_position, item_a, item_b, score_a, score_b in ranked
    ]
