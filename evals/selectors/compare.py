"""Compare two runs item by item: is run B better than run A, and is the difference real?

Pairing. Runs over the same dataset pair by position: the same row. Runs over two datasets pair by the
example's input key (Example.input_key): the user's key column when the upload mapped one, otherwise a
hash of what the model was asked (request, contexts, expected output, system prompt, turns before the
last answer), never the response, which is what changed between the two runs. A key that appears k
times in A and m times in B gives min(k, m) pairs in row order (1st with 1st, 2nd with 2nd), the rest
count as only in A or only in B, and the keys that appear more than once are counted and reported.

Per evaluator, over the pairs where both items have a score, with d = score in B - score in A:

    mean difference   d̄ = Σd / n
    paired 95% CI     d̄ ± t(0.975, n - 1) · s_d / √n, s_d the sample standard deviation of d
    significant       the interval excludes 0; fewer than 2 pairs is "not enough paired items"
    improved / regressed / unchanged: d > ε, d < -ε, |d| <= ε with ε = 1e-9 (float noise)
    pass to fail      A's score >= A's threshold and B's score < B's threshold, largest drop first

Each run's threshold is its own (Run.threshold_for); an override (URL or command line) applies to both.

With human corrections (`corrected=True`) both sides read each reviewed score as the people said: the
corrected score of the review that counts (the most recently changed one, `human_verdicts`) where it
gave one, else the judge's; it passes when that review says pass. Reviews are few: each run's human
verdicts are read once, in one query, and applied to the rows as they stream past.

Cost per item is each run's own (`evals.selectors.costs.run_cost`: its cost over the items whose cost
the judge's logs gave), with the difference B - A; runs made with different evaluator sets (or one with
a set and one with the whole judge) are flagged, as their costs and scores measure different things.

Both runs' items are read in pairing order, each with every shared evaluator's score, and merged in
one streamed pass that sums as it goes and keeps only the largest drops (or one page of pairs):
comparing two 100,000-item runs holds no list of items or scores in memory.

One unit over 450 lines: pairing, the streamed merge, the tallies it feeds and the summary they make
are one computation. One page of pairs with their text is in compare_items.py.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, NamedTuple, TypeVar

from django.db import connection
from django.db.models import OuterRef, Subquery
from django.db.models.functions import Collate

from evals.models import Item, Review, Run, Score
from evals.money import format_cost
from evals.selectors.costs import RunCost, format_cost_change, run_cost
from evals.services.intervals import MeanInterval, interval_from_deviations
from evals.services.reviews import HumanVerdict, human_verdicts

EPSILON = 1e-9
DROPS_SHOWN = 25
CHANGES = ("improved", "regressed", "unchanged")
VERDICTS = {
    "better": "B better",
    "worse": "B worse",
    "same": "no significant difference",
    "insufficient": "not enough paired items",
}
CORRECTED = "with human corrections"

EntryT = TypeVar("EntryT", bound=tuple[Any, ...])


class CompareError(ValueError):
    """A comparison that cannot be made as asked; the message is for the user."""


def change_of(difference: float) -> str:
    """ "improved", "regressed" or "unchanged" for a difference d = B - A."""
    if difference > EPSILON:
        return "improved"
    if difference < -EPSILON:
        return "regressed"
    return "unchanged"


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
    # Pairs where both items have a score from this evaluator; `unscored` pairs lack one on either side.
    n: int
    unscored: int
    mean_a: float | None
    mean_b: float | None
    difference: MeanInterval
    improved: int
    regressed: int
    unchanged: int
    threshold_a: float
    threshold_source_a: str
    threshold_b: float
    threshold_source_b: str
    passed_a: int
    passed_b: int
    pass_to_fail: int
    fail_to_pass: int
    drops: list[Drop] = field(default_factory=list)
    # With human corrections: the scored pairs whose A (or B) score carries a human verdict.
    corrected: bool = False
    reviewed_a: int = 0
    reviewed_b: int = 0

    @property
    def threshold(self) -> float:
        return self.threshold_a

    @property
    def threshold_source(self) -> str:
        return self.threshold_source_a

    @property
    def thresholds_differ(self) -> bool:
        return self.threshold_a != self.threshold_b

    @property
    def significant(self) -> bool:
        return self.difference.excludes_zero

    @property
    def direction(self) -> str:
        """ "better", "worse", "same" (no significant difference) or "insufficient" (fewer than 2 pairs)."""
        if self.n < 2 or self.difference.low is None:
            return "insufficient"
        if not self.significant or self.difference.mean is None:
            return "same"
        return "better" if self.difference.mean > 0 else "worse"

    @property
    def verdict(self) -> str:
        return f"{VERDICTS[self.direction]}, {CORRECTED}" if self.corrected else VERDICTS[self.direction]

    @property
    def regression(self) -> bool:
        """The whole interval lies below 0: B is worse, and not by chance (the CI gate)."""
        return self.difference.high is not None and self.difference.high < 0


@dataclass(frozen=True)
class RunComparison:
    a: Run
    b: Run
    # "position" (same dataset) or "input" (the examples' input keys)
    paired_by: str
    items_a: int
    items_b: int
    pairs: int
    # Keys that appear more than once in a run (their rows pair in order).
    duplicated_keys_a: int
    duplicated_keys_b: int
    # Items whose example has no input key (imported before keys existed): they cannot pair.
    unkeyed_a: int
    unkeyed_b: int
    evaluators: list[EvaluatorComparison]
    evaluators_only_a: list[str]
    evaluators_only_b: list[str]
    overrides: dict[str, float]
    warnings: list[str]
    # Both sides read with human corrections (reviewed scores as the people said).
    corrected: bool = False
    cost_a: RunCost | None = None
    cost_b: RunCost | None = None

    @property
    def cost_per_item_a(self) -> float | None:
        return self.cost_a.per_item if self.cost_a else None

    @property
    def cost_per_item_b(self) -> float | None:
        return self.cost_b.per_item if self.cost_b else None

    @property
    def cost_per_item_change(self) -> float | None:
        """B's cost per item minus A's; None unless both are known."""
        a, b = self.cost_per_item_a, self.cost_per_item_b
        return b - a if a is not None and b is not None else None

    @property
    def cost_labels(self) -> dict[str, str]:
        return {
            "a": format_cost(self.cost_per_item_a),
            "b": format_cost(self.cost_per_item_b),
            "change": format_cost_change(self.cost_per_item_change),
        }

    @property
    def cost_known(self) -> bool:
        return self.cost_per_item_a is not None or self.cost_per_item_b is not None

    @property
    def only_a(self) -> int:
        return self.items_a - self.pairs

    @property
    def only_b(self) -> int:
        return self.items_b - self.pairs

    @property
    def duplicated_keys(self) -> int:
        return self.duplicated_keys_a + self.duplicated_keys_b

    @property
    def regression(self) -> bool:
        return any(row.regression for row in self.evaluators)

    def evaluator(self, name: str) -> EvaluatorComparison | None:
        return next((row for row in self.evaluators if row.name == name), None)


def shared_evaluators(a: Run, b: Run) -> list[str]:
    names_b = set(b.evaluators)
    return [name for name in a.evaluators if name in names_b]


def runs_compare(
    *, a: Run, b: Run, thresholds: Mapping[str, float] | None = None, corrected: bool = False
) -> RunComparison:
    """Compare run B against run A (B - A: positive means B scored higher).

    `thresholds` are explicit overrides ({evaluator: value}, from the URL or the command line): they
    replace both runs' own thresholds for that evaluator. `corrected`: both sides with human corrections.
    """
    return compare_streamed(a, b, dict(thresholds or {}), corrected=corrected)


# --- The streamed merge ------------------------------------------------------------------------------


class SideRow(NamedTuple):
    key: Any  # the position, or the input key
    item: int
    position: int
    scores: tuple[float | None, ...]  # one per shared evaluator, None when the item has no score
    # With human corrections: the human label ("pass", "fail") per shared evaluator, None where unreviewed,
    # and the judge's own scores (`scores` then holds the corrected ones).
    labels: tuple[str | None, ...] = ()
    judged: tuple[float | None, ...] = ()


def _binary_collation() -> str:
    # The merge compares keys in Python (code point order), so the database must sort them the same way:
    # byte order, not the server's locale ("k:a-b" and "k:ab" swap places under en_US).
    return "C" if connection.vendor == "postgresql" else "BINARY"


Verdicts = dict[tuple[int, str], HumanVerdict]


def run_human_verdicts(run: Run) -> Verdicts:
    """{(item id, evaluator): the human verdict} of every reviewed score of the run: a few rows."""
    reviewed = Review.objects.filter(run=run).order_by().values_list("item_id", flat=True).distinct()
    return human_verdicts(reviewed)


def _corrected(row: SideRow, names: list[str], verdicts: Verdicts) -> SideRow:
    """The row as the people said: each reviewed score's corrected value (else the judge's) and label."""
    scores = list(row.scores)
    labels: list[str | None] = [None] * len(names)
    for index, name in enumerate(names):
        verdict = verdicts.get((row.item, name))
        if verdict is None:
            continue
        labels[index] = verdict.label
        if verdict.score is not None:
            scores[index] = verdict.score
    return row._replace(scores=tuple(scores), labels=tuple(labels), judged=row.scores)


def _side_rows(
    run: Run, names: list[str], *, by_position: bool, verdicts: Verdicts | None = None
) -> Iterator[SideRow]:
    """A run's items in pairing order, each with its score from every evaluator, a chunk at a time.

    With `verdicts` (human corrections), reviewed scores come as the people said.
    """
    scores = {
        f"score_{index}": Subquery(
            Score.objects.filter(item=OuterRef("pk"), evaluator_name=name).values("score")[:1]
        )
        for index, name in enumerate(names)
    }
    items = Item.objects.filter(run=run).annotate(**scores)
    if by_position:
        # The (run, position) unique index gives this order without a sort.
        rows = items.order_by("position").values_list("position", "pk", "position", *scores)
    else:
        rows = (
            items.annotate(pair_key=Collate("example__input_key", _binary_collation()))
            .order_by("pair_key", "position")
            .values_list("pair_key", "pk", "position", *scores)
        )
    for key, item_id, position, *values in rows.iterator(chunk_size=2_000):
        row = SideRow(key, item_id, position, tuple(None if v is None else float(v) for v in values))
        yield _corrected(row, names, verdicts) if verdicts else row


class _Merge:
    """Pairs two streams sorted by key: equal keys pair in order; counts what paired and what did not."""

    def __init__(self, rows_a: Iterator[SideRow], rows_b: Iterator[SideRow]) -> None:
        self.rows = {"a": rows_a, "b": rows_b}
        self.seen = {"a": 0, "b": 0}
        self.duplicated = {"a": 0, "b": 0}
        self.unkeyed = {"a": 0, "b": 0}
        self.pairs = 0

    def _counted(self, side: str) -> Iterator[SideRow]:
        previous: Any = None
        counted = False
        for row in self.rows[side]:
            self.seen[side] += 1
            if row.key == "":
                self.unkeyed[side] += 1
                continue
            if row.key == previous:
                if not counted:
                    self.duplicated[side] += 1
                    counted = True
            else:
                previous, counted = row.key, False
            yield row

    def __iter__(self) -> Iterator[tuple[SideRow, SideRow]]:
        rows_a, rows_b = self._counted("a"), self._counted("b")
        row_a, row_b = next(rows_a, None), next(rows_b, None)
        while row_a is not None and row_b is not None:
            if row_a.key < row_b.key:
                row_a = next(rows_a, None)
            elif row_b.key < row_a.key:
                row_b = next(rows_b, None)
            else:
                # Within one key both streams are in row order, so the nth of A meets the nth of B.
                self.pairs += 1
                yield row_a, row_b
                row_a, row_b = next(rows_a, None), next(rows_b, None)
        # Read what is left, for the counts of items only in one run.
        for _ in rows_a:
            pass
        for _ in rows_b:
            pass


class Largest(Generic[EntryT]):
    """The n largest entries offered so far, in a min-heap of n: memory stays flat however many pass."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.heap: list[EntryT] = []

    def offer(self, entry: EntryT) -> None:
        if len(self.heap) < self.n:
            heapq.heappush(self.heap, entry)
        elif entry > self.heap[0]:
            heapq.heapreplace(self.heap, entry)


