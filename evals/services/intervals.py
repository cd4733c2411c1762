"""Confidence intervals for the numbers of the calibration report and the noise check.

bootstrap   resample the units (items) with replacement B times, recompute the statistic each time,
            and take the 2.5th and 97.5th percentiles of what comes out (the percentile method).
            The generator is seeded, so the same data always gives the same interval.
Wilson      for a share k/n: (p + z²/2n ± z·sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n), z = 1.96.
            Unlike a bootstrap it does not collapse to [0, 0] when nothing happened in n tries.
Student's t for a mean (run statistics, compare, history): x̄ ± t(0.975, n - 1) · s / √n, none below
            n = 2; the t quantile is computed here from the regularized incomplete beta (no scipy).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

RESAMPLES = 2_000
SEED = 20_261_202
Z_95 = 1.959963984540054
CONFIDENCE = 0.95

Unit = TypeVar("Unit")


@dataclass(frozen=True)
class Interval:
    """An estimate with its 95% interval; any part is None when the data cannot give it."""

    estimate: float | None
    low: float | None = None
    high: float | None = None

    @property
    def known(self) -> bool:
        return self.estimate is not None


def percentile(sorted_values: Sequence[float], share: float) -> float:
    """The value at `share` (0 to 1) of sorted values, interpolating linearly between neighbours."""
    if not sorted_values:
        raise ValueError("no values")
    position = share * (len(sorted_values) - 1)
    below = math.floor(position)
    above = min(below + 1, len(sorted_values) - 1)
    fraction = position - below
    return sorted_values[below] * (1 - fraction) + sorted_values[above] * fraction


def bootstrap(
    units: Sequence[Unit],
    statistic: Callable[[Sequence[Unit]], float | None],
    *,
    resamples: int = RESAMPLES,
    seed: int = SEED,
    confidence: float = 0.95,
) -> Interval:
    """`statistic` of the units with its percentile-bootstrap interval. Resamples where the statistic is
    undefined (None) are left out; with fewer than half of them defined there is no interval."""
    estimate = statistic(units) if units else None
    if estimate is None or len(units) < 2:
        return Interval(estimate)
    generator = random.Random(seed)
    count = len(units)
    values = []
    for _ in range(resamples):
        sample = generator.choices(units, k=count)
        value = statistic(sample)
        if value is not None:
            values.append(value)
    if len(values) < resamples / 2:
        return Interval(estimate)
    values.sort()
    tail = (1 - confidence) / 2
    return Interval(estimate, percentile(values, tail), percentile(values, 1 - tail))


def wilson(successes: int, n: int, *, z: float = Z_95) -> Interval:
    """The share successes/n with its Wilson score interval."""
    if n <= 0:
        return Interval(None)
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return Interval(p, max(centre - half, 0.0), min(centre + half, 1.0))


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


# --- Means -------------------------------------------------------------------------------------------


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
