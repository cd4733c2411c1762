"""Text from datasets and judges is shown as text: no script runs, no htmx request fires."""

from __future__ import annotations

from typing import Any

import pytest

from evals.models import Dataset, Example, Item, Judge, RemoteBatch, Run, Score
from evals.services.sharing import share_link_create

pytestmark = pytest.mark.django_db(transaction=True)

HOSTILE = [
    '<script>window.__pwned = "script"</script>',
    '<img src="x" onerror="window.__pwned = \'img\'">',
    '<button hx-get="/trap/" hx-trigger="load" id="trap">hx</button>',
    '<div hx-post="/trap/" hx-trigger="load">post</div>',
    "{{ 7|add:7 }} {% now 'Y' %}",
]


@pytest.fixture
def hostile_run(db: None) -> Run:
    judge = Judge.objects.create(api_url="x", remote_id="j", source="offline", name="Hostile <b>judge</b>")
    dataset = Dataset.objects.create(name="<script>alert(1)</script>", status=Dataset.Status.READY)
    run = Run.objects.create(
        dataset=dataset,
        judge=judge,
        name='<img src=x onerror="window.__pwned=1">',
        total_count=len(HOSTILE),
        completed_count=len(HOSTILE),
        status=Run.Status.COMPLETED,
        evaluators=["<i>Evil</i> evaluator"],
        score_summary={"<i>Evil</i> evaluator": {"n": 5, "sum": 2.5, "min": 0.1, "max": 0.9}},
        tags=["<script>x</script>"],
    )
    batch = RemoteBatch.objects.create(run=run, position=0, status=RemoteBatch.Status.COMPLETED)
    for n, text in enumerate(HOSTILE):
        example = Example.objects.create(
            dataset=dataset, position=n, request=text, response=text, contexts=[text], expected_output=text
        )
        item = Item.objects.create(
            run=run, example=example, batch=batch, position=n, status=Item.Status.COMPLETED, error_message=""
        )
        Score.objects.create(
            item=item, run=run, evaluator_name="<i>Evil</i> evaluator", score=0.5, justification=text
        )
    return run


def assert_harmless(page: Any, trap_requests: list[str]) -> None:
    assert page.evaluate("typeof window.__pwned") == "undefined", "a script ran"
    assert trap_requests == [], f"requests fired: {trap_requests}"
    assert page.locator("#trap").count() == 0, "markup from the data was rendered as elements"
    body = page.locator("main").inner_text()
    assert '<script>window.__pwned = "script"</script>' in body
    assert '<button hx-get="/trap/"' in body


def test_hostile_text_is_shown_as_text_to_teammates_and_through_a_share_link(
    hostile_run: Run, live_server: Any, login: Any, page: Any
) -> None:
    trap_requests: list[str] = []
    page.on("request", lambda request: trap_requests.append(request.url) if "/trap" in request.url else None)
    login()
    page.goto(f"{live_server.url}/runs/{hostile_run.pk}/")
    page.wait_for_load_state("networkidle")
    assert_harmless(page, trap_requests)
    # Open the justifications: expanded text is text too.
    for summary in page.locator("details.longtext > summary").all():
        summary.click()
    assert_harmless(page, trap_requests)

    for item in hostile_run.items.order_by("position"):
        page.goto(f"{live_server.url}/runs/{hostile_run.pk}/items/{item.pk}/")
        page.wait_for_load_state("networkidle")
        assert page.evaluate("typeof window.__pwned") == "undefined" and trap_requests == []
        assert page.locator("#trap").count() == 0
    page.goto(f"{live_server.url}/runs/{hostile_run.pk}/stats/")
    page.wait_for_load_state("networkidle")
    assert page.evaluate("typeof window.__pwned") == "undefined" and trap_requests == []
    assert "<i>Evil</i> evaluator" in page.locator("main").inner_text()

    _, token = share_link_create(run=hostile_run, created_by=None)
    page.context.clear_cookies()
    page.goto(f"{live_server.url}/s/{token}/")
    page.wait_for_load_state("networkidle")
    assert_harmless(page, trap_requests)
    first = hostile_run.items.order_by("position").first()
    assert first is not None
    page.goto(f"{live_server.url}/s/{token}/items/{first.pk}/")
    page.wait_for_load_state("networkidle")
    assert page.evaluate("typeof window.__pwned") == "undefined" and trap_requests == []
