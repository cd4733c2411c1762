"""The results table by keyboard: j/k move, Enter opens, / searches, ? lists the keys."""

from __future__ import annotations

from typing import Any

import pytest

from evals.models import Dataset, Example, Item, Judge, RemoteBatch, Run, Score

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def finished_run(db: None) -> Run:
    judge = Judge.objects.create(api_url="x", remote_id="j", source="offline", name="J")
    dataset = Dataset.objects.create(name="keys", status=Dataset.Status.READY)
    run = Run.objects.create(
        dataset=dataset,
        judge=judge,
        total_count=3,
        completed_count=3,
        status=Run.Status.COMPLETED,
        evaluators=["Tone"],
    )
    batch = RemoteBatch.objects.create(run=run, position=0, status=RemoteBatch.Status.COMPLETED)
    for n, score in enumerate([0.9, 0.1, 0.5]):
        example = Example.objects.create(dataset=dataset, position=n, request=f"q{n}", response=f"a{n}")
        item = Item.objects.create(
            run=run, example=example, batch=batch, position=n, status=Item.Status.COMPLETED
        )
        Score.objects.create(item=item, run=run, evaluator_name="Tone", score=score, justification=f"why {n}")
    return run


def test_keys_move_open_search_and_help(finished_run: Run, live_server: Any, login: Any, page: Any) -> None:
    login()
    page.goto(f"{live_server.url}/runs/{finished_run.pk}/")
    rows = page.locator("table.items tbody tr")
    # Worst first: 0.1 (row 2), 0.5 (row 3), 0.9 (row 1).
    assert [text.split()[0] for text in rows.all_inner_texts()] == ["2", "3", "1"]
    page.keyboard.press("j")
    assert rows.nth(0).get_attribute("class") and "is-selected" in rows.nth(0).get_attribute("class")
    page.keyboard.press("j")
    page.keyboard.press("j")
    page.keyboard.press("k")
    assert "is-selected" in (rows.nth(1).get_attribute("class") or "")
    assert page.locator("tr.is-selected").count() == 1
    page.keyboard.press("Enter")
    page.wait_for_url("**/items/*/")
    assert "a2" in page.locator("main").inner_text()  # row 3 holds position 2
    page.go_back()
    page.keyboard.press("/")
    assert page.evaluate("document.activeElement.id") == "q"
    page.keyboard.type("x")  # typing in the search box does not move the selection
    page.keyboard.press("Escape")
    page.locator("body").click(position={"x": 5, "y": 5})
    page.keyboard.press("?")
    assert page.locator("#keys-help").is_visible()
    assert "Next / previous item" in page.locator("#keys-help").inner_text()
