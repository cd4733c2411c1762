"""Review mode by keyboard only, in Chromium: marks are saved without a reload, the focus walks the
evaluators, the queue is walked with n/k, and every key ends up as a Review row."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import expect

from evals.models import Review, Run
from evals.services.review_queue import QueueSpec, queue_spec_from_params, review_queue
from tests.factories import build_run

pytestmark = pytest.mark.django_db(transaction=True)

# Two evaluators on 12 rows; Tone passes from 0.5, Facts from 0.7 (the run's learned thresholds).
TONE = [0.9, 0.1, 0.55, 0.3, 0.8, 0.2, 0.6, 0.45, 0.95, 0.05, 0.7, 0.35]
FACTS = [0.2, 0.75, 0.9, 0.65, 0.1, 0.8, 0.7, 0.3, 0.5, 0.85, 0.4, 0.6]


@pytest.fixture
def run(db: None) -> Run:
    return build_run({"Tone": TONE, "Facts": FACTS}, name="nightly", thresholds={"Tone": 0.5, "Facts": 0.7})


def reviews(run: Run) -> dict[tuple[int, str], tuple[str, float | None, str]]:
    return {
        (review.item.position, review.evaluator_name): (review.label, review.score, review.comment)
        for review in Review.objects.filter(run=run).select_related("item")
    }


def focused_card(page: Any) -> str | None:
    return page.evaluate("document.activeElement && document.activeElement.dataset.reviewCard || null")


def wait_for_focus(page: Any, card: str) -> None:
    """The card that has the focus once htmx has swapped and settled its new copy."""
    page.wait_for_function(
        "card => document.activeElement && document.activeElement.dataset.reviewCard === card", arg=card
    )


# Playwright's init scripts run outside the page's policy: this one records what the policy blocked.
RECORD_VIOLATIONS = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", function (event) {
  window.__violations.push(event.violatedDirective + " " + (event.blockedURI || "inline"));
});
"""


def test_a_queue_of_ten_reviewed_by_keyboard_only(run: Run, live_server: Any, login: Any, page: Any) -> None:
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.add_init_script(RECORD_VIOLATIONS)
    login()
    page.goto(f"{live_server.url}/runs/{run.pk}/review/?order=sample&n=10")
    # The server chose the seed and put it in the address: the queue is now fixed.
    page.wait_for_url(re.compile(r"seed=\d+"))
    params = dict(part.split("=") for part in page.url.split("?")[1].split("&"))
    assert params["order"] == "sample" and params["n"] == "10" and params["i"] == "0"
    queue = review_queue(run=run, spec=queue_spec_from_params(params, run=run))
    positions = {item.pk: item.position for item in run.items.all()}
    first, second = positions[queue[0]], positions[queue[1]]

    progress = page.locator("[data-progress-text]")
    expect(progress).to_have_text("0 of 10 reviewed by you")
    assert focused_card(page) == "0"  # the first evaluator has the focus on arrival

    # 1 passes Tone and moves the focus to Facts; 2 fails Facts. No reload: the cards are swapped.
    page.keyboard.press("1")
    assert focused_card(page) == "1"
    page.keyboard.press("2")
    expect(progress).to_have_text("1 of 10 reviewed by you")
    expect(page.locator("#review-1 .review-you")).to_contain_text("You: fail")
    assert reviews(run) == {(first, "Tone"): ("pass", None, ""), (first, "Facts"): ("fail", None, "")}

    # Shift+Tab back to Tone, then a comment (Ctrl+Enter saves) and a corrected score (Enter saves).
    page.keyboard.press("Shift+Tab")
    assert focused_card(page) == "0"
    page.keyboard.press("c")
    page.keyboard.type("Polite, but it never answers the question.")
    page.keyboard.press("Control+Enter")
    expect(page.locator("#review-0 .review-comment")).to_have_text(
        "Polite, but it never answers the question."
    )
    wait_for_focus(page, "0")  # the focus comes back to the card it was on
    page.keyboard.press("s")
    page.keyboard.type("0.35")
    page.keyboard.press("Enter")
    expect(page.locator("#review-0 .review-own .score")).to_have_text("0.35")
    # The corrected score and the comment stay with the pass until the reviewer changes them.
    assert reviews(run)[(first, "Tone")] == ("pass", 0.35, "Polite, but it never answers the question.")
    # Esc cancels an edit: nothing is sent.
    page.keyboard.press("s")
    page.keyboard.type("0.9")
    page.keyboard.press("Escape")
    assert focused_card(page) == "0"
    assert reviews(run)[(first, "Tone")][1] == 0.35

    # n: the next item; a: agree with the judge on it (both evaluators) and go on to the third.
    page.keyboard.press("n")
    page.wait_for_url(re.compile(r"[?&]i=1(&|$)"))
    expect(progress).to_have_text("1 of 10 reviewed by you")
    page.keyboard.press("a")
    page.wait_for_url(re.compile(r"[?&]i=2(&|$)"))
    expect(progress).to_have_text("2 of 10 reviewed by you")
    judge = {
        "Tone": "pass" if TONE[second] >= 0.5 else "fail",
        "Facts": "pass" if FACTS[second] >= 0.7 else "fail",
    }
    assert reviews(run)[(second, "Tone")] == (judge["Tone"], None, "")
    assert reviews(run)[(second, "Facts")] == (judge["Facts"], None, "")

    # k: back to the second item, where x clears the focused evaluator's review.
    page.keyboard.press("k")
    page.wait_for_url(re.compile(r"[?&]i=1(&|$)"))
    page.keyboard.press("x")
    expect(progress).to_have_text("1 of 10 reviewed by you")
    assert (second, "Tone") not in reviews(run)
    assert (second, "Facts") in reviews(run)

    # Tab walks the evaluators, then ? lists every key.
    page.keyboard.press("Tab")
    assert focused_card(page) == "1"
    # Enter steps into the card's own buttons (for Tab-only use), Esc back out to the card.
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.textContent").startswith("Pass")
    page.keyboard.press("Escape")
    assert focused_card(page) == "1"
    page.keyboard.press("?")
    expect(page.locator("#keys-help")).to_be_visible()
    assert "Previous item" in page.locator("#keys-help").inner_text()
    page.keyboard.press("Escape")
    expect(page.locator("#keys-help")).to_be_hidden()
    # All of it under the Content-Security-Policy: no inline script, no blocked style, no error.
    assert page.evaluate("window.__violations") == []
    assert errors == []


