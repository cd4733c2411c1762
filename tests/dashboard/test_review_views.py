"""Review pages: the queue chooser, one item of a queue, and saving, replacing and clearing a review, as a
plain form and from htmx; what no one else may reach."""

from __future__ import annotations

import secrets
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.cache import cache
from django.test import Client
from hypothesis import HealthCheck, example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from evals.models import Item, Review, Run, ShareLink
from evals.services.reviews import review_save
from tests.factories import build_run

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true"}


@pytest.fixture(autouse=True)
def empty_cache() -> None:
    cache.clear()


@pytest.fixture
def run() -> Run:
    # Row 3 failed (no score at all); Facts gave row 1 no score. Tone passes at 0.5, Facts at 0.7.
    return build_run(
        {"Tone": [0.9, 0.2, 0.6, None], "Facts": [0.4, None, 0.8, None]},
        name="nightly",
        thresholds={"Tone": 0.5, "Facts": 0.7},
    )


def at(run: Run, position: int) -> Item:
    return run.items.get(position=position)


def save_url(run: Run, position: int, query: str = "order=all&i=0") -> str:
    return f"/runs/{run.pk}/review/{at(run, position).pk}/?{query}"


def mine(run: Run) -> dict[tuple[int, str], tuple[str, float | None, str]]:
    return {
        (review.item.position, review.evaluator_name): (review.label, review.score, review.comment)
        for review in Review.objects.filter(run=run, reviewer__username="ada").select_related("item")
    }


def test_the_chooser_says_what_there_is_to_review(logged_in: Client, run: Run) -> None:
    page = logged_in.get(f"/runs/{run.pk}/review/")
    assert page.status_code == 200
    text = page.content.decode()
    assert "Start a review queue" in text
    assert "3 of 4 items scored, ready to review" in text
    assert "No one has reviewed this run yet" in text
    for label in ("Every item, in row order", "Worst first", "A random sample", "Stratified by score band"):
        assert label in text


def test_a_run_without_scores_has_an_empty_state(logged_in: Client) -> None:
    run = build_run({"Tone": [None, None]})
    page = logged_in.get(f"/runs/{run.pk}/review/")
    assert page.status_code == 200
    assert "Nothing to review yet" in page.content.decode()
    # A queue of it says so on the chooser instead of showing an item.
    page = logged_in.get(f"/runs/{run.pk}/review/?order=all")
    assert page.status_code == 200
    assert "This queue is empty" in page.content.decode()


def test_a_random_queue_gets_a_seed_in_its_address(logged_in: Client, run: Run) -> None:
    response = logged_in.get(f"/runs/{run.pk}/review/?order=sample&n=2")
    assert response.status_code == 302
    params = parse_qs(urlsplit(response["Location"]).query)
    assert params["order"] == ["sample"] and params["n"] == ["2"] and params["i"] == ["0"]
    assert params["seed"][0].isdigit()
    first = logged_in.get(response["Location"])
    again = logged_in.get(response["Location"])
    assert first.status_code == again.status_code == 200
    assert first.context["item"] == again.context["item"]


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("order=best", "Order:"),
        ("order=worst&n=abc", "Number of items (n):"),
        ("order=worst&n=100000", "Number of items (n):"),
        ("order=worst&evaluator=Nope", "Evaluator:"),
        ("order=sample&seed=x", "Seed:"),
        ("order=all&i=-1", "Place in the queue (i):"),
        ("order=all&i=99999999999999999999999", "Place in the queue (i):"),
    ],
)
def test_a_bad_queue_parameter_is_named_on_the_chooser(
    logged_in: Client, run: Run, query: str, named: str
) -> None:
    page = logged_in.get(f"/runs/{run.pk}/review/?{query}")
    assert page.status_code == 400
    assert named in page.content.decode()
    assert "Start a review queue" in page.content.decode()