class _Tally:
    """One evaluator's sums over the pairs as they pass, and the largest drops from pass to fail so far.

    The difference's variance is accumulated with Welford's method: one pass, no cancellation.
    """

    def __init__(
        self, name: str, index: int, a: tuple[float, str], b: tuple[float, str], *, corrected: bool = False
    ) -> None:
        self.name, self.index, self.corrected = name, index, corrected
        self.reviewed_a = self.reviewed_b = 0
        self.threshold_a, self.source_a = a
        self.threshold_b, self.source_b = b
        self.n = self.unscored = self.improved = self.regressed = 0
        self.passed_a = self.passed_b = self.pass_to_fail = self.fail_to_pass = 0
        self.sum_a = self.sum_b = self.mean_d = self.squares_d = 0.0
        # (drop, -position, A item, B item, A score, B score).
        self.largest: Largest[tuple[float, int, int, int, float, float]] = Largest(DROPS_SHOWN)

    def add(self, row_a: SideRow, row_b: SideRow) -> None:
        score_a, score_b = row_a.scores[self.index], row_b.scores[self.index]
        if score_a is None or score_b is None:
            self.unscored += 1
            return
        self.n += 1
        self.sum_a += score_a
        self.sum_b += score_b
        d = score_b - score_a
        delta = d - self.mean_d
        self.mean_d += delta / self.n
        self.squares_d += delta * (d - self.mean_d)
        change = change_of(d)
        if change == "improved":
            self.improved += 1
        elif change == "regressed":
            self.regressed += 1
        label_a = row_a.labels[self.index] if row_a.labels else None
        label_b = row_b.labels[self.index] if row_b.labels else None
        self.reviewed_a += label_a is not None
        self.reviewed_b += label_b is not None
        a_passes = score_a >= self.threshold_a if label_a is None else label_a == "pass"
        b_passes = score_b >= self.threshold_b if label_b is None else label_b == "pass"
        self.passed_a += a_passes
        self.passed_b += b_passes
        if a_passes and not b_passes:
            self.pass_to_fail += 1
            self.largest.offer((-d, -row_a.position, row_a.item, row_b.item, score_a, score_b))
        elif b_passes and not a_passes:
            self.fail_to_pass += 1

    def result(self) -> EvaluatorComparison:
        n = self.n
        return EvaluatorComparison(
            name=self.name,
            n=n,
            unscored=self.unscored,
            mean_a=self.sum_a / n if n else None,
            mean_b=self.sum_b / n if n else None,
            difference=interval_from_deviations(n, self.mean_d, self.squares_d),
            improved=self.improved,
            regressed=self.regressed,
            unchanged=n - self.improved - self.regressed,
            threshold_a=self.threshold_a,
            threshold_source_a=self.source_a,
            threshold_b=self.threshold_b,
            threshold_source_b=self.source_b,
            passed_a=self.passed_a,
            passed_b=self.passed_b,
            pass_to_fail=self.pass_to_fail,
            fail_to_pass=self.fail_to_pass,
            drops=_drops(self.name, sorted(self.largest.heap, reverse=True)),
            corrected=self.corrected,
            reviewed_a=self.reviewed_a,
            reviewed_b=self.reviewed_b,
        )


