"""How far a judge can be trusted: its agreement with human reviewers, per evaluator, with intervals.

STUB written by the lead: the dataclasses and signatures are the contract; the calibration helper
fills in the bodies (and may add fields and functions).
"""

from __future__ import annotations

from dataclasses import dataclass

from evals.models import Run
from evals.services.intervals import Interval

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


@dataclass(frozen=True)
class EvaluatorCalibration:
    name: str
    reviewed: int  # distinct items with at least one review of this evaluator
    reviews: int  # reviews (an item reviewed by two people counts twice)
    reviewers: int
    accuracy: Interval
    kappa: Interval
    confusion: Confusion
    corrected: int  # reviews with a corrected score
    mae: Interval | None  # None without corrected scores
    spearman: Interval | None  # None with fewer than 3 corrected scores
    inter_items: int  # items reviewed by 2+ people
    inter_kappa: Interval | None  # agreement between reviewers (Fleiss), None below 2 such items
    note: str = ""  # why a number is missing ("every review says pass: kappa is undefined"...)


@dataclass(frozen=True)
class CalibrationReport:
    run: Run
    pooled: bool
    run_ids: list[int]  # the runs whose reviews are counted (one unless pooled)
    evaluators: list[EvaluatorCalibration]


def calibration_report(*, run: Run, pooled: bool = False) -> CalibrationReport:
    raise NotImplementedError