def test_one_item_shows_the_judges_verdicts_and_the_reviews(
    logged_in: Client, run: Run, user: AbstractBaseUser
) -> None:
    grace = get_user_model().objects.create_user(username="grace", password="a-long-test-password")
    review_save(item=at(run, 0), evaluator="Facts", reviewer=grace, label="pass", comment="It is right.")
    page = logged_in.get(f"/runs/{run.pk}/review/?order=all&i=0")
    assert page.status_code == 200
    text = page.content.decode()
    assert "1 of 3" in text and "in this queue" in text
    assert "0 of 3 reviewed by you" in text
    cards = {card["name"]: card for card in page.context["cards"]}
    # Tone 0.9 passes at 0.5; Facts 0.4 fails at 0.7.
    assert cards["Tone"]["judge_passed"] is True and cards["Facts"]["judge_passed"] is False
    assert "judge: pass" in text and "judge: fail" in text
    assert "pass at ≥ 0.7" in text
    assert "How do I reset my password? (row 0)" in text  # the request
    assert [review.reviewer_name for review in cards["Facts"]["others"]] == ["grace"]
    assert "It is right." in text


def test_item_opens_an_item_where_it_sits_in_the_queue(logged_in: Client, run: Run) -> None:
    response = logged_in.get(f"/runs/{run.pk}/review/?item={at(run, 2).pk}")
    assert response.status_code == 302
    assert parse_qs(urlsplit(response["Location"]).query) == {"order": ["all"], "i": ["2"]}
    # In a worst-first queue of Tone (0.2, 0.6, 0.9) row 2 is second.
    response = logged_in.get(f"/runs/{run.pk}/review/?order=worst&evaluator=Tone&item={at(run, 2).pk}")
    assert parse_qs(urlsplit(response["Location"]).query)["i"] == ["1"]
    # An item the judge did not score: nothing to review, said on the chooser.
    response = logged_in.get(f"/runs/{run.pk}/review/?item={at(run, 3).pk}", follow=True)
    assert "Item 4 has no score from the judge yet" in response.content.decode()


def test_wrong_ids_are_not_found(logged_in: Client, run: Run) -> None:
    other = build_run({"Tone": [0.5]})
    foreign = other.items.get()
    assert logged_in.get(f"/runs/{run.pk}/review/?item={foreign.pk}").status_code == 404
    assert logged_in.get(f"/runs/{run.pk}/review/?item=abc").status_code == 404
    assert logged_in.get(f"/runs/{run.pk}/review/?item=99999999999999999999999").status_code == 404
    assert logged_in.get("/runs/999999/review/").status_code == 404
    url = f"/runs/{run.pk}/review/{foreign.pk}/"
    assert logged_in.post(url, {"evaluator": "Tone", "label": "pass"}).status_code == 404
    assert logged_in.post(f"/runs/{run.pk}/review/999999/", {"label": "pass"}).status_code == 404
    assert not Review.objects.exists()


def test_past_the_last_item_is_the_end_of_the_queue(
    logged_in: Client, run: Run, user: AbstractBaseUser
) -> None:
    review_save(item=at(run, 1), evaluator="Tone", reviewer=user, label="pass")
    page = logged_in.get(f"/runs/{run.pk}/review/?order=all&i=3")
    assert page.status_code == 200
    text = page.content.decode()
    assert "End of the queue" in text
    assert "You have reviewed 1 of the 3 items" in text
    # The first item not reviewed is row 0, at index 0.
    assert page.context["first_open_url"].endswith("order=all&i=0")


def test_a_mark_is_saved_replaced_and_cleared_as_a_plain_form(logged_in: Client, run: Run) -> None:
    response = logged_in.post(save_url(run, 0), {"evaluator": "Facts", "label": "pass"})
    assert response.status_code == 302
    assert response["Location"] == f"/runs/{run.pk}/review/?order=all&i=0#review-1"
    assert mine(run) == {(0, "Facts"): ("pass", None, "")}
    logged_in.post(save_url(run, 0), {"evaluator": "Facts", "label": "fail"})
    assert mine(run) == {(0, "Facts"): ("fail", None, "")}
    assert Review.objects.count() == 1
    page = logged_in.get(response["Location"])
    assert "Changed your review of Facts: fail." in page.content.decode()
    logged_in.post(save_url(run, 0), {"evaluator": "Facts", "label": "clear"})
    assert mine(run) == {}