def test_a_refused_mark_shows_why_in_the_card(run: Run, live_server: Any, login: Any, page: Any) -> None:
    login()
    page.goto(f"{live_server.url}/runs/{run.pk}/review/?order=all&n=3")
    page.keyboard.press("s")
    page.keyboard.type("1.5")
    # The browser's own number check would stop the form: the server's answer is what is tested here.
    page.evaluate("document.querySelector('#review-0 [data-review-score]').removeAttribute('max')")
    page.keyboard.press("Enter")
    expect(page.locator("#review-0 .review-error")).to_contain_text("from 0 to 1")
    assert not Review.objects.exists()


def test_review_rows_carry_the_reviewer(run: Run, live_server: Any, login: Any, page: Any) -> None:
    login("grace")
    page.goto(f"{live_server.url}/runs/{run.pk}/review/?order=all")
    page.keyboard.press("f")
    # "You: fail" is the server's answer swapped in (the pressed button is shown before it comes).
    expect(page.locator("#review-0 .review-you")).to_contain_text("You: fail")
    review = Review.objects.get()
    assert review.reviewer == get_user_model().objects.get(username="grace")
    assert review.reviewer_name == "grace"
    assert (review.item.position, review.evaluator_name, review.label) == (0, "Tone", "fail")
    assert review_queue(run=run, spec=QueueSpec())[0] == review.item_id


def test_ten_items_agreed_with_one_key_each_reach_the_end_of_the_queue(
    run: Run, live_server: Any, login: Any, page: Any
) -> None:
    login()
    page.goto(f"{live_server.url}/runs/{run.pk}/review/?order=worst&evaluator=Tone&n=10")
    for index in range(1, 11):
        page.keyboard.press("a")
        page.wait_for_url(re.compile(rf"[?&]i={index}(&|$)"))
    expect(page.locator("h2", has_text="End of the queue")).to_be_visible()
    expect(page.locator("[data-progress-text]")).to_have_text("10 of 10 reviewed by you")
    # The ten lowest Tone scores, each with both evaluators marked as the judge saw them.
    worst = sorted(range(12), key=lambda row: TONE[row])[:10]
    expected = {
        (row, name): ("pass" if values[row] >= threshold else "fail", None, "")
        for row in worst
        for name, values, threshold in (("Tone", TONE, 0.5), ("Facts", FACTS, 0.7))
    }
    assert reviews(run) == expected
    page.keyboard.press("k")
    page.wait_for_url(re.compile(r"[?&]i=9(&|$)"))
    expect(page.locator("#review-item-state")).to_have_text("reviewed by you")


def test_a_comment_typed_while_the_mark_before_it_is_saving_is_kept(
    run: Run, live_server: Any, login: Any, page: Any
) -> None:
    """Mark, step back and comment faster than the mark's answer comes back: the answer replaces the card
    being typed into. Nothing typed may be lost, or read as a command (n, u...), and `a` still moves on."""
    login()
    page.goto(f"{live_server.url}/runs/{run.pk}/review/?order=all&i=0")
    for index in range(3):  # on any one item the answer may come before or after the typing: try a few
        wait_for_focus(page, "0")
        page.keyboard.press("1")
        page.keyboard.press("Shift+Tab")
        page.keyboard.press("c")
        page.keyboard.type("Fine, but terse: no numbers.")
        page.keyboard.press("Control+Enter")
        page.keyboard.press("a")
        page.wait_for_url(re.compile(rf"[?&]i={index + 1}\b"))
    saved = reviews(run)
    for position in range(3):
        assert saved[(position, "Tone")] == ("pass", None, "Fine, but terse: no numbers."), position
        assert saved[(position, "Facts")][0] in ("pass", "fail"), position  # `a` agreed with the judge
