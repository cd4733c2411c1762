"""A dataset family's history: each evaluator's mean per run, release after release.

Family. The runs of one judge over datasets that share at least 90% of their rows with the dataset of
the run the history is asked for (the anchor). Rows are known by `Example.input_key` (the user's key
column, else a hash of the inputs: the response never counts), so v1, v2 and v3 answers to the same
questions are one family even when rows were added, dropped or shuffled. With K_X the distinct non-empty
input keys of dataset X:

    share(A, B) = |K_A ∩ K_B| / max(|K_A|, |K_B|)          member when share >= 90%

The max makes the share symmetric and keeps out both a subset (50 of A's 400 questions) and a superset
(A's 400 questions inside a 4,000-row set). The anchor's own dataset is always a member (share 1); a
dataset without keys belongs only with itself. Compared in integers (100·|K_A ∩ K_B| >= 90·max), so a
share of exactly 90% is in.

A member run is a run of the same judge, not a retry (a retry's verdicts merge into the run it was made
from, see `run_items_merged`), and finished; the anchor is always in, finished or not (a retry opened as
the anchor stands for the run it retried). At most `limit` runs, in time order (created_at, then id):
the anchor and as many runs after it as fit, then runs before it.

Cost. Runs are read a page at a time, nearest the anchor first, and datasets decided a few at a time:
|K_A ∩ K_B| for several datasets B is one grouped query that reads B's rows along the (dataset, position)
index and looks each input_key up among A's (the database builds that set once per query). |K_B| is
counted only for datasets whose overlap already reaches 90% of |K_A| (max(|K_A|, |K_B|) >= |K_A|: the
others cannot be in), and not even then when B has no more rows than |K_A| (then the max is |K_A|; rows
are counted on the index alone). No keys are loaded into Python. Measured on SQLite, 100,000-row
datasets: about 0.4 s for an anchor, a sibling sharing 95% and a candidate sharing 50%, and about 0.1 s
more for each further 100,000-row candidate dataset; the trend adds about 0.06 s per 100,000-item run.

Trend. Per evaluator and run, over the run's latest verdict per row (its retries merged):

    n, mean x̄ = Σx / n, 95% CI x̄ ± t(0.975, n - 1) · s / √n     (evals.services.intervals.mean_interval)

and the change from the previous run of the family that this evaluator scored. Means of two runs are
not paired here; the compare page pairs the rows and tests the difference.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from django.db.models import Count, F, FloatField, Q, QuerySet, Sum

from evals.models import Example, Run, Score
from evals.selectors.runs import run_items_merged
from evals.services.intervals import MeanInterval, mean_interval

FAMILY_SHARE_PERCENT = 90
FAMILY_LIMIT = 50
# Candidate runs read per query, and datasets decided per grouped query: each dataset costs a pass over
# its rows, so a few at a time keep one query short.
RUNS_PER_PAGE = 100
DATASETS_PER_QUERY = 8


@dataclass(frozen=True)
class Family:
    anchor: Run
    # Oldest first.
    runs: list[Run]
    # Per dataset id of a member run: the share of its keys with the anchor's dataset, in [0, 1].
    shares: dict[int, float]
    # The number of distinct input keys of the anchor's dataset.
    anchor_keys: int
    # True when the limit left members out before the first run shown, or after the last one.
    older_left_out: bool = False
    newer_left_out: bool = False


def run_family(*, run: Run, limit: int = FAMILY_LIMIT) -> Family:
    """The runs of `run`'s judge over datasets sharing >= 90% of keys with its dataset, oldest first."""
    anchor = _original(run)
    limit = max(limit, 1)
    keys_a = _distinct_keys(Example.objects.filter(dataset_id=anchor.dataset_id))
    judge_runs = (
        Run.objects.filter(
            judge_id=anchor.judge_id, retry_of__isnull=True, noise_of__isnull=True, status__in=Run.FINISHED
        )
        .exclude(pk=anchor.pk)
        .select_related("dataset", "judge")
    )
    after = Q(created_at__gt=anchor.created_at) | Q(created_at=anchor.created_at, pk__gt=anchor.pk)
    shares: dict[int, float] = {anchor.dataset_id: 1.0}
    decided: dict[int, bool] = {anchor.dataset_id: True}

    def members(runs: QuerySet[Run], wanted: int) -> tuple[list[Run], bool]:
        """Up to `wanted` member runs in the order of `runs`, and whether more are left."""
        found: list[Run] = []
        if wanted <= 0:
            return found, _any_member(runs, anchor=anchor, keys_a=keys_a, shares=shares, decided=decided)
        for page in _pages(runs):
            _decide(page, anchor=anchor, keys_a=keys_a, shares=shares, decided=decided)
            for candidate in page:
                if decided[candidate.dataset_id]:
                    if len(found) == wanted:
                        return found, True
                    found.append(candidate)
        return found, False

    newer_runs = judge_runs.filter(after).order_by("created_at", "pk")
    older_runs = judge_runs.exclude(after).order_by("-created_at", "-pk")
    # The runs nearest the anchor on both sides decided together: one pass over the anchor's keys for both.
    nearest = [*newer_runs[:RUNS_PER_PAGE], *older_runs[:RUNS_PER_PAGE]]
    _decide(nearest, anchor=anchor, keys_a=keys_a, shares=shares, decided=decided)
    newer, newer_left_out = members(newer_runs, limit - 1)
    older, older_left_out = members(older_runs, limit - 1 - len(newer))
    runs = [*reversed(older), anchor, *newer]
    return Family(
        anchor=anchor,
        runs=runs,
        shares={run.dataset_id: shares[run.dataset_id] for run in runs},
        anchor_keys=keys_a,
        older_left_out=older_left_out,
        newer_left_out=newer_left_out,
    )