def compare_streamed(
    a: Run,
    b: Run,
    overrides: dict[str, float],
    *,
    corrected: bool = False,
    visit: Callable[[SideRow, SideRow], None] | None = None,
) -> RunComparison:
    names = shared_evaluators(a, b)
    by_position = a.dataset_id == b.dataset_id
    tallies = [
        _Tally(
            name,
            index,
            a.threshold_for(name, override=overrides.get(name)),
            b.threshold_for(name, override=overrides.get(name)),
            corrected=corrected,
        )
        for index, name in enumerate(names)
    ]
    verdicts_a = run_human_verdicts(a) if corrected else None
    verdicts_b = run_human_verdicts(b) if corrected else None
    merge = _Merge(
        _side_rows(a, names, by_position=by_position, verdicts=verdicts_a),
        _side_rows(b, names, by_position=by_position, verdicts=verdicts_b),
    )
    for row_a, row_b in merge:
        for tally in tallies:
            tally.add(row_a, row_b)
        if visit is not None:
            visit(row_a, row_b)
    comparison = RunComparison(
        a=a,
        b=b,
        paired_by="position" if by_position else "input",
        items_a=merge.seen["a"],
        items_b=merge.seen["b"],
        pairs=merge.pairs,
        duplicated_keys_a=merge.duplicated["a"],
        duplicated_keys_b=merge.duplicated["b"],
        unkeyed_a=merge.unkeyed["a"],
        unkeyed_b=merge.unkeyed["b"],
        evaluators=[tally.result() for tally in tallies],
        evaluators_only_a=[name for name in a.evaluators if name not in set(b.evaluators)],
        evaluators_only_b=[name for name in b.evaluators if name not in set(a.evaluators)],
        overrides={name: value for name, value in overrides.items() if name in names},
        warnings=[],
        corrected=corrected,
        cost_a=run_cost(a),
        cost_b=run_cost(b),
    )
    comparison.warnings.extend(_warnings(comparison))
    return comparison