def test_a_pass_keeps_the_score_and_comment_and_a_score_alone_is_a_verdict(
    logged_in: Client, run: Run
) -> None:
    # A corrected score without a mark: 0.65 is below Facts' threshold of 0.7, so fail; 0.7 passes.
    logged_in.post(save_url(run, 0), {"evaluator": "Facts", "score": "0,65", "comment": "Half right."})
    assert mine(run) == {(0, "Facts"): ("fail", 0.65, "Half right.")}
    logged_in.post(save_url(run, 2), {"evaluator": "Facts", "score": "0.7", "comment": ""})
    assert mine(run)[(2, "Facts")] == ("pass", 0.7, "")
    # Pass and fail buttons send neither field: the score and comment stay.
    logged_in.post(save_url(run, 0), {"evaluator": "Facts", "label": "pass"})
    assert mine(run)[(0, "Facts")] == ("pass", 0.65, "Half right.")
    # The details form sends both: blank removes the score, and the pass stays.
    logged_in.post(save_url(run, 0), {"evaluator": "Facts", "score": "", "comment": "Right after all."})
    assert mine(run)[(0, "Facts")] == ("pass", None, "Right after all.")


def test_only_the_author_changes_or_clears_a_review(logged_in: Client, run: Run) -> None:
    grace = get_user_model().objects.create_user(username="grace", password="a-long-test-password")
    review_save(item=at(run, 0), evaluator="Tone", reviewer=grace, label="fail", comment="mine")
    logged_in.post(save_url(run, 0), {"evaluator": "Tone", "label": "clear"})
    logged_in.post(save_url(run, 0), {"evaluator": "Tone", "label": "pass"})
    assert sorted(Review.objects.values_list("reviewer_name", "label", "comment")) == [
        ("ada", "pass", ""),
        ("grace", "fail", "mine"),
    ]


def test_from_htmx_a_mark_answers_with_the_card_and_the_progress(logged_in: Client, run: Run) -> None:
    response = logged_in.post(save_url(run, 1), {"evaluator": "Tone", "label": "fail"}, headers=HTMX)
    assert response.status_code == 200
    text = response.content.decode()
    assert 'id="review-0"' in text and "You:" in text
    # Row 1 has only a Tone score, so marking Tone completes it: 1 of the 3 items.
    assert 'id="review-progress"' in text and 'hx-swap-oob="true"' in text
    assert "1 of 3 reviewed by you" in text
    assert 'id="review-item-state" hx-swap-oob="true"><span class="badge badge-good">reviewed by you' in text
    assert "Saved your review of Tone: fail." in text


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"evaluator": "Tone", "score": "1.5"}, "from 0 to 1"),
        ({"evaluator": "Tone", "score": "lots"}, "must be a number from 0 to 1"),
        ({"evaluator": "Tone", "score": "inf"}, "must be a number from 0 to 1"),
        ({"evaluator": "Tone", "label": "fail", "score": "-0,5"}, "from 0 to 1 (got -0.5)"),
        ({"evaluator": "Tone", "label": "maybe"}, "The label must be"),
        ({"evaluator": "Tone", "comment": "Why?"}, "Mark pass or fail"),
        ({"evaluator": "Tone", "label": "pass", "comment": "x" * 5000}, "longer than 4,000 characters"),
    ],
)
def test_a_refused_review_is_a_400_with_the_reason_in_the_card(
    logged_in: Client, run: Run, fields: dict[str, str], message: str
) -> None:
    response = logged_in.post(save_url(run, 0), fields, headers=HTMX)
    assert response.status_code == 400
    text = response.content.decode()
    assert 'id="review-0"' in text and 'class="notice notice-bad review-error"' in text
    assert message in text
    if "comment" in fields:
        assert fields["comment"][:20] in text  # what was typed comes back
    assert not Review.objects.exists()
    # Without htmx: a message on the page it returns to.
    response = logged_in.post(save_url(run, 0), fields, follow=True)
    assert message in response.content.decode()
    assert not Review.objects.exists()


