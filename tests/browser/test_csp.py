"""The Content-Security-Policy holds in a real browser: the main pages load, poll and swap under it
without a single violation (no inline script or style element, no eval, no inline handler)."""

from __future__ import annotations

import secrets
from typing import Any

import pytest

from evals.models import Item, Run, ShareLink
from tests.factories import build_run

pytestmark = pytest.mark.django_db(transaction=True)

# Playwright's init scripts run outside the page's policy: this one records what the policy blocked.
RECORD_VIOLATIONS = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", function (event) {
  window.__violations.push(event.violatedDirective + " " + (event.blockedURI || "inline") + " " + event.sourceFile);
});
"""


def test_the_main_pages_load_without_a_csp_violation(live_server: Any, login: Any, page: Any) -> None:
    topics = ["billing", "shipping", "login", "billing", "shipping", "login"]
    finished = build_run(
        {"Politeness": [0.9, 0.7, 0.2, 0.4, 0.6, None], "Concision": [0.5, 0.5, 0.5, 0.5, 0.5, None]},
        name="nightly",
        metadata=lambda position: {"topic": topics[position]},
    )
    other = build_run({"Politeness": [0.5, 0.6, 0.1, 0.9, 0.6, 0.3]}, name="later", judge=finished.judge)
    live = build_run({"Politeness": [0.5, None, None]}, name="live", judge=finished.judge)
    Run.objects.filter(pk=live.pk).update(status=Run.Status.RUNNING, finished_at=None)
    Item.objects.filter(run=live, position__gt=0).update(status=Item.Status.PENDING)
    token = secrets.token_urlsafe(32)
    ShareLink.objects.create(run=finished, token_hash=ShareLink.hash_token(token))

    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.add_init_script(RECORD_VIOLATIONS)
    login()
    base = live_server.url
    item = finished.items.order_by("position").first()
    assert item is not None
    pages = [
        f"/runs/{live.pk}/",
        f"/runs/{finished.pk}/?sort=position&status=completed",
        f"/runs/{finished.pk}/stats/",
        f"/runs/{finished.pk}/items/{item.pk}/",
        "/datasets/upload/",
        f"/runs/compare/?a={finished.pk}&b={other.pk}",
        f"/runs/{finished.pk}/history/",
        f"/runs/{finished.pk}/share/",
        "/runs/",
    ]
    for path in pages:
        response = page.goto(base + path)
        assert response is not None and response.status == 200, path
        policy = response.headers.get("content-security-policy", "")
        assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy, path
        if path == f"/runs/{live.pk}/":
            # The live header polls and swaps itself in: htmx at work under the policy.
            with page.expect_response(lambda reply: "/live/" in reply.url):
                pass
        assert page.evaluate("window.__violations") == [], path
    # The share page, logged out.
    page.context.clear_cookies()
    response = page.goto(f"{base}/s/{token}/")
    assert response is not None and response.status == 200
    assert page.get_by_text("nightly").first.is_visible()
    assert page.evaluate("window.__violations") == []
    assert [error for error in errors if "Content Security Policy" in error or "Refused" in error] == []


def test_a_dangerous_button_still_asks_first_without_an_inline_handler(
    live_server: Any, login: Any, page: Any
) -> None:
    live = build_run({"Politeness": [0.5, None, None]}, name="live")
    Run.objects.filter(pk=live.pk).update(status=Run.Status.RUNNING, finished_at=None)
    Item.objects.filter(run=live, position__gt=0).update(status=Item.Status.PENDING)
    login()
    page.goto(f"{live_server.url}/runs/{live.pk}/")
    asked: list[str] = []

    def answer_no(dialog: Any) -> None:
        asked.append(dialog.message)
        dialog.dismiss()

    page.once("dialog", answer_no)
    page.get_by_role("button", name="Cancel run").click()
    assert asked and asked[0].startswith("Stop sending this run?")
    assert Run.objects.get(pk=live.pk).cancel_requested_at is None
    page.once("dialog", lambda dialog: dialog.accept())
    with page.expect_navigation():
        page.get_by_role("button", name="Cancel run").click()
    assert Run.objects.get(pk=live.pk).cancel_requested_at is not None
