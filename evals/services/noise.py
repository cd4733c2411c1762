"""Judge noise: re-judge a random sample of a run's items M more times and measure how much scores move.

A noise check of run R is M runs ("repeats"), each over the same random sample of K of R's scored rows,
linked to R by `Run.noise_of` and numbered by `Run.noise_repeat` (1..M). Items of every run of a dataset
carry the row's position, so each re-judged item pairs with R's verdict by position.

Per evaluator the report reads, for each sampled row, R's score and every repeat's score (completed items
only) and gives
- the pooled within-item standard deviation, sqrt(mean over items of the sample variance of that item's
  scores), with a bootstrap interval over items: how far one verdict typically sits from the judge's
  average verdict on the same input;
- flips, items whose pass/fail (at R's thresholds) was not the same every time, with a Wilson interval.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, User
from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef, QuerySet

from evals.models import Example, Item, Run, Score
from evals.services.intervals import Interval, bootstrap, wilson
from evals.services.runs import run_create

DEFAULT_SAMPLE = 50
DEFAULT_REPEATS = 2
MAX_SAMPLE = 1_000
MAX_REPEATS = 5


class NoiseError(ValueError):
    """A noise check that cannot start; `field` names the input at fault ("sample", "repeats", "run")."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True)
class NoisePlan:
    run: Run
    sample: int  # items that will be re-judged (K, at most the run's scored items)
    repeats: int  # M
    active: list[Run] = field(default_factory=list)  # a check of this run already in flight
    blocked: str = ""  # why no check can start now ("" when one can)
    scored: int = 0  # items of the run with at least one score: what the sample is drawn from
    asked: int = DEFAULT_SAMPLE  # the sample size asked for (K is smaller when the run has fewer items)

    @property
    def to_send(self) -> int:
        return self.sample * self.repeats


@dataclass(frozen=True)
class EvaluatorNoise:
    name: str
    items: int  # sampled items with at least two verdicts (the original and one repeat or more)
    judgements: int  # scores read, originals included
    sd: Interval  # within-item standard deviation of the score, pooled over items, bootstrap 95%
    flips: int  # items whose pass/fail was not the same in every judgement
    flip_share: Interval  # flips / items, Wilson 95%
    threshold: float


@dataclass(frozen=True)
class NoiseReport:
    run: Run
    checks: list[Run]  # the noise runs of this run, oldest first
    in_flight: bool
    evaluators: list[EvaluatorNoise]
    blocked: str = ""  # why no check of this run can start now, as far as the run row tells
    # For the inline "re-judge a sample" form, which templates render wherever the report is shown.
    DEFAULT_SAMPLE: ClassVar[int] = DEFAULT_SAMPLE
    DEFAULT_REPEATS: ClassVar[int] = DEFAULT_REPEATS
    MAX_SAMPLE: ClassVar[int] = MAX_SAMPLE
    MAX_REPEATS: ClassVar[int] = MAX_REPEATS

    @property
    def default_calls(self) -> int:
        return DEFAULT_SAMPLE * DEFAULT_REPEATS

    @property
    def active(self) -> list[Run]:
        """The noise runs still queued or running."""
        return [check for check in self.checks if not check.is_finished]


# --- Plan and start ----------------------------------------------------------------------------------


def _check_numbers(*, sample: int, repeats: int) -> None:
    if not 1 <= sample <= MAX_SAMPLE:
        raise NoiseError("sample", f"Sample: choose between 1 and {MAX_SAMPLE:,} items.")
    if not 1 <= repeats <= MAX_REPEATS:
        raise NoiseError("repeats", f"Repeats: choose between 1 and {MAX_REPEATS} repeats.")


def _checks_in_flight(run: Run) -> list[Run]:
    """The noise runs of this run that are queued or running (at most one check: M runs)."""
    return list(Run.objects.active().filter(noise_of=run).order_by("noise_repeat", "pk"))


def _scored_items(run: Run) -> QuerySet[Item]:
    """The run's items with at least one score: the only ones a repeat can be compared with."""
    return Item.objects.filter(run=run).filter(
        Exists(Score.objects.filter(item=OuterRef("pk"), score__isnull=False))
    )


def _blocked(run: Run, scored: int) -> str:
    if run.noise_of_id is not None:
        return "This run is itself a noise check: re-judge a sample of the run it checks instead."
    if not run.is_finished:
        return "Wait for the run to finish before re-judging a sample of it."
    if scored == 0:
        return "No item of this run has a score yet: there is nothing to re-judge."
    return ""


def noise_check_plan(*, run: Run, sample: int = DEFAULT_SAMPLE, repeats: int = DEFAULT_REPEATS) -> NoisePlan:
    """What "re-judge a sample" would send: K = min(sample, scored items) rows, M times.

    Raises NoiseError for a sample or repeat count out of bounds; a run that cannot be checked now
    gives a plan whose `blocked` says why.
    """
    _check_numbers(sample=sample, repeats=repeats)
    scored = _scored_items(run).count()
    active = _checks_in_flight(run)
    blocked = _blocked(run, scored)
    if active:
        blocked = "A noise check of this run is already under way."
    return NoisePlan(
        run=run,
        sample=min(sample, scored),
        repeats=repeats,
        active=active,
        blocked=blocked,
        scored=scored,
        asked=sample,
    )


