"""In Chromium on a 390 px phone screen: no page scrolls sideways, and the top bar keeps "Log out" in view."""

from __future__ import annotations

from typing import Any

import pytest

from tests.factories import build_run

pytestmark = pytest.mark.django_db(transaction=True)

PHONE = {"width": 390, "height": 844}


def test_run_statistics_compare_and_history_fit_a_phone(login: Any, live_server: Any) -> None:
    a = build_run({"Politeness": [0.4, 0.9, 0.7], "Concision of a long evaluator name": [1.0, 0.2, 0.5]})
    b = build_run(
        {"Politeness": [0.6, 0.9, 0.8], "Concision of a long evaluator name": [1.0, 0.3, 0.5]},
        dataset=a.dataset,
        judge=a.judge,
    )
    page = login()
    page.set_viewport_size(PHONE)
    for path in (
        f"/runs/{b.pk}/",
        f"/runs/{b.pk}/stats/",
        f"/runs/compare/?a={a.pk}&b={b.pk}",
        f"/runs/compare/items/?a={a.pk}&b={b.pk}",
        f"/runs/{b.pk}/history/",
        "/runs/",
    ):
        page.goto(f"{live_server.url}{path}")
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"], f"{path} is {width} px wide on a {PHONE['width']} px screen"
        log_out = page.get_by_role("button", name="Log out").bounding_box()
        assert log_out is not None and log_out["x"] + log_out["width"] <= PHONE["width"], path
