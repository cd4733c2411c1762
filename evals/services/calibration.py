"""How far a judge can be trusted: its agreement with human reviewers, per evaluator, with intervals.

Every review is one (judge, human) pair: the judge's verdict is the item's score against its own run's
threshold (`Run.passes`), the human's is the review's label. The confusion matrix, accuracy and Cohen's
kappa count reviews; `reviewed` counts distinct items. Reviews of one item are not independent (the
same answer read by several people), so every interval is a cluster bootstrap over items: each
resample draws whole items with all their reviews.

    accuracy        (pp + ff) / n
    Cohen's kappa   (po - pe) / (1 - pe), po = accuracy, pe = P(judge pass)·P(human pass)
                    + P(judge fail)·P(human fail); undefined when pe = 1 (both always say the same thing)
    MAE             mean |corrected score - judge score| over reviews that gave a corrected score
    Spearman's rho  Pearson's correlation of the average ranks (ties share their mean rank)
    Fleiss' kappa   agreement between reviewers over items reviewed by 2+ people, any number of raters
                    per item: P_i = Σ_j n_ij(n_ij - 1) / (n_i(n_i - 1)), P̄ = mean P_i,
                    P_e = Σ_j p_j², p_j = Σ_i n_ij / Σ_i n_i, kappa = (P̄ - P_e) / (1 - P_e)

Pooled, the report reads the reviews of every run of the same judge; each review is still judged at
its own run's threshold. Only reviews and the scores they review are read, so a 100,000-item run with
a hundred reviews costs a hundred rows.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from django.db.models import OuterRef, Subquery

from evals.models import Review, Run, Score
from evals.services.agreement import (
    CELLS,
    Confusion,
    accuracy,
    cohen_kappa,
    fleiss_kappa,
    kappa_reading,
    spearman,
)
from evals.services.intervals import Interval, bootstrap

CELL_LABELS = {
    "judge_pass_human_pass": "judge pass, reviewer pass",
    "judge_pass_human_fail": "judge pass, reviewer fail",
    "judge_fail_human_pass": "judge fail, reviewer pass",
    "judge_fail_human_fail": "judge fail, reviewer fail",
}
MAX_CELL_ITEMS = 200


class CalibrationError(ValueError):
    """A cell list that cannot be made; `field` names the parameter at fault ("evaluator", "cell")."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


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
    thresholds: tuple[float, ...] = ()  # the distinct thresholds the reviews were judged at

    @property
    def kappa_reading(self) -> str:
        return kappa_reading(self.kappa.estimate)

    @property
    def inter_kappa_reading(self) -> str:
        return kappa_reading(self.inter_kappa.estimate) if self.inter_kappa else ""


@dataclass(frozen=True)
class CalibrationReport:
    run: Run
    pooled: bool
    run_ids: list[int]  # the runs whose reviews are counted (one unless pooled)
    evaluators: list[EvaluatorCalibration]

    @property
    def reviews(self) -> int:
        return sum(evaluator.reviews for evaluator in self.evaluators)


@dataclass(frozen=True)
class CellReview:
    reviewer: str
    comment: str


@dataclass(frozen=True)
class CellItem:
    """One item in a cell of the confusion matrix, with the reviews that put it there."""

    run_id: int
    item_id: int
    position: int  # 1-based, as pages show it
    judge_score: float
    threshold: float
    human_label: str
    reviews: list[CellReview] = field(default_factory=list)

    @property
    def reviewer_names(self) -> str:
        return ", ".join(review.reviewer for review in self.reviews)


# --- Reading the reviews -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Pair:
    """One review against the judge's score it reviews."""

    run_id: int
    item_id: int
    position: int
    evaluator: str
    reviewer: str  # a key: the account, or the kept name once the account is gone
    reviewer_name: str
    judge_score: float
    threshold: float
    judge_pass: bool
    human_pass: bool
    human_score: float | None
    comment: str

    @property
    def cell(self) -> str:
        judge = "pass" if self.judge_pass else "fail"
        human = "pass" if self.human_pass else "fail"
        return f"judge_{judge}_human_{human}"


def calibration_run_ids(run: Run, *, pooled: bool) -> list[int]:
    """This run, and pooled: every other run of the same judge that has a review."""
    if not pooled:
        return [run.pk]
    reviewed = (
        Review.objects.filter(run__judge_id=run.judge_id)
        .order_by()  # the model's ordering would make DISTINCT see one row per review
        .values_list("run_id", flat=True)
        .distinct()
    )
    return sorted({run.pk, *reviewed})


