"""Statistics of a run's scores: per evaluator n, mean with a 95% confidence interval, median, pass rate,
a histogram, and the same per slice of a metadata column.

Everything is aggregated in SQL over the scores' (run, evaluator, score, item) index, so a 100,000-item
run costs a handful of index scans, not 100,000 Python objects. The median is the one value read by
position along that index.

Formulas (n scores x_1..x_n of one evaluator):
    mean        x̄ = Σx / n
    sample sd   s = sqrt(Σ(x - x̄)² / (n - 1))       (a second pass over the index, after x̄)
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

Cost. The pump adds each batch's cost, read from the judge's execution logs, to the run's totals
(`Run.cost_total`, `cost_items`: the items whose cost is known, `cost_by_evaluator`); nothing here reads
an item. Over the items whose cost is known (a batch whose logs could not be read adds nothing):

    cost per item                  cost_total / cost_items
    an evaluator's cost per item   cost_by_evaluator[name] / cost_items
    an evaluator's cost per pass   its cost per item / its pass rate (what each passing score costs)

The latest-verdict view adds up the run and its retries: every verdict in view was paid for by one of them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from django.db.models import Avg, Count, F, FloatField, Max, Min, Q, QuerySet, Sum
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast

from evals.models import BackoffKind, Item, RemoteBatch, Review, Run, Score
from evals.selectors.runs import run_chain, run_items_merged
from evals.services.costs import format_cost
from evals.services.reviews import corrected_value, human_label, human_verdicts

HISTOGRAM_BINS = 10
SLICE_LIMIT = 30
CONFIDENCE = 0.95


# --- Student's t, written out (no scipy) -------------------------------------------------------------


def _log_beta(a: float, b: float) -> float:
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)


def _beta_continued_fraction(x: float, a: float, b: float) -> float:
    """The continued fraction of the regularized incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    result = d
    for m in range(1, 10_000):
        m2 = 2 * m
        step = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + step * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + step / c
        c = c if abs(c) > tiny else tiny
        result *= d * c
        step = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + step * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + step / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        result *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return result


def incomplete_beta(x: float, a: float, b: float) -> float:
    """I_x(a, b), the regularized incomplete beta function."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(a * math.log(x) + b * math.log1p(-x) - _log_beta(a, b))
    # The fraction converges fast on this side of the mean; use the symmetry otherwise.
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _beta_continued_fraction(x, a, b) / a
    return 1.0 - front * _beta_continued_fraction(1.0 - x, b, a) / b


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with `df` degrees of freedom."""
    tail = 0.5 * incomplete_beta(df / (df + t * t), df / 2.0, 0.5)
    return 1.0 - tail if t >= 0 else tail


def t_quantile(p: float, df: float) -> float:
    """The value t with P(T <= t) = p, for Student's t with `df` degrees of freedom (p in (0, 1))."""
    if not 0.0 < p < 1.0:
        raise ValueError("p must be in (0, 1)")
    if df <= 0:
        raise ValueError("df must be positive")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    if p == 0.5:
        return 0.0
    # Bisection on the exact CDF: 200 halvings reach the limit of a double; stops earlier once stable.
    low, high = 0.0, 1.0
    while t_cdf(high, df) < p:
        high *= 2.0
        if high > 1e12:
            return math.inf
    for _ in range(200):
        middle = (low + high) / 2.0
        if middle in (low, high):
            break
        if t_cdf(middle, df) < p:
            low = middle
        else:
            high = middle
    return (low + high) / 2.0


# --- Cost ------------------------------------------------------------------------------------------


def format_cost_change(value: float | None) -> str:
    """A difference of costs with its sign, written as `format_cost` writes costs: "+$0.0012", "−$0.0012"."""
    if value is None or value == 0:
        return format_cost(value)
    return ("+" if value > 0 else "−") + format_cost(abs(value))


def _per(total: float | None, count: int | float | None) -> float | None:
    return total / count if total is not None and count else None


@dataclass(frozen=True)
class RunCost:
    """What a run cost so far, over the items whose cost the judge's logs gave (see the module's docstring)."""

    total: float
    items: int
    by_evaluator: dict[str, float]
    max_cost: float | None = None
    budget_paused: bool = False

    @property
    def known(self) -> bool:
        return self.items > 0

    @property
    def per_item(self) -> float | None:
        return _per(self.total, self.items)

    def evaluator_per_item(self, name: str) -> float | None:
        return _per(self.by_evaluator.get(name), self.items)

    @property
    def total_label(self) -> str:
        return format_cost(self.total)

    @property
    def per_item_label(self) -> str:
        return format_cost(self.per_item)

    @property
    def max_cost_label(self) -> str:
        return format_cost(self.max_cost) if self.max_cost is not None else "no cap"


