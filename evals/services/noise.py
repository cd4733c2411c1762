"""Judge noise: re-judge a random sample of a run's items M more times and measure how much scores move.

STUB written by the lead: the dataclasses and signatures are the contract; the noise helper fills in
the bodies (and may add fields).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

from evals.models import Run
from evals.services.intervals import Interval

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


def noise_check_plan(*, run: Run, sample: int = DEFAULT_SAMPLE, repeats: int = DEFAULT_REPEATS) -> NoisePlan:
    raise NotImplementedError


def noise_check_create(
    *,
    run: Run,
    sample: int = DEFAULT_SAMPLE,
    repeats: int = DEFAULT_REPEATS,
    created_by: AbstractBaseUser | AnonymousUser | None = None,
    seed: int | None = None,
) -> tuple[list[Run], bool]:
    raise NotImplementedError


def noise_report(*, run: Run) -> NoiseReport:
    return NoiseReport(run=run, checks=[], in_flight=False, evaluators=[])
