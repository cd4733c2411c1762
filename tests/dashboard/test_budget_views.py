"""The spending cap page: what a run has cost and would cost to finish, and raising or removing its cap."""

from __future__ import annotations

import html
import re
from datetime import timedelta

import pytest
from django.contrib.messages import get_messages
from django.test import Client
from django.utils import timezone

from evals.models import BackoffKind, Item, Run
from evals.services.sharing import share_link_create
from tests.factories import build_run

pytestmark = pytest.mark.django_db

REASON = "Paused: budget reached at $0.0500 of $0.0500"


def paused_run(*, cap: float = 0.05) -> Run:
    """Ten rows; four judged at $0.0125 each ($0.05 spent), six not sent: paused at a cap of $0.05."""
    run = build_run({"Politeness": [0.9, 0.4, 0.8, 0.2, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5]})
    items = list(run.items.order_by("position"))
    for item in items[:4]:
        item.cost, item.evaluator_costs = 0.0125, {"Politeness": 0.0125}
    for item in items[4:]:
        item.status = Item.Status.PENDING
    Item.objects.bulk_update(items, ["cost", "evaluator_costs", "status"])
    Run.objects.filter(pk=run.pk).update(
        status=Run.Status.RUNNING,
        completed_count=4,
        cost_total=0.05,
        cost_items=4,
        cost_by_evaluator={"Politeness": 0.05},
        max_cost=cap,
        backoff_kind=BackoffKind.BUDGET,
        backoff_reason=REASON,
    )
    run.refresh_from_db()
    return run


def text(page: bytes) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page.decode())).split())


def test_the_page_shows_what_was_spent_and_what_finishing_would_cost(logged_in: Client) -> None:
    run = paused_run()
    response = logged_in.get(f"/runs/{run.pk}/budget/")
    assert response.status_code == 200
    page = text(response.content)
    assert REASON in page
    assert "Spent $0.0500 4 items costed" in page
    assert "Cap $0.0500" in page
    # This run's own items: $0.05 / 4 = $0.0125 per item. Six items left: $0.05 + 6 x $0.0125 = $0.125.
    assert "Per item $0.0125" in page and "this run's 4 costed items" in page
    assert "To finish $0.1250 estimated, 6 items still to bill" in page
    # The suggestion leaves 10%: $0.125 x 1.1 = $0.1375, rounded up to the cent.
    assert 'value="0.14"' in response.content.decode()
    assert "Raise the cap and resume" in page and "Remove the cap" in page
    assert "Politeness $0.0500 $0.0125" in page  # cost by evaluator: spent, per item


def test_raising_the_cap_resumes_the_run_and_goes_back_to_it(logged_in: Client) -> None:
    run = paused_run()
    response = logged_in.post(f"/runs/{run.pk}/budget/", {"max_cost": "0.20"})
    assert response.status_code == 302 and response["Location"] == f"/runs/{run.pk}/"
    run.refresh_from_db()
    assert run.max_cost == 0.2
    assert run.backoff_kind == "" and run.backoff_reason == ""
    assert [str(m) for m in get_messages(response.wsgi_request)] == ["Cap set to $0.2000: sending resumes."]


def test_removing_the_cap_ignores_the_amount_field(logged_in: Client) -> None:
    run = paused_run()
    response = logged_in.post(f"/runs/{run.pk}/budget/", {"max_cost": "not a number", "action": "remove"})
    assert response.status_code == 302
    run.refresh_from_db()
    assert run.max_cost is None and run.backoff_kind == ""
    assert [str(m) for m in get_messages(response.wsgi_request)] == ["Cap removed: sending resumes."]