def _evaluator_set(run: Run) -> str:
    """ "every evaluator of <judge>" (the whole judge), or "2 chosen evaluators: Politeness, Concision"."""
    if not run.evaluator_ids:
        return f"every evaluator of {run.judge.name}"
    count = len(run.evaluator_ids)
    names = ", ".join(run.evaluators) if run.evaluators else ", ".join(map(str, run.evaluator_ids))
    return f"{_plural(count, 'chosen evaluator')}: {names}"


def _plural(count: int, word: str, plural: str = "") -> str:
    return f"{count:,} {word if count == 1 else plural or word + 's'}"


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
    if set(a.evaluator_ids or []) != set(b.evaluator_ids or []):
        warnings.append(
            f"The runs used different evaluator sets (A: {_evaluator_set(a)}; B: {_evaluator_set(b)}): "
            "costs and scores may differ for that reason alone."
        )
    if comparison.evaluators_only_a or comparison.evaluators_only_b:
        parts = []
        if comparison.evaluators_only_a:
            parts.append("only in A: " + ", ".join(comparison.evaluators_only_a))
        if comparison.evaluators_only_b:
            parts.append("only in B: " + ", ".join(comparison.evaluators_only_b))
        warnings.append("The evaluators differ (" + "; ".join(parts) + "); those are left out.")
    if comparison.pairs == 0 and comparison.items_a and comparison.items_b:
        warnings.append(
            "No item of A pairs with an item of B: the datasets share no input. If they hold the same "
            "questions worded differently, upload both with a key column (id, case_id...) to pair them."
        )
    elif comparison.only_a or comparison.only_b:
        how = "by row (same dataset)" if comparison.paired_by == "position" else "by input"
        warnings.append(
            f"The item sets differ: {_plural(comparison.pairs, 'pair')} {how}, "
            f"{comparison.only_a:,} only in A, {comparison.only_b:,} only in B. "
            "The figures below cover the paired items only."
        )
    if comparison.duplicated_keys:
        warnings.append(
            f"Some inputs appear more than once ({comparison.duplicated_keys_a:,} in A, "
            f"{comparison.duplicated_keys_b:,} in B: the same row uploaded twice, or a key column that is "
            "not unique); their rows pair in order, the 1st with the 1st, the 2nd with the 2nd."
        )
    if comparison.unkeyed_a or comparison.unkeyed_b:
        warnings.append(
            f"{comparison.unkeyed_a:,} items of A and {comparison.unkeyed_b:,} of B have no pairing key "
            "(their rows were imported without one) and cannot pair."
        )
    differ = [
        f"{row.name} {row.threshold_a:g} in A ({threshold_source_label(row.threshold_source_a)}), "
        f"{row.threshold_b:g} in B ({threshold_source_label(row.threshold_source_b)})"
        for row in comparison.evaluators
        if row.thresholds_differ
    ]
    if differ:
        warnings.append(
            "The runs pass items at different thresholds: "
            + "; ".join(differ)
            + ". Pass rates use each run's own; set one threshold to compare them at the same bar."
        )
    for label, run in (("A", a), ("B", b)):
        if not run.is_finished:
            warnings.append(f"Run {label} has not finished: this covers the items scored so far.")
    return warnings


