"""Confidence intervals for the numbers of the calibration report and the noise check.

bootstrap   resample the units (items) with replacement B times, recompute the statistic each time,
            and take the 2.5th and 97.5th percentiles of what comes out (the percentile method).
            The generator is seeded, so the same data always gives the same interval.
Wilson      for a share k/n: (p + z²/2n ± z·sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n), z = 1.96.
            Unlike a bootstrap it does not collapse to [0, 0] when nothing happened in n tries.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

RESAMPLES = 2_000
SEED = 20_261_202
Z_95 = 1.959963984540054

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