def run_cost(run: Run, *, latest: bool = False) -> RunCost:
    """The run's cost totals; with `latest`, the run's and its retries' together (their verdicts are in view)."""
    paused = run.backoff_kind == BackoffKind.BUDGET and not run.is_finished
    if not latest:
        return RunCost(
            total=float(run.cost_total or 0.0),
            items=int(run.cost_items or 0),
            by_evaluator={str(k): float(v) for k, v in (run.cost_by_evaluator or {}).items()},
            max_cost=run.max_cost,
            budget_paused=paused,
        )
    total, items = 0.0, 0
    by_evaluator: dict[str, float] = {}
    for cost_total, cost_items, per_evaluator in Run.objects.filter(pk__in=run_chain(run)).values_list(
        "cost_total", "cost_items", "cost_by_evaluator"
    ):
        total += float(cost_total or 0.0)
        items += int(cost_items or 0)
        for name, value in (per_evaluator or {}).items():
            by_evaluator[str(name)] = by_evaluator.get(str(name), 0.0) + float(value)
    return RunCost(
        total=total, items=items, by_evaluator=by_evaluator, max_cost=run.max_cost, budget_paused=paused
    )


def run_waits_for_cap(run: Run) -> bool:
    """Paused by its spending cap with nothing out: only a person raising the cap will move it on.

    While a batch is in flight, or finished with its logs not read yet, the pause may lift by itself
    (its cost becomes known and may fit); a command that waits must not give up then.
    """
    if not (run.backoff_kind == BackoffKind.BUDGET and not run.is_finished):
        return False
    out = RemoteBatch.objects.filter(run=run).filter(
        Q(status__in=[RemoteBatch.Status.SUBMITTING, RemoteBatch.Status.RUNNING])
        | Q(logs_fetched_at__isnull=True, items__status=Item.Status.COMPLETED)
    )
    return not out.exists()


# --- Summaries ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MeanInterval:
    n: int
    mean: float | None
    sd: float | None
    low: float | None
    high: float | None

    @property
    def half_width(self) -> float | None:
        if self.low is None or self.high is None or self.mean is None:
            return None
        return self.high - self.mean

    @property
    def excludes_zero(self) -> bool:
        return self.low is not None and self.high is not None and (self.low > 0 or self.high < 0)


def mean_interval(
    n: int, total: float, total_squares: float, *, confidence: float = CONFIDENCE
) -> MeanInterval:
    """Mean and its Student-t confidence interval from n, Σx and Σx² (what SQL can sum in one pass)."""
    if n <= 0:
        return MeanInterval(n=0, mean=None, sd=None, low=None, high=None)
    return interval_from_deviations(n, total / n, total_squares - total * total / n, confidence=confidence)


def interval_from_deviations(
    n: int, mean: float, squared_deviations: float, *, confidence: float = CONFIDENCE
) -> MeanInterval:
    """Mean and its Student-t confidence interval from n, x̄ and Σ(x - x̄)²."""
    if n <= 0:
        return MeanInterval(n=0, mean=None, sd=None, low=None, high=None)
    if n < 2:
        return MeanInterval(n=n, mean=mean, sd=None, low=None, high=None)
    # Σx² - n·x̄² can come out a hair below zero by rounding when every value is equal.
    sd = math.sqrt(max(squared_deviations, 0.0) / (n - 1))
    half = t_quantile(0.5 + confidence / 2.0, n - 1) * sd / math.sqrt(n)
    return MeanInterval(n=n, mean=mean, sd=sd, low=mean - half, high=mean + half)


def mean_interval_of(values: Iterable[float], *, confidence: float = CONFIDENCE) -> MeanInterval:
    numbers = list(values)
    if not numbers:
        return mean_interval(0, 0.0, 0.0)
    mean = sum(numbers) / len(numbers)
    return interval_from_deviations(
        len(numbers), mean, sum((x - mean) ** 2 for x in numbers), confidence=confidence
    )


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
        return _per(self.cost_per_item, self.pass_rate)

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
    evaluators = []
    for name in run.evaluators:
        threshold, source = chosen[name]
        stats = evaluator_statistics(
            run,
            name,
            latest=latest,
            threshold=threshold,
            threshold_source=source,
            items=items,
            slice_column=slice_column,
            corrected=corrected,
            tally=tallies.get(name),
        )
        evaluators.append(replace(stats, cost_per_item=cost.evaluator_per_item(name)))
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
        tally[2] += verdict.passed != (score >= thresholds[name])
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
    passes = Q(score__gte=threshold)
    if corrected:
        # The value a reviewed score counts with, and the label of the review that counts (NULL: none).
        scores = scores.annotate(shown_score=corrected_value(), human_verdict=human_label())
        value = "shown_score"
        passes = Q(human_verdict="pass") | Q(human_verdict__isnull=True, shown_score__gte=threshold)
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
    # One pass over the index range of (run, evaluator): every number below but the median.
    totals = scores.aggregate(
        n=Count("pk"),
        total=Sum(value),
        minimum=Min(value),
        maximum=Max(value),
        passed=Count("pk", filter=passes),
        **bins_wanted,
    )
    n = int(totals["n"] or 0)
    mean = float(totals["total"] or 0.0) / n if n else 0.0
    # A second pass for Σ(x - x̄)²: exact where Σx² - n·x̄² would lose digits to cancellation.
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
        median=_median(scores, n, value=value),
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