def threshold_source_label(source: str) -> str:
    return {
        "judge": "the judge's",
        "default": "default",
        "pending": "default until the judge's is learned",
        "override": "override",
    }.get(source, source)


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


def comparison_as_dict(comparison: RunComparison) -> dict[str, Any]:
    """The comparison as plain JSON values (compare_runs --json)."""

    def side(run: Run) -> dict[str, Any]:
        return {
            "id": run.pk,
            "name": str(run),
            "status": run.status,
            "dataset": {"id": run.dataset_id, "name": run.dataset.name},
            "judge": run.judge.name,
            "evaluator_ids": list(run.evaluator_ids or []),
        }

    return {
        "a": side(comparison.a),
        "b": side(comparison.b),
        "paired_by": comparison.paired_by,
        "pairs": comparison.pairs,
        "only_a": comparison.only_a,
        "only_b": comparison.only_b,
        "duplicated_keys": {"a": comparison.duplicated_keys_a, "b": comparison.duplicated_keys_b},
        "evaluators": [
            {
                "name": row.name,
                "pairs": row.n,
                "mean_a": row.mean_a,
                "mean_b": row.mean_b,
                "diff": row.difference.mean,
                "ci_low": row.difference.low,
                "ci_high": row.difference.high,
                "verdict": row.verdict,
                "regression": row.regression,
                "improved": row.improved,
                "regressed": row.regressed,
                "unchanged": row.unchanged,
                "unscored_pairs": row.unscored,
                "threshold_a": row.threshold_a,
                "threshold_source_a": row.threshold_source_a,
                "threshold_b": row.threshold_b,
                "threshold_source_b": row.threshold_source_b,
                "pass_to_fail": row.pass_to_fail,
                "fail_to_pass": row.fail_to_pass,
                "reviewed_a": row.reviewed_a,
                "reviewed_b": row.reviewed_b,
            }
            for row in comparison.evaluators
        ],
        "evaluators_only_a": comparison.evaluators_only_a,
        "evaluators_only_b": comparison.evaluators_only_b,
        "regression": comparison.regression,
        "warnings": comparison.warnings,
        "corrected": comparison.corrected,
        "cost": {
            "per_item_a": comparison.cost_per_item_a,
            "per_item_b": comparison.cost_per_item_b,
            "per_item_change": comparison.cost_per_item_change,
            "total_a": comparison.cost_a.total if comparison.cost_a else 0.0,
            "total_b": comparison.cost_b.total if comparison.cost_b else 0.0,
            "items_a": comparison.cost_a.items if comparison.cost_a else 0,
            "items_b": comparison.cost_b.items if comparison.cost_b else 0,
        },
    }