def test_a_cap_below_what_was_spent_is_refused_and_nothing_changes(logged_in: Client) -> None:
    run = paused_run()
    response = logged_in.post(f"/runs/{run.pk}/budget/", {"max_cost": "0.01"})
    assert response.status_code == 400
    assert "at least what this run has spent already, $0.0500" in text(response.content)
    assert 'aria-invalid="true"' in response.content.decode()
    run.refresh_from_db()
    assert run.max_cost == 0.05 and run.backoff_kind == BackoffKind.BUDGET


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("abc", "Cap: enter an amount in dollars, such as 5 or 12.50."),
        ("inf", "Cap: enter an amount in dollars, such as 5 or 12.50."),
        ("0", "Cap: enter an amount above $0."),
        ("-3", "Cap: enter an amount above $0."),
        ("", "Cap: enter an amount, or remove the cap."),
    ],
)
def test_a_bad_amount_is_a_400_naming_the_cap(logged_in: Client, value: str, message: str) -> None:
    run = paused_run()
    response = logged_in.post(f"/runs/{run.pk}/budget/", {"max_cost": value})
    assert response.status_code == 400
    assert message in text(response.content)
    run.refresh_from_db()
    assert run.max_cost == 0.05


def test_a_running_run_without_a_pause_can_get_a_cap(logged_in: Client) -> None:
    run = paused_run()
    Run.objects.filter(pk=run.pk).update(max_cost=None, backoff_kind="", backoff_reason="")
    page = text(logged_in.get(f"/runs/{run.pk}/budget/").content)
    assert "Cap No cap the run may spend any amount" in page
    assert "Set the cap" in page and "Remove the cap" not in page
    response = logged_in.post(f"/runs/{run.pk}/budget/", {"max_cost": "1"})
    assert [str(m) for m in get_messages(response.wsgi_request)] == ["Cap set to $1.00."]
    run.refresh_from_db()
    assert run.max_cost == 1.0


def test_a_finished_run_shows_its_cost_and_takes_no_cap(logged_in: Client) -> None:
    run = build_run({"Politeness": [0.9, 0.4]})
    Run.objects.filter(pk=run.pk).update(cost_total=0.02, cost_items=2)
    page = text(logged_in.get(f"/runs/{run.pk}/budget/").content)
    assert "Spent $0.0200" in page and "a cap no longer changes anything" in page
    assert "Set the cap" not in page
    response = logged_in.post(f"/runs/{run.pk}/budget/", {"max_cost": "1"})
    assert response.status_code == 400
    assert "a cap no longer applies" in text(response.content)
    run.refresh_from_db()
    assert run.max_cost is None


def test_a_judge_with_no_cost_yet_gives_no_estimate(logged_in: Client) -> None:
    run = build_run({"Politeness": [0.9, 0.4]})
    Run.objects.filter(pk=run.pk).update(status=Run.Status.RUNNING, completed_count=0, max_cost=2.0)
    page = text(logged_in.get(f"/runs/{run.pk}/budget/").content)
    assert "Per item unknown" in page and "no cost seen yet for this judge" in page
    assert "To finish unknown" in page


def test_the_page_is_for_the_team_only(logged_in: Client) -> None:
    run = paused_run()
    assert logged_in.get("/runs/999999/budget/").status_code == 404
    assert logged_in.post("/runs/999999/budget/", {"max_cost": "1"}).status_code == 404
    _link, token = share_link_create(run=run, created_by=None)
    anonymous = Client()
    assert anonymous.get(f"/s/{token}/budget/").status_code == 404
    response = anonymous.post(f"/runs/{run.pk}/budget/", {"max_cost": "1"})
    assert response.status_code == 302 and "/login" in response["Location"]
    run.refresh_from_db()
    assert run.max_cost == 0.05


def test_a_run_paused_by_its_budget_gives_no_time_left(logged_in: Client) -> None:
    run = paused_run()
    # Four items in 10 s: without the pause the header would say "about 15 s left" for the other six.
    Run.objects.filter(pk=run.pk).update(started_at=timezone.now() - timedelta(seconds=10))
    page = text(logged_in.get(f"/runs/{run.pk}/").content)
    assert "Paused: budget reached" in page
    assert " left" not in page
    Run.objects.filter(pk=run.pk).update(backoff_kind="", backoff_reason="")
    assert " left" in text(logged_in.get(f"/runs/{run.pk}/").content)
