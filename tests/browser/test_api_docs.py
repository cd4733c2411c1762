"""The API's docs page (ninja's bundled Swagger UI) works in a real browser under Docket's strict
Content-Security-Policy, and everything it loads comes from Docket itself (no CDN)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.django_db(transaction=True)

SHOTS = Path("/tmp/shots")

# Playwright's init scripts run outside the page's policy: this one records what the policy blocked.
RECORD_VIOLATIONS = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", function (event) {
  window.__violations.push(event.violatedDirective + " " + (event.blockedURI || "inline") + " " + event.sourceFile);
});
"""


def test_the_docs_page_lists_every_operation_under_the_csp_using_only_this_host(
    live_server: Any, page: Any
) -> None:
    requested: list[str] = []
    console_errors: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.on(
        "console", lambda message: console_errors.append(message.text) if message.type == "error" else None
    )
    page.add_init_script(RECORD_VIOLATIONS)

    response = page.goto(f"{live_server.url}/api/v1/docs")
    assert response is not None and response.status == 200
    policy = response.headers.get("content-security-policy", "")
    assert "script-src 'self'" in policy and "default-src 'self'" in policy

    schema = page.request.get(f"{live_server.url}/api/v1/openapi.json").json()
    expected = sum(len(methods) for methods in schema["paths"].values())
    blocks = page.locator(".opblock")
    blocks.nth(expected - 1).wait_for()  # Swagger UI fetched the schema and drew every operation
    assert blocks.count() == expected
    assert page.get_by_text("List runs").first.is_visible()
    assert page.get_by_text("Docket API").first.is_visible()

    # Opening an operation shows its documented problem answers.
    page.locator(".opblock-summary", has_text="List runs").first.click()
    opened = page.locator(".opblock.is-open")
    opened.locator("tr.response[data-code='429']").wait_for()
    assert opened.get_by_text("Over the token's requests per minute").first.is_visible()

    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "api-docs.png"), full_page=False)

    assert page.evaluate("window.__violations") == []
    assert [
        error for error in console_errors if "Content Security Policy" in error or "Refused" in error
    ] == []
    assert requested and all(url.startswith(live_server.url) for url in requested), [
        url for url in requested if not url.startswith(live_server.url)
    ]