def _original(run: Run) -> Run:
    """The run a retry (of a retry...) was made from; the run itself when it is no retry."""
    seen = {run.pk}
    while run.retry_of_id is not None and run.retry_of_id not in seen:
        seen.add(run.retry_of_id)
        parent = Run.objects.select_related("dataset", "judge").filter(pk=run.retry_of_id).first()
        if parent is None:
            break
        run = parent
    return run


def _distinct_keys(examples: QuerySet[Example]) -> int:
    return examples.exclude(input_key="").values("input_key").distinct().count()


def _pages(runs: QuerySet[Run]) -> Iterator[list[Run]]:
    start = 0
    while True:
        page = list(runs[start : start + RUNS_PER_PAGE])
        if page:
            yield page
        if len(page) < RUNS_PER_PAGE:
            return
        start += RUNS_PER_PAGE


def _any_member(
    runs: QuerySet[Run], *, anchor: Run, keys_a: int, shares: dict[int, float], decided: dict[int, bool]
) -> bool:
    """Whether one more member is left among `runs` (to say that the limit left some out)."""
    for page in _pages(runs):
        _decide(page, anchor=anchor, keys_a=keys_a, shares=shares, decided=decided)
        if any(decided[candidate.dataset_id] for candidate in page):
            return True
    return False


def _decide(
    page: Sequence[Run], *, anchor: Run, keys_a: int, shares: dict[int, float], decided: dict[int, bool]
) -> None:
    """Work out, for the datasets of `page` not decided yet, whether they belong to the family."""
    pending = list(dict.fromkeys(run.dataset_id for run in page if run.dataset_id not in decided))
    if keys_a == 0:
        decided.update(dict.fromkeys(pending, False))
        return
    for start in range(0, len(pending), DATASETS_PER_QUERY):
        chunk = pending[start : start + DATASETS_PER_QUERY]
        shared = dataset_shared_keys(dataset_id=anchor.dataset_id, others=chunk)
        # max(|K_A|, |K_B|) >= |K_A|: an overlap below 90% of |K_A| is out without counting K_B.
        near = [other for other in chunk if 100 * shared.get(other, 0) >= FAMILY_SHARE_PERCENT * keys_a]
        # |K_B| <= B's row count, which the (dataset, position) index counts without reading a row: when
        # that is at most |K_A|, max(|K_A|, |K_B|) = |K_A| and K_B need not be counted.
        rows = dataset_row_counts(datasets=near)
        sizes = {other: keys_a for other in near if rows.get(other, 0) <= keys_a}
        sizes.update(dataset_key_counts(datasets=[other for other in near if other not in sizes]))
        for other in chunk:
            common = shared.get(other, 0)
            largest = max(keys_a, sizes.get(other, 0))
            member = common > 0 and 100 * common >= FAMILY_SHARE_PERCENT * largest
            decided[other] = member
            if member:
                shares[other] = common / largest


def dataset_shared_keys(*, dataset_id: int, others: Iterable[int]) -> dict[int, int]:
    """|K_A ∩ K_B| for A = `dataset_id` and each B of `others` (datasets sharing none are left out)."""
    keys_a = Example.objects.filter(dataset_id=dataset_id).exclude(input_key="").values("input_key")
    rows = (
        Example.objects.filter(dataset_id__in=list(others), input_key__in=keys_a)
        .values("dataset_id")
        .annotate(shared=Count("input_key", distinct=True))
        .order_by()
        .values_list("dataset_id", "shared")
    )
    return dict(rows)


