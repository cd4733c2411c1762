"""Human reviews of a judge's scores: save one, read them back, and the one rule for what a person said.

A review is one person's verdict on one evaluator's score of one item: pass or fail, perhaps a corrected
score on the judge's scale, perhaps a comment. Several people may review the same score; each has one
review of it, and only its author changes it.

Where several people reviewed the same score, **the human verdict is the most recently changed review**
(`human_review`). Statistics, compare and exports "with human corrections" read it through
`human_label` and `human_score`; the calibration report reads every review.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import IntegrityError, transaction
from django.db.models import Expression, F, OuterRef, QuerySet, Subquery
from django.utils import timezone

from evals.models import Item, Review, Run, Score

MAX_COMMENT_LENGTH = 4_000


class ReviewError(ValueError):
    """A review that cannot be saved; `field` names what is wrong, the message says why."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def _check_text(value: str, field: str) -> str:
    if "\x00" in value:
        raise ReviewError(field, "The comment holds a NUL character; remove it.")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ReviewError(field, "The comment holds text that is not valid Unicode.") from None
    return value


def review_save(
    *,
    item: Item,
    evaluator: str,
    reviewer: AbstractBaseUser | AnonymousUser,
    label: str,
    score: float | None = None,
    comment: str = "",
) -> tuple[Review, bool]:
    """Save `reviewer`'s verdict on `evaluator`'s score of `item`; replaces their earlier one.

    Returns (review, created). Raises ReviewError naming the field when the review cannot be saved:
    an evaluator the run does not have, an item the evaluator did not score, a label other than pass or
    fail, a score outside 0 to 1, a comment too long.
    """
    if not reviewer.is_authenticated:
        raise ReviewError("reviewer", "Log in to review.")
    run = item.run
    if evaluator not in run.evaluators:
        raise ReviewError("evaluator", f'This run has no evaluator "{evaluator[:100]}".')
    if label not in Review.Label.values:
        raise ReviewError("label", 'The label must be "pass" or "fail".')
    if score is not None:
        if isinstance(score, bool) or not isinstance(score, int | float) or not math.isfinite(score):
            raise ReviewError("score", "The corrected score must be a number from 0 to 1.")
        if not 0.0 <= score <= 1.0:
            raise ReviewError("score", f"The corrected score must be from 0 to 1 (got {score:g}).")
        score = float(score)
    comment = _check_text(comment.strip(), "comment")
    if len(comment) > MAX_COMMENT_LENGTH:
        raise ReviewError("comment", f"The comment is longer than {MAX_COMMENT_LENGTH:,} characters.")
    if not Score.objects.filter(item=item, evaluator_name=evaluator, score__isnull=False).exists():
        raise ReviewError(
            "evaluator", f'"{evaluator[:100]}" gave this item no score: there is nothing to review.'
        )
    now = timezone.now()
    values = {
        "run_id": item.run_id,
        "label": label,
        "score": score,
        "comment": comment,
        "reviewer_name": reviewer.get_username(),
        "updated_at": now,
    }
    key = {"item": item, "evaluator_name": evaluator, "reviewer": reviewer}
    try:
        with transaction.atomic():
            review, created = Review.objects.update_or_create(
                **key, defaults=values, create_defaults={**values, "created_at": now}
            )
    except IntegrityError:
        # The same reviewer's other request (a double key press) created it first: update that one.
        Review.objects.filter(**key).update(**values)
        review, created = Review.objects.get(**key), False
    return review, created


def review_clear(*, item: Item, evaluator: str, reviewer: AbstractBaseUser | AnonymousUser) -> bool:
    """Remove `reviewer`'s own review of `evaluator` on `item`; False when they had none."""
    if not reviewer.is_authenticated:
        return False
    deleted, _ = Review.objects.filter(item=item, evaluator_name=evaluator, reviewer_id=reviewer.pk).delete()
    return bool(deleted)


# --- The human verdict ------------------------------------------------------------------------------


def human_review(item: Any, evaluator: Any) -> QuerySet[Review]:
    """The review that counts for one score: the most recently changed one. `item` and `evaluator` may
    be values or OuterRef/F expressions (for annotations)."""
    return Review.objects.filter(item=item, evaluator_name=evaluator).order_by("-updated_at", "-id")


def human_label(item: Any = None, evaluator: Any = None) -> Subquery:
    """ "pass", "fail" or NULL (not reviewed): an annotation. Defaults fit a Score queryset."""
    item = OuterRef("item_id") if item is None else item
    evaluator = OuterRef("evaluator_name") if evaluator is None else evaluator
    return Subquery(human_review(item, evaluator).values("label")[:1])


def human_score(item: Any = None, evaluator: Any = None) -> Subquery:
    """The corrected score of the review that counts, or NULL: an annotation. Defaults fit a Score queryset."""
    item = OuterRef("item_id") if item is None else item
    evaluator = OuterRef("evaluator_name") if evaluator is None else evaluator
    return Subquery(human_review(item, evaluator).values("score")[:1])


def corrected_value(score: Expression | F | None = None) -> Expression:
    """The score "with human corrections" for a Score queryset: the reviewer's score where the review
    that counts gave one, else the judge's."""
    from django.db.models.functions import Coalesce

    return Coalesce(human_score(), score if score is not None else F("score"))


@dataclass(frozen=True)
class HumanVerdict:
    label: str
    score: float | None
    reviewer: str
    comment: str
    reviews: int  # how many people reviewed this score

    @property
    def passed(self) -> bool:
        return self.label == Review.Label.PASS


def human_verdicts(item_ids: Iterable[int]) -> dict[tuple[int, str], HumanVerdict]:
    """{(item id, evaluator): the human verdict} for these items, in one query."""
    ids = list(item_ids)
    if not ids:
        return {}
    grouped: dict[tuple[int, str], list[Review]] = defaultdict(list)
    for review in Review.objects.filter(item_id__in=ids).order_by("updated_at", "id"):
        grouped[(review.item_id, review.evaluator_name)].append(review)
    return {
        key: HumanVerdict(
            label=reviews[-1].label,
            score=reviews[-1].score,
            reviewer=reviews[-1].reviewer_name,
            comment=reviews[-1].comment,
            reviews=len(reviews),
        )
        for key, reviews in grouped.items()
    }


def run_has_reviews(run: Run) -> bool:
    return Review.objects.filter(run=run).exists()
