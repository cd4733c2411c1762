"""Comparing two runs in a browser: from the summary table into one evaluator's items, then the regressed ones."""

from __future__ import annotations

from typing import Any

import pytest

from tests.factories import build_run

pytestmark = pytest.mark.django_db(transaction=True)


def test_item_view_opens_from_the_summary_and_filters_the_regressed_pairs(
    live_server: Any, login: Any, page: Any
) -> None:
    # v1 and v2 answers to the same questions, uploaded as two datasets: they pair by input.
    questions = [f"How do I export invoice {n}?" for n in range(6)]
    a = build_run(
        {"Politeness": [0.5] * 6},
        name="v1",
        requests=questions,
        responses=[f"Open Billing and press Export ({n})." for n in range(6)],
    )
    b = build_run(
        {"Politeness": [0.9, 0.1, 0.5, 0.2, 0.6, 0.5]},
        name="v2",
        judge=a.judge,
        requests=list(reversed(questions)),
        responses=[f"Thanks! Open Billing, then Export ({5 - n})." for n in range(6)],
    )
    login()
    page.goto(f"{live_server.url}/runs/compare/?a={a.pk}&b={b.pk}")
    page.get_by_role("row", name="Politeness").get_by_role("link", name="Item by item").click()
    page.wait_for_url("**/runs/compare/items/**")
    assert page.locator("article.pair").count() == 6
    page.get_by_role("link", name="Regressed").click()
    page.wait_for_url("**change=regressed**")
    pairs = page.locator("article.pair")
    # In B's row order scores are 0.9, 0.1, 0.5, 0.2, 0.6, 0.5 for questions 5..0: questions 4 and 2 regressed.
    assert pairs.count() == 2
    assert page.locator('nav.compare-items-tabs a[aria-current="page"]').inner_text().startswith("Regressed")
    requests = [pairs.nth(n).locator(".pair-request").first.inner_text() for n in range(2)]
    assert requests == [questions[2], questions[4]]
    # The word diff shows what B added, as marked text.
    first = pairs.first
    assert first.locator("ins").first.inner_text() == "Thanks!"
    assert "0.50 → 0.20" in first.locator(".pair-change").inner_text()
    assert "2 of 2 regressed pairs on this page" in page.locator("nav.pager").inner_text()