def _pairs(run_ids: list[int], *, evaluator: str | None = None) -> tuple[list[_Pair], dict[int, Run]]:
    runs = {run.pk: run for run in Run.objects.filter(pk__in=run_ids)}
    judge_score = Score.objects.filter(
        item_id=OuterRef("item_id"), evaluator_name=OuterRef("evaluator_name")
    ).values("score")[:1]
    reviews = Review.objects.filter(run_id__in=run_ids)
    if evaluator is not None:
        reviews = reviews.filter(evaluator_name=evaluator)
    rows = (
        reviews.annotate(judge_score=Subquery(judge_score))
        .order_by("run_id", "item__position", "evaluator_name", "updated_at", "id")
        .values_list(
            "run_id",
            "item_id",
            "item__position",
            "evaluator_name",
            "reviewer_id",
            "reviewer_name",
            "label",
            "score",
            "comment",
            "judge_score",
        )
    )
    pairs = []
    for run_id, item_id, position, name, reviewer_id, reviewer_name, label, score, comment, judged in rows:
        if judged is None:
            # review_save refuses unscored items; a score removed since leaves nothing to compare.
            continue
        threshold = runs[run_id].threshold_for(name)[0]
        pairs.append(
            _Pair(
                run_id=run_id,
                item_id=item_id,
                position=position + 1,
                evaluator=name,
                reviewer=f"id:{reviewer_id}" if reviewer_id is not None else f"name:{reviewer_name}",
                reviewer_name=reviewer_name,
                judge_score=judged,
                threshold=threshold,
                judge_pass=bool(runs[run_id].passes(name, judged)),
                human_pass=label == Review.Label.PASS,
                human_score=score,
                comment=comment,
            )
        )
    return pairs, runs


# The bootstrap resamples items. Each item is reduced once to what the statistics need, so a resample
# is only sums: its cell counts, its errors, its (judge, corrected) score pairs, its labels.
@dataclass(frozen=True)
class _ItemTally:
    cells: tuple[int, int, int, int]  # in the order of CELLS
    errors: tuple[float, ...]  # |corrected - judge| of the reviews with a corrected score
    scores: tuple[tuple[float, float], ...]  # (judge score, corrected score) of those reviews
    passes: int  # reviews saying pass
    fails: int


def _tally(pairs: Sequence[_Pair]) -> _ItemTally:
    cells = [0, 0, 0, 0]
    for pair in pairs:
        cells[CELLS.index(pair.cell)] += 1
    corrected = [(pair.judge_score, pair.human_score) for pair in pairs if pair.human_score is not None]
    passes = sum(1 for pair in pairs if pair.human_pass)
    return _ItemTally(
        cells=(cells[0], cells[1], cells[2], cells[3]),
        errors=tuple(abs(human - judge) for judge, human in corrected),
        scores=tuple(corrected),
        passes=passes,
        fails=len(pairs) - passes,
    )


def _confusion_of(units: Sequence[_ItemTally]) -> Confusion:
    pp = pf = fp = ff = 0
    for unit in units:
        pp += unit.cells[0]
        pf += unit.cells[1]
        fp += unit.cells[2]
        ff += unit.cells[3]
    return Confusion(pp, pf, fp, ff)


def _accuracy_of(units: Sequence[_ItemTally]) -> float | None:
    return accuracy(_confusion_of(units))


def _kappa_of(units: Sequence[_ItemTally]) -> float | None:
    return cohen_kappa(_confusion_of(units))


def _mae_of(units: Sequence[_ItemTally]) -> float | None:
    total = count = 0.0
    for unit in units:
        total += sum(unit.errors)
        count += len(unit.errors)
    return total / count if count else None


def _spearman_of(units: Sequence[_ItemTally]) -> float | None:
    return spearman([pair for unit in units for pair in unit.scores])


def _fleiss_of(units: Sequence[_ItemTally]) -> float | None:
    return fleiss_kappa([(unit.passes, unit.fails) for unit in units])


def _kappa_note(confusion: Confusion) -> str:
    judge_pass = confusion.judge_pass_human_pass + confusion.judge_pass_human_fail
    human_pass = confusion.judge_pass_human_pass + confusion.judge_fail_human_pass
    if judge_pass == human_pass == confusion.total:
        return "Every judge verdict and every review is pass: kappa is undefined (no room for chance)."
    return "Every judge verdict and every review is fail: kappa is undefined (no room for chance)."