def test_an_evaluator_the_run_does_not_have_is_refused_without_a_card(logged_in: Client, run: Run) -> None:
    response = logged_in.post(save_url(run, 0), {"evaluator": "Nope", "label": "pass"}, headers=HTMX)
    assert response.status_code == 400
    assert response["HX-Reswap"] == "none"
    assert "Evaluator: This run has no evaluator &quot;Nope&quot;." in response.content.decode()
    response = logged_in.post(save_url(run, 0), {"evaluator": "Facts", "label": "pass"}, headers=HTMX)
    assert response.status_code == 200
    # Facts gave row 1 no score: nothing to review there.
    response = logged_in.post(save_url(run, 1), {"evaluator": "Facts", "label": "pass"}, headers=HTMX)
    assert response.status_code == 400
    assert "gave this item no score" in response.content.decode()


def test_agree_marks_the_rest_with_the_judges_verdict_and_moves_on(logged_in: Client, run: Run) -> None:
    logged_in.post(save_url(run, 0), {"evaluator": "Tone", "label": "fail"})
    response = logged_in.post(save_url(run, 0), {"label": "agree"})
    assert response.status_code == 302
    assert response["Location"] == f"/runs/{run.pk}/review/?order=all&i=1"
    # Tone keeps the reviewer's fail; Facts 0.4 < 0.7 takes the judge's fail.
    assert mine(run) == {(0, "Tone"): ("fail", None, ""), (0, "Facts"): ("fail", None, "")}
    page = logged_in.get(response["Location"])
    assert "Item 1: agreed with the judge on 1 evaluator." in page.content.decode()
    assert "1 of 3 reviewed by you" in page.content.decode()


def test_a_save_returns_to_the_queue_it_came_from(logged_in: Client, run: Run) -> None:
    query = "order=worst&evaluator=Tone&n=3&i=1"  # Tone ascending: rows 1, 2, 0; row 2 is at index 1
    response = logged_in.post(save_url(run, 2, query), {"evaluator": "Tone", "label": "pass"})
    assert response["Location"] == f"/runs/{run.pk}/review/?order=worst&n=3&evaluator=Tone&i=1#review-0"
    # A stale index is corrected from the item itself.
    response = logged_in.post(save_url(run, 2, "order=worst&evaluator=Tone&n=3&i=0"), {"label": "agree"})
    assert response["Location"] == f"/runs/{run.pk}/review/?order=worst&n=3&evaluator=Tone&i=2"


def test_no_one_else_reaches_review(client: Client, run: Run) -> None:
    page = client.get(f"/runs/{run.pk}/review/?order=all")
    assert page.status_code == 302 and "/login/" in page["Location"]
    response = client.post(save_url(run, 0), {"evaluator": "Tone", "label": "pass"})
    assert response.status_code == 302 and "/login/" in response["Location"]
    token = secrets.token_urlsafe(32)
    ShareLink.objects.create(run=run, token_hash=ShareLink.hash_token(token))
    assert client.get(f"/s/{token}/review/").status_code == 404
    assert client.post(f"/s/{token}/review/{at(run, 0).pk}/", {"label": "pass"}).status_code == 404
    assert not Review.objects.exists()


def test_saving_takes_a_post_only(logged_in: Client, run: Run) -> None:
    assert logged_in.get(save_url(run, 0)).status_code == 405


QUEUE_KEYS = st.sampled_from(["order", "n", "seed", "evaluator", "i", "item"])
QUEUE_VALUES = st.one_of(
    st.sampled_from(
        ["all", "worst", "sample", "bands", "Tone", "Facts", "0", "1", "2", "-1", "1e3", "²", "١"]
    ),
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.text(st.characters(exclude_categories=["Cs"]), max_size=30),
)


@hypothesis_settings(
    max_examples=120,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(pairs=st.lists(st.tuples(QUEUE_KEYS, QUEUE_VALUES), max_size=5))
@example(pairs=[("order", "bands"), ("evaluator", "\x00")])
@example(pairs=[("order", "sample"), ("seed", "99999999999999999999")])
@example(pairs=[("item", "9223372036854775808")])
def test_no_queue_address_gets_a_500(logged_in: Client, run: Run, pairs: list[tuple[str, str]]) -> None:
    query = urlencode(pairs)
    page = logged_in.get(f"/runs/{run.pk}/review/?{query}")
    assert page.status_code in (200, 302, 400, 404), (query, page.content[:300])
    response = logged_in.post(
        f"/runs/{run.pk}/review/{at(run, 0).pk}/?{query}", {"label": "clear", "evaluator": "Tone"}
    )
    assert response.status_code == 302, query