def noise_check_create(
    *,
    run: Run,
    sample: int = DEFAULT_SAMPLE,
    repeats: int = DEFAULT_REPEATS,
    created_by: AbstractBaseUser | AnonymousUser | None = None,
    seed: int | None = None,
) -> tuple[list[Run], bool]:
    """Start a noise check of `run`, or return the one already queued or running.

    Returns (the check's runs by repeat, created). Idempotent under concurrency: the
    `run_one_active_noise_check` constraint lets one check's inserts win; the loser's transaction rolls
    back whole and it returns the winner's runs.
    """
    _check_numbers(sample=sample, repeats=repeats)
    active = _checks_in_flight(run)
    if active:
        return active, False
    scored_examples = list(_scored_items(run).order_by("position").values_list("example_id", flat=True))
    blocked = _blocked(run, len(scored_examples))
    if blocked:
        raise NoiseError("run", blocked)
    chosen = random.Random(seed).sample(scored_examples, min(sample, len(scored_examples)))
    user = created_by if isinstance(created_by, User) else None
    try:
        # One transaction for the M runs: a check is whole or absent, and a losing insert of repeat 1
        # rolls back nothing but this request's own work.
        with transaction.atomic():
            runs = [
                run_create(
                    dataset=run.dataset,
                    judge=run.judge,
                    created_by=user,
                    name=f"Noise check {repeat} of {repeats} of {run}"[:200],
                    judge_version_id=run.judge_version_id,
                    batch_size=run.batch_size,
                    examples=Example.objects.filter(pk__in=chosen),
                    threshold_overrides=run.threshold_overrides,
                    noise_of=run,
                    noise_repeat=repeat,
                )
                for repeat in range(1, repeats + 1)
            ]
    except IntegrityError:
        # Another request's check of this run committed first (the pre-check above raced with it).
        active = _checks_in_flight(run)
        if not active:
            raise
        return active, False
    return runs, True


# --- Report --------------------------------------------------------------------------------------------


def _pooled_sd(variances: Sequence[float]) -> float | None:
    return math.sqrt(sum(variances) / len(variances)) if variances else None


def _sample_variance(values: Sequence[float]) -> float:
    mean = sum(values) / len(values)
    return sum((value - mean) ** 2 for value in values) / (len(values) - 1)


def noise_report(*, run: Run) -> NoiseReport:
    """How much the judge's scores of `run` move when the same rows are judged again.

    Reads only the sampled rows: every noise run's completed scores and the run's own scores at the
    same positions, so the cost follows the sample, not the run.
    """
    checks = list(Run.objects.filter(noise_of=run).order_by("created_at", "pk"))
    # The run's score summary stands in for counting scored items: a page shows this on every load.
    scored = any(entry.get("n") for entry in run.score_summary.values() if isinstance(entry, dict))
    blocked = _blocked(run, 1 if scored else 0)
    if not checks:
        return NoiseReport(run=run, checks=[], in_flight=False, evaluators=[], blocked=blocked)
    check_ids = [check.pk for check in checks]
    # {evaluator: {position: [scores]}}, the run's own score first.
    values: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    repeated = Item.objects.filter(run_id__in=check_ids, status=Item.Status.COMPLETED).values("position")
    own = (
        Score.objects.filter(run=run, score__isnull=False, item__position__in=repeated)
        .values_list("evaluator_name", "item__position", "score")
        .order_by()
    )
    for name, position, value in own:
        if value is not None:  # excluded by the query; said again for the type checker
            values[name][position].append(value)
    again = (
        Score.objects.filter(run_id__in=check_ids, score__isnull=False, item__status=Item.Status.COMPLETED)
        .values_list("evaluator_name", "item__position", "score")
        .order_by()
    )
    for name, position, value in again:
        # A repeat pairs with the run's own verdict: a row the run did not score tells nothing.
        if value is not None and position in values.get(name, {}):
            values[name][position].append(value)

    names = list(run.evaluators) + sorted(set(values) - set(run.evaluators))
    evaluators = []
    for name in names:
        per_item = [scores for scores in values.get(name, {}).values() if len(scores) >= 2]
        if not per_item:
            continue
        flips = sum(1 for scores in per_item if len({run.passes(name, value) for value in scores}) > 1)
        evaluators.append(
            EvaluatorNoise(
                name=name,
                items=len(per_item),
                judgements=sum(len(scores) for scores in per_item),
                sd=bootstrap([_sample_variance(scores) for scores in per_item], _pooled_sd),
                flips=flips,
                flip_share=wilson(flips, len(per_item)),
                threshold=run.threshold_for(name)[0],
            )
        )
    return NoiseReport(
        run=run,
        checks=checks,
        in_flight=any(not check.is_finished for check in checks),
        evaluators=evaluators,
        blocked=blocked,
    )