def dataset_row_counts(*, datasets: Iterable[int]) -> dict[int, int]:
    """The number of rows of each dataset (datasets without rows are left out)."""
    ids = list(datasets)
    if not ids:
        return {}
    rows = (
        Example.objects.filter(dataset_id__in=ids)
        .values("dataset_id")
        .annotate(rows=Count("pk"))
        .order_by()
        .values_list("dataset_id", "rows")
    )
    return dict(rows)


def dataset_key_counts(*, datasets: Iterable[int]) -> dict[int, int]:
    """|K_B|, the distinct non-empty input keys, of each dataset (datasets without keys are left out)."""
    ids = list(datasets)
    if not ids:
        return {}
    rows = (
        Example.objects.filter(dataset_id__in=ids)
        .exclude(input_key="")
        .values("dataset_id")
        .annotate(keys=Count("input_key", distinct=True))
        .order_by()
        .values_list("dataset_id", "keys")
    )
    return dict(rows)


# --- Trend -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrendPoint:
    run: Run
    interval: MeanInterval
    # The previous run of the family this evaluator has a mean in, and this mean minus that one.
    previous: TrendPoint | None = None

    @property
    def n(self) -> int:
        return self.interval.n

    @property
    def mean(self) -> float | None:
        return self.interval.mean

    @property
    def change(self) -> float | None:
        if self.previous is None or self.mean is None or self.previous.mean is None:
            return None
        return self.mean - self.previous.mean

    @property
    def direction(self) -> str:
        """ "better" or "worse" when the two 95% intervals do not overlap, else "same".

        Disjoint intervals are a conservative sign of a real change; the compare page's paired test over
        the same rows finds smaller ones.
        """
        if self.previous is None:
            return "same"
        low, high = self.interval.low, self.interval.high
        previous_low, previous_high = self.previous.interval.low, self.previous.interval.high
        if low is None or high is None or previous_low is None or previous_high is None:
            return "same"
        if low > previous_high:
            return "better"
        if high < previous_low:
            return "worse"
        return "same"


@dataclass(frozen=True)
class EvaluatorTrend:
    name: str
    # One per run of the family, in its order; None where the run has no score from this evaluator.
    points: list[TrendPoint | None]

    @property
    def scored(self) -> list[TrendPoint]:
        return [point for point in self.points if point is not None]

    @property
    def gaps(self) -> int:
        return sum(1 for point in self.points if point is None)


@dataclass(frozen=True)
class FamilyTrend:
    runs: list[Run]
    evaluators: list[EvaluatorTrend]
    # (previous run, run) for each run after the first: the compare pages of the family, in order.
    pairs: list[tuple[Run, Run]]


def family_trend(*, runs: Sequence[Run]) -> FamilyTrend:
    """Per evaluator, per run: n, mean and 95% interval over the run's latest verdicts (retries merged)."""
    runs = list(runs)
    totals = [run_score_totals(run=run) for run in runs]
    names: list[str] = []
    # The newest run's evaluators first (the judge as it is now), then any only older runs had.
    for run, found in zip(reversed(runs), reversed(totals), strict=True):
        for name in [*run.evaluators, *sorted(found)]:
            if name in found and name not in names:
                names.append(name)
    evaluators = []
    for name in names:
        points: list[TrendPoint | None] = []
        previous: TrendPoint | None = None
        for run, found in zip(runs, totals, strict=True):
            if name not in found:
                points.append(None)
                continue
            n, total, squares = found[name]
            point = TrendPoint(run=run, interval=mean_interval(n, total, squares), previous=previous)
            points.append(point)
            previous = point
        evaluators.append(EvaluatorTrend(name=name, points=points))
    pairs = list(zip(runs, runs[1:], strict=False))
    return FamilyTrend(runs=runs, evaluators=evaluators, pairs=pairs)


def run_score_totals(*, run: Run) -> dict[str, tuple[int, float, float]]:
    """{evaluator: (n, Σx, Σx²)} over the run's latest verdict per row, its retries merged.

    One grouped query; a run without retries reads its scores' (run, evaluator, score) index alone.
    """
    scores = Score.objects.filter(score__isnull=False)
    if Run.objects.filter(retry_of=run).exists():
        scores = scores.filter(item__in=run_items_merged(run))
    else:
        scores = scores.filter(run=run)
    rows = (
        scores.values("evaluator_name")
        .annotate(
            n=Count("score"),
            total=Sum("score"),
            squares=Sum(F("score") * F("score"), output_field=FloatField()),
        )
        .order_by()
        .values_list("evaluator_name", "n", "total", "squares")
    )
    return {
        name: (int(n), float(total or 0.0), float(squares or 0.0)) for name, n, total, squares in rows if n
    }
