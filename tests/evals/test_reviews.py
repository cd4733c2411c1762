"""The review service: saving, replacing and clearing one person's review, and the one rule for the human
verdict (where several people reviewed a score, the most recently changed review counts)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.utils import timezone

from evals.models import Item, Review, Run, Score
from evals.services.reviews import (
    MAX_COMMENT_LENGTH,
    ReviewError,
    corrected_value,
    human_label,
    human_score,
    human_verdicts,
    review_clear,
    review_save,
    run_has_reviews,
)
from tests.factories import build_run

pytestmark = pytest.mark.django_db


@pytest.fixture
def run() -> Run:
    return build_run(
        {"Tone": [0.9, 0.2, 0.6], "Facts": [0.4, None, 0.8]}, thresholds={"Tone": 0.5, "Facts": 0.7}
    )


@pytest.fixture
def grace(db: None) -> AbstractBaseUser:
    return get_user_model().objects.create_user(username="grace", password="a-long-test-password")


def item(run: Run, position: int) -> Item:
    return run.items.get(position=position)


def test_a_review_is_saved_with_who_and_when(run: Run, user: AbstractBaseUser) -> None:
    review, created = review_save(
        item=item(run, 0), evaluator="Tone", reviewer=user, label="fail", score=0.3, comment="  Too curt.  "
    )
    assert created
    assert (review.run_id, review.evaluator_name, review.label, review.score) == (run.pk, "Tone", "fail", 0.3)
    assert review.comment == "Too curt."  # trimmed
    assert review.reviewer == user and review.reviewer_name == "ada"
    assert review.created_at == review.updated_at
    assert run_has_reviews(run)


def test_the_same_reviewer_replaces_their_review_and_others_add_theirs(
    run: Run, user: AbstractBaseUser, grace: AbstractBaseUser
) -> None:
    first, _ = review_save(item=item(run, 0), evaluator="Tone", reviewer=user, label="pass", comment="fine")
    again, created = review_save(item=item(run, 0), evaluator="Tone", reviewer=user, label="fail")
    assert not created and again.pk == first.pk
    assert (again.label, again.comment) == ("fail", "")  # a save replaces the whole review
    assert again.updated_at >= first.updated_at and again.created_at == first.created_at
    _, created = review_save(item=item(run, 0), evaluator="Tone", reviewer=grace, label="pass")
    assert created
    assert sorted(Review.objects.values_list("reviewer_name", "label")) == [
        ("ada", "fail"),
        ("grace", "pass"),
    ]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"evaluator": "Nope"}, "evaluator"),
        ({"label": "maybe"}, "label"),
        ({"label": "PASS"}, "label"),
        ({"score": 1.5}, "score"),
        ({"score": -0.1}, "score"),
        ({"score": float("nan")}, "score"),
        ({"score": True}, "score"),
        ({"comment": "x" * (MAX_COMMENT_LENGTH + 1)}, "comment"),
        ({"comment": "a\x00b"}, "comment"),
        ({"position": 1, "evaluator": "Facts"}, "evaluator"),  # Facts gave row 1 no score
    ],
)
def test_a_review_that_cannot_be_saved_names_the_field(
    run: Run, user: AbstractBaseUser, changes: dict[str, object], field: str
) -> None:
    arguments: dict[str, object] = {"evaluator": "Tone", "label": "pass", "score": None, "comment": ""}
    position = int(changes.pop("position", 0))  # type: ignore[call-overload]
    arguments.update(changes)
    with pytest.raises(ReviewError) as caught:
        review_save(item=item(run, position), reviewer=user, **arguments)  # type: ignore[arg-type]
    assert caught.value.field == field
    assert not Review.objects.exists()


def test_no_one_reviews_without_logging_in(run: Run) -> None:
    with pytest.raises(ReviewError) as caught:
        review_save(item=item(run, 0), evaluator="Tone", reviewer=AnonymousUser(), label="pass")
    assert caught.value.field == "reviewer"
    assert review_clear(item=item(run, 0), evaluator="Tone", reviewer=AnonymousUser()) is False


def test_clearing_removes_only_your_own_review(
    run: Run, user: AbstractBaseUser, grace: AbstractBaseUser
) -> None:
    review_save(item=item(run, 0), evaluator="Tone", reviewer=user, label="pass")
    review_save(item=item(run, 0), evaluator="Tone", reviewer=grace, label="fail")
    assert review_clear(item=item(run, 0), evaluator="Tone", reviewer=user) is True
    assert review_clear(item=item(run, 0), evaluator="Tone", reviewer=user) is False
    assert list(Review.objects.values_list("reviewer_name", flat=True)) == ["grace"]


def test_the_most_recently_changed_review_is_the_human_verdict(
    run: Run, user: AbstractBaseUser, grace: AbstractBaseUser
) -> None:
    first = item(run, 0)
    review_save(item=first, evaluator="Tone", reviewer=user, label="fail", score=0.3, comment="curt")
    review_save(item=first, evaluator="Tone", reviewer=grace, label="pass")
    # Ada's review was made first but changed last: hers counts.
    Review.objects.filter(reviewer_id=user.pk).update(updated_at=timezone.now() + timedelta(minutes=5))
    verdicts = human_verdicts([first.pk, item(run, 2).pk])
    assert list(verdicts) == [(first.pk, "Tone")]
    verdict = verdicts[(first.pk, "Tone")]
    assert (verdict.label, verdict.score, verdict.reviewer, verdict.comment, verdict.reviews) == (
        "fail",
        0.3,
        "ada",
        "curt",
        2,
    )
    assert not verdict.passed
    assert human_verdicts([]) == {}


def test_the_annotations_read_the_same_review_and_correct_the_score(
    run: Run, user: AbstractBaseUser, grace: AbstractBaseUser
) -> None:
    first, third = item(run, 0), item(run, 2)
    review_save(item=first, evaluator="Tone", reviewer=grace, label="fail", score=0.3)
    review_save(item=first, evaluator="Tone", reviewer=user, label="pass")  # later: counts, no score
    review_save(item=third, evaluator="Facts", reviewer=user, label="fail", score=0.1)
    rows = {
        (row["item__position"], row["evaluator_name"]): (row["label"], row["human"], row["value"])
        for row in Score.objects.filter(run=run)
        .annotate(label=human_label(), human=human_score(), value=corrected_value())
        .values("item__position", "evaluator_name", "label", "human", "value")
    }
    # Row 0 Tone: ada's pass without a score counts, so the judge's 0.9 stands.
    assert rows[(0, "Tone")] == ("pass", None, 0.9)
    assert rows[(2, "Facts")] == ("fail", 0.1, 0.1)
    assert rows[(0, "Facts")] == (None, None, 0.4)  # not reviewed: the judge's score
    assert len(rows) == 5
