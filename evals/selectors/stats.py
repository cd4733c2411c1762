"""Statistics of a run's scores: per evaluator n, mean with a 95% confidence interval, median, pass rate,
a histogram, and the same per slice of a metadata column.

Everything is aggregated in SQL over the scores' (run, evaluator, score, item) index, so a 100,000-item
run costs a handful of index scans, not 100,000 Python objects. On PostgreSQL it is one scan per
evaluator (variance and median are aggregates there too); on SQLite the median is the one value read
by position along that index.

Formulas (n scores x_1..x_n of one evaluator):
    mean        x̄ = Σx / n
    sample sd   s = sqrt(Σ(x - x̄)² / (n - 1))       (SQLite: a second pass, after x̄; PostgreSQL: var_samp)
    95% CI      x̄ ± t(0.975, n - 1) · s / √n           (Student's t; none below n = 2)
    median      the middle score, or the mean of the two middle scores when n is even
    pass rate   #(x >= threshold) / n

The threshold of each evaluator is the run's own (`Run.threshold_for`): learned once from the judge's
execution log when the run's first item completed, never from logs fetched later; a threshold asked
for in the URL is an override, and says so.

With human corrections (`corrected=True`) a reviewed score counts as the people said: its value is the
corrected score of the review that counts (`evals.services.reviews`: the most recently changed one)
where that review gave one, else the judge's; it passes when that review says pass, whatever the
number. Unreviewed scores count as the judge gave them. Every figure follows: mean, interval, median,
range, histogram, pass rate and slices. The same aggregates run over two annotations (a correlated
subquery per score, on the reviews' (item, evaluator) index); without corrections the queries are the
plain ones over the scores' index.

How many scores people reviewed, and how many of the judge's verdicts they turned over, are counted
from the reviews (a few hundred rows, not the run's scores), in either mode.

Cost (`evals.selectors.costs.run_cost`: the run's totals, nothing read per item), and per evaluator:

    an evaluator's cost per item   cost_by_evaluator[name] / cost_items
    an evaluator's cost per pass   its cost per item / its pass rate (what each passing score costs)

The t quantile and the interval come from `evals.services.intervals`.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from django.core.cache import cache
from django.db import connection
from django.db.models import Aggregate, Avg, Count, F, FloatField, Max, Min, Q, QuerySet, Sum, Variance
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast

from evals.models import Review, Run, Score
from evals.money import format_cost
from evals.selectors.costs import RunCost, cost_per, run_cost
from evals.selectors.runs import run_chain, run_items_merged, runs_version
from evals.services.intervals import MeanInterval, interval_from_deviations
from evals.services.reviews import corrected_value, human_label, human_verdicts

HISTOGRAM_BINS = 10
SLICE_LIMIT = 30
# How long the figures of one version of a run are kept (a new change number makes new ones anyway).
STATS_CACHE_SECONDS = 24 * 3600


# --- Summaries ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bin:
    low: float
    high: float
    count: int

    @property
    def label(self) -> str:
        return f"{self.low:.1f}–{self.high:.1f}"

    @property
    def middle(self) -> float:
        return (self.low + self.high) / 2


@dataclass(frozen=True)
class SliceRow:
    value: str | None
    n: int
    mean: float | None
    passed: int

    @property
    def pass_rate(self) -> float | None:
        return self.passed / self.n if self.n else None


@dataclass(frozen=True)
class EvaluatorStats:
    name: str
    interval: MeanInterval
    median: float | None
    minimum: float | None
    maximum: float | None
    threshold: float
    # As Run.threshold_for gives it: "override" (asked for in the address), "judge" (the judge's own,
    # learned with the run), "default" (0.5: the judge named none) or "pending" (0.5 until learned).
    threshold_source: str
    passed: int
    # Items of the view without a score from this evaluator (failed, pending, cancelled, or skipped).
    unscored: int
    bins: list[Bin]
    slices: list[SliceRow] = field(default_factory=list)
    slice_values: int = 0
    # Scores with a human verdict, the reviews behind them (several people may review one score), and
    # the verdicts the people turned over at `threshold` (pass where the judge failed it, or fail).
    reviewed: int = 0
    reviews: int = 0
    changed: int = 0
    # True: the figures above read each reviewed score as the people said (see the module's docstring).
    corrected: bool = False
    # What the evaluator cost per item whose cost is known; None until a cost is known.
    cost_per_item: float | None = None

    @property
    def n(self) -> int:
        return self.interval.n

    @property
    def cost_per_pass(self) -> float | None:
        """What each passing score costs: the cost per item over the pass rate (None without a pass)."""
        return cost_per(self.cost_per_item, self.pass_rate)

    @property
    def cost_per_item_label(self) -> str:
        return format_cost(self.cost_per_item)

    @property
    def cost_per_pass_label(self) -> str:
        return format_cost(self.cost_per_pass)

    @property
    def mean(self) -> float | None:
        return self.interval.mean

    @property
    def pass_rate(self) -> float | None:
        return self.passed / self.n if self.n else None

    @property
    def peak(self) -> int:
        return max((b.count for b in self.bins), default=0)


@dataclass(frozen=True)
class RunStatistics:
    run: Run
    latest: bool
    items: int
    evaluators: list[EvaluatorStats]
    slice_column: str | None
    corrected: bool = False
    cost: RunCost = field(default_factory=lambda: RunCost(total=0.0, items=0, by_evaluator={}))

    @property
    def reviews(self) -> int:
        """Reviews of the scores in view, every evaluator together."""
        return sum(stats.reviews for stats in self.evaluators)


def thresholds_from_params(params: Mapping[str, Any], evaluators: Iterable[str]) -> dict[str, float]:
    """Thresholds asked for in the URL: `threshold=0.7` for every evaluator, `threshold.<name>=0.7` for one."""
    chosen: dict[str, float] = {}
    every = _number(params.get("threshold"))
    for name in evaluators:
        own = _number(params.get(f"threshold.{name}"))
        if own is not None:
            chosen[name] = own
        elif every is not None:
            chosen[name] = every
    return chosen


def _number(value: Any) -> float | None:
    if value is None or str(value).strip() == "":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def run_scores(run: Run, name: str, *, latest: bool) -> QuerySet[Score]:
    """The scores of one evaluator in the run (or in the latest verdict per row across its retries)."""
    scores = Score.objects.filter(evaluator_name=name, score__isnull=False)
    if latest:
        return scores.filter(item__in=run_items_merged(run))
    return scores.filter(run=run)


def run_statistics(
    *,
    run: Run,
    latest: bool = False,
    thresholds: Mapping[str, float] | None = None,
    slice_column: str | None = None,
    corrected: bool = False,
) -> RunStatistics:
    """Per evaluator statistics of a run at the run's own thresholds; `thresholds` (from the URL) override them.

    With `latest`, the run's thresholds also judge the verdicts of its retries (same judge, same version).
    With `corrected`, reviewed scores count as the people said (the module's docstring says how).
    """
    thresholds = dict(thresholds or {})
    items = run_items_merged(run).count() if latest else run.total_count
    if slice_column is not None and slice_column not in run.dataset.metadata_columns:
        slice_column = None
    chosen = {name: run.threshold_for(name, override=thresholds.get(name)) for name in run.evaluators}
    tallies = review_tallies(
        run, latest=latest, thresholds={name: threshold for name, (threshold, _) in chosen.items()}
    )
    cost = run_cost(run, latest=latest)
    # The scores' figures change only with the scores, and every write of a score bumps its run's
    # change_seq: kept per version of the run (and its retries), they cost one pass over a finished
    # run's scores, not one per view (2-7 s for 1,000,000 items). Human corrections change them
    # without a bump, so corrected figures are never kept; the review tallies are counted every time.
    version = None if corrected else runs_version(run_chain(run) if latest else [run.pk])
    evaluators = []
    for name in run.evaluators:
        threshold, source = chosen[name]
        # Hashed: an evaluator's name may hold any character, a cache key may not.
        what = f"{version}:{name}:{threshold!r}:{slice_column}"
        key = f"docket:stats:{hashlib.sha256(what.encode()).hexdigest()}" if version else None
        stats = cache.get(key) if key else None
        if stats is None:
            stats = evaluator_statistics(
                run,
                name,
                latest=latest,
                threshold=threshold,
                items=items,
                slice_column=slice_column,
                corrected=corrected,
            )
            if key:
                cache.set(key, stats, STATS_CACHE_SECONDS)
        tally = tallies.get(name) or ReviewTally()
        evaluators.append(
            replace(
                stats,
                threshold_source=source,
                reviewed=tally.reviewed,
                reviews=tally.reviews,
                changed=tally.changed,
                cost_per_item=cost.evaluator_per_item(name),
            )
        )
    return RunStatistics(
        run=run,
        latest=latest,
        items=items,
        evaluators=evaluators,
        slice_column=slice_column,
        corrected=corrected,
        cost=cost,
    )


@dataclass(frozen=True)
class ReviewTally:
    """One evaluator's scores with a human verdict, the reviews behind them, and the verdicts turned over."""

    reviewed: int = 0
    reviews: int = 0
    changed: int = 0


def review_tallies(run: Run, *, latest: bool, thresholds: Mapping[str, float]) -> dict[str, ReviewTally]:
    """{evaluator: its ReviewTally} over the scores in view, judged at `thresholds` ({evaluator: value}).

    Read from the reviews and the scores they name, never from every score of the run.
    """
    runs = run_chain(run) if latest else [run.pk]
    reviewed_items = Review.objects.filter(run_id__in=runs).order_by().values_list("item_id", flat=True)
    if latest:
        # A review of a row that a later retry judged again stays with the item it reviewed: out of view.
        item_ids = list(run_items_merged(run).filter(pk__in=reviewed_items).values_list("pk", flat=True))
    else:
        item_ids = list(reviewed_items.distinct())
    if not item_ids:
        return {}
    judged = {
        (item_id, name): score
        for item_id, name, score in Score.objects.filter(
            item_id__in=item_ids, evaluator_name__in=list(thresholds), score__isnull=False
        ).values_list("item_id", "evaluator_name", "score")
        if score is not None
    }
    counts: dict[str, list[int]] = {}
    for key, verdict in human_verdicts(item_ids).items():
        score = judged.get(key)
        if score is None:
            continue
        name = key[1]
        tally = counts.setdefault(name, [0, 0, 0])
        tally[0] += 1
        tally[1] += verdict.reviews
        tally[2] += verdict.passed != run.passes(name, score, override=thresholds[name])
    return {name: ReviewTally(*numbers) for name, numbers in counts.items()}


def evaluator_statistics(
    run: Run,
    name: str,
    *,
    latest: bool,
    threshold: float,
    threshold_source: str = "default",
    items: int | None = None,
    slice_column: str | None = None,
    corrected: bool = False,
    tally: ReviewTally | None = None,
) -> EvaluatorStats:
    scores = run_scores(run, name, latest=latest)
    value = "score"
    passes = run.passing(name, override=threshold)
    if corrected:
        # The value a reviewed score counts with, and the label of the review that counts (NULL: none).
        scores = scores.annotate(shown_score=corrected_value(), human_verdict=human_label())
        value = "shown_score"
        passes = Q(human_verdict="pass") | (
            Q(human_verdict__isnull=True) & run.passing(name, override=threshold, field=value)
        )
    # Edges as i / 10, never i * 0.1: 6 * 0.1 is 0.6000000000000001, which would put 0.6 in the bin below.
    edges = [index / HISTOGRAM_BINS for index in range(HISTOGRAM_BINS + 1)]
    bins_wanted: dict[str, Any] = {}
    for index in range(HISTOGRAM_BINS):
        # The first and last bins also take anything outside [0, 1]; the last one includes 1.0.
        condition = Q()
        if index > 0:
            condition &= Q(**{f"{value}__gte": edges[index]})
        if index < HISTOGRAM_BINS - 1:
            condition &= Q(**{f"{value}__lt": edges[index + 1]})
        bins_wanted[f"bin{index}"] = Count("pk", filter=condition) if condition else Count("pk")
    # PostgreSQL: one pass over the index range of (run, evaluator) gives every number, the variance
    # from var_samp (Youngs-Cramer, no cancellation) and the median from percentile_cont. Elsewhere the
    # median and Σ(x - x̄)² take a pass each. (On PostgreSQL the median read by OFFSET along the index
    # took 4 s per evaluator of a 1,000,000-item run: it walks every entry before the middle one.)
    one_pass = connection.vendor == "postgresql"
    extra: dict[str, Any] = (
        {"variance": Variance(value, sample=True), "middle": Median(value)} if one_pass else {}
    )
    totals = scores.aggregate(
        n=Count("pk"),
        total=Sum(value),
        minimum=Min(value),
        maximum=Max(value),
        passed=Count("pk", filter=passes),
        **bins_wanted,
        **extra,
    )
    n = int(totals["n"] or 0)
    mean = float(totals["total"] or 0.0) / n if n else 0.0
    if one_pass:
        squared = float(totals["variance"] or 0.0) * (n - 1) if n > 1 else 0.0
    else:
        # Σ(x - x̄)² in a second pass: exact where Σx² - n·x̄² would lose digits to cancellation.
        squared = (
            scores.aggregate(ss=Sum((F(value) - mean) * (F(value) - mean), output_field=FloatField()))["ss"]
            if n > 1
            else 0.0
        )
    interval = interval_from_deviations(n, mean, float(squared or 0.0))
    if items is None:
        items = run_items_merged(run).count() if latest else run.total_count
    bins = [
        Bin(low=edges[i], high=edges[i + 1], count=int(totals[f"bin{i}"] or 0)) for i in range(HISTOGRAM_BINS)
    ]
    slices: list[SliceRow] = []
    slice_values = 0
    if slice_column:
        slices, slice_values = _slices(scores, slice_column, value=value, passes=passes)
    tally = tally or ReviewTally()
    return EvaluatorStats(
        name=name,
        interval=interval,
        median=(None if totals["middle"] is None else float(totals["middle"]))
        if one_pass
        else _median(scores, n, value=value),
        minimum=totals["minimum"],
        maximum=totals["maximum"],
        threshold=threshold,
        threshold_source=threshold_source,
        passed=int(totals["passed"] or 0),
        unscored=max(items - n, 0),
        bins=bins,
        slices=slices,
        slice_values=slice_values,
        reviewed=tally.reviewed,
        reviews=tally.reviews,
        changed=tally.changed,
        corrected=corrected,
    )


class Median(Aggregate):
    """PostgreSQL's median: the middle value, or the mean of the two middle values (as `_median`)."""

    function = "PERCENTILE_CONT"
    template = "%(function)s(0.5) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = FloatField()


def _median(scores: QuerySet[Score], n: int, *, value: str = "score") -> float | None:
    """Read by position along the (run, evaluator, score) index: one or two values, never the whole list.

    (Corrected values are not in any index: the database sorts them, once.)
    """
    if n == 0:
        return None
    ordered = scores.order_by(value).values_list(value, flat=True)
    middle = (n - 1) // 2
    values = [float(value) for value in ordered[middle : middle + (1 if n % 2 else 2)] if value is not None]
    if not values:
        return None
    return sum(values) / len(values)


def _slices(
    scores: QuerySet[Score], column: str, *, value: str = "score", passes: Q
) -> tuple[list[SliceRow], int]:
    """n, mean and passes per value of a metadata column, worst mean first (at most SLICE_LIMIT values)."""
    grouped = (
        scores.annotate(slice_value=KeyTextTransform(column, "item__example__metadata"))
        .values("slice_value")
        .annotate(
            n=Count("pk"),
            mean=Avg(Cast(value, FloatField())),
            passed=Count("pk", filter=passes),
        )
        .order_by("mean", "slice_value")
    )
    values = grouped.count()
    rows = [
        SliceRow(value=row["slice_value"], n=row["n"], mean=row["mean"], passed=row["passed"])
        for row in grouped[:SLICE_LIMIT]
    ]
    return rows, values