def _evaluator(name: str, pairs: list[_Pair]) -> EvaluatorCalibration:
    by_item: dict[int, list[_Pair]] = defaultdict(list)
    for pair in pairs:
        by_item[pair.item_id].append(pair)
    units = [_tally(item_pairs) for item_pairs in by_item.values()]
    confusion = _confusion_of(units)
    notes = []
    kappa = bootstrap(units, _kappa_of)
    if pairs and kappa.estimate is None:
        notes.append(_kappa_note(confusion))
    corrected_units = [unit for unit in units if unit.scores]
    corrected = sum(len(unit.scores) for unit in corrected_units)
    mae = bootstrap(corrected_units, _mae_of) if corrected else None
    rho = None
    if corrected >= 3:
        rho = bootstrap(corrected_units, _spearman_of)
        if rho.estimate is None:
            notes.append(
                "Every judge score or every corrected score is the same: Spearman's rho is undefined."
            )
    shared = [unit for unit in units if unit.passes + unit.fails >= 2]
    inter = None
    if len(shared) >= 2:
        inter = bootstrap(shared, _fleiss_of)
        if inter.estimate is None:
            notes.append("Reviewers gave every shared item the same label: their kappa is undefined.")
    return EvaluatorCalibration(
        name=name,
        reviewed=len(units),
        reviews=len(pairs),
        reviewers=len({pair.reviewer for pair in pairs}),
        accuracy=bootstrap(units, _accuracy_of),
        kappa=kappa,
        confusion=confusion,
        corrected=corrected,
        mae=mae,
        spearman=rho,
        inter_items=len(shared),
        inter_kappa=inter,
        note=" ".join(notes),
        thresholds=tuple(sorted({pair.threshold for pair in pairs})),
    )


def _evaluator_names(run: Run, runs: dict[int, Run], pairs: Sequence[_Pair]) -> list[str]:
    """This run's evaluators in its order, then those only the pooled runs (or their reviews) have."""
    names = list(run.evaluators)
    for other in sorted(runs.values(), key=lambda r: r.pk):
        names.extend(name for name in other.evaluators if name not in names)
    names.extend(sorted({pair.evaluator for pair in pairs} - set(names)))
    return names


def calibration_report(*, run: Run, pooled: bool = False) -> CalibrationReport:
    """Per evaluator, how the judge's verdicts agree with reviewers' (this run, or pooled over its judge)."""
    run_ids = calibration_run_ids(run, pooled=pooled)
    pairs, runs = _pairs(run_ids)
    grouped: dict[str, list[_Pair]] = defaultdict(list)
    for pair in pairs:
        grouped[pair.evaluator].append(pair)
    return CalibrationReport(
        run=run,
        pooled=pooled,
        run_ids=run_ids,
        evaluators=[_evaluator(name, grouped[name]) for name in _evaluator_names(run, runs, pairs)],
    )


def calibration_cell_items(
    *, run: Run, pooled: bool, evaluator: str, cell: str, limit: int = MAX_CELL_ITEMS
) -> tuple[list[CellItem], int]:
    """The items behind one count of the confusion matrix, in run and row order, at most `limit`, and
    how many there are. An item two people put in the same cell is one row with both reviews."""
    if cell not in CELLS:
        raise CalibrationError("cell", f'There is no cell "{cell[:60]}": use one of {", ".join(CELLS)}.')
    run_ids = calibration_run_ids(run, pooled=pooled)
    pairs, runs = _pairs(run_ids, evaluator=evaluator)
    if not pairs and evaluator not in _evaluator_names(run, runs, pairs):
        raise CalibrationError("evaluator", f'There is no evaluator "{evaluator[:100]}" in this report.')
    rows: dict[int, CellItem] = {}
    for pair in pairs:
        if pair.cell != cell:
            continue
        row = rows.get(pair.item_id)
        if row is None:
            row = rows[pair.item_id] = CellItem(
                run_id=pair.run_id,
                item_id=pair.item_id,
                position=pair.position,
                judge_score=pair.judge_score,
                threshold=pair.threshold,
                human_label="pass" if pair.human_pass else "fail",
            )
        row.reviews.append(CellReview(reviewer=pair.reviewer_name, comment=pair.comment))
    items = list(rows.values())
    return items[: max(limit, 0)], len(items)
