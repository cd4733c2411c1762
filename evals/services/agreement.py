"""Agreement between a judge and people, on plain numbers: the confusion matrix of pass/fail verdicts,
accuracy, Cohen's kappa, Fleiss' kappa between reviewers, Spearman's rho, and Landis & Koch's words for
a kappa. `evals.services.calibration` reads the reviews and feeds them here (formulas in its docstring).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

CELLS = ("judge_pass_human_pass", "judge_pass_human_fail", "judge_fail_human_pass", "judge_fail_human_fail")


@dataclass(frozen=True)
class Confusion:
    judge_pass_human_pass: int = 0
    judge_pass_human_fail: int = 0
    judge_fail_human_pass: int = 0
    judge_fail_human_fail: int = 0

    @property
    def total(self) -> int:
        return (
            self.judge_pass_human_pass
            + self.judge_pass_human_fail
            + self.judge_fail_human_pass
            + self.judge_fail_human_fail
        )

    @property
    def agreements(self) -> int:
        return self.judge_pass_human_pass + self.judge_fail_human_fail

    def as_dict(self) -> dict[str, int]:
        return {cell: getattr(self, cell) for cell in CELLS}


def cohen_kappa(confusion: Confusion) -> float | None:
    """Cohen's kappa of a 2x2 table of (judge, human) verdicts; None when chance agreement is 1."""
    n = confusion.total
    if n == 0:
        return None
    judge_pass = confusion.judge_pass_human_pass + confusion.judge_pass_human_fail
    human_pass = confusion.judge_pass_human_pass + confusion.judge_fail_human_pass
    # In whole numbers, so "pe = 1" is an exact test: pe·n² = jp·hp + jf·hf.
    chance = judge_pass * human_pass + (n - judge_pass) * (n - human_pass)
    if chance == n * n:
        return None
    po = confusion.agreements / n
    pe = chance / (n * n)
    return (po - pe) / (1 - pe)


def accuracy(confusion: Confusion) -> float | None:
    return confusion.agreements / confusion.total if confusion.total else None


def fleiss_kappa(tables: Sequence[Sequence[int]]) -> float | None:
    """Fleiss' kappa of items rated into categories: one row of counts per item (n_ij, any number of
    raters per item, at least 2). None without two such items or when every rating is one category."""
    rows = [row for row in tables if sum(row) >= 2]
    if len(rows) < 2:
        return None
    categories = len(rows[0])
    agreement = 0.0
    totals = [0] * categories
    ratings = 0
    for row in rows:
        n_i = sum(row)
        agreement += sum(n * (n - 1) for n in row) / (n_i * (n_i - 1))
        for j, n in enumerate(row):
            totals[j] += n
        ratings += n_i
    observed = agreement / len(rows)
    expected = sum((total / ratings) ** 2 for total in totals)
    if math.isclose(expected, 1.0, rel_tol=0.0, abs_tol=1e-12):
        return None
    return (observed - expected) / (1 - expected)


def average_ranks(values: Sequence[float]) -> list[float]:
    """1-based ranks; tied values share the mean of the ranks they span."""
    order = sorted(range(len(values)), key=lambda index: values[index])
    ranks = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        rank = (start + end) / 2 + 1
        for position in range(start, end + 1):
            ranks[order[position]] = rank
        start = end + 1
    return ranks


def spearman(pairs: Sequence[tuple[float, float]]) -> float | None:
    """Spearman's rho with average ranks for ties; None below 3 pairs or when one side is constant."""
    if len(pairs) < 3:
        return None
    xs = average_ranks([x for x, _ in pairs])
    ys = average_ranks([y for _, y in pairs])
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    sxy = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True))
    sxx = sum((x - mean_x) ** 2 for x in xs)
    syy = sum((y - mean_y) ** 2 for y in ys)
    if sxx == 0 or syy == 0:
        return None
    return sxy / math.sqrt(sxx * syy)


def kappa_reading(kappa: float | None) -> str:
    """Landis & Koch's (1977) words for a kappa, read at the two decimals pages show (0.40 is "fair"
    however the division rounded)."""
    if kappa is None:
        return ""
    kappa = round(kappa, 2)
    if kappa < 0:
        return "poor: worse than chance"
    if kappa <= 0.20:
        return "slight"
    if kappa <= 0.40:
        return "fair"
    if kappa <= 0.60:
        return "moderate"
    if kappa <= 0.80:
        return "substantial"
    return "almost perfect"
