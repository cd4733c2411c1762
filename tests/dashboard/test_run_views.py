"""The run pages: start with a pre-flight, the live page and its endpoint, the list, cancel and retry."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from django.db import transaction
from django.test import Client

from evals.models import Dataset, Item, Judge, Run, Score
from evals.pump import pump
from evals.services.runs import bump_change_seq, run_create
from tests.conftest import RAG_JUDGE, SUPPORT_JUDGE

pytestmark = pytest.mark.usefixtures("offline_judge")


def finish(run: Run) -> Run:
    for _ in range(20):
        pump(budget_seconds=30, concurrency=1, requeue=False)
        run.refresh_from_db()
        if run.is_finished:
            return run
    raise AssertionError("run did not finish")


def row_ids(html: str) -> set[str]:
    return set(re.findall(r'<tr id="item-(\d+)"', html))


def test_start_a_run_shows_the_preflight_then_creates_the_run(
    logged_in: Client, judges: dict[str, Judge], make_dataset: Callable[..., Dataset]
) -> None:
    dataset = make_dataset(150)
    judge = judges[SUPPORT_JUDGE]
    page = logged_in.get(f"/runs/new/?dataset={dataset.pk}&judge={judge.pk}")
    assert page.status_code == 200
    html = page.content.decode()
    assert "Before you start" in html and "Remote batches" in html
    assert ">150<" in html and ">2<" in html  # rows and batches
    for name in judge.evaluator_names:
        assert name in html
    # The same pre-flight, as the htmx fragment the form asks for on change.
    fragment = logged_in.get(
        f"/runs/new/?dataset={dataset.pk}&judge={judge.pk}&batch_size=50", HTTP_HX_REQUEST="true"
    )
    assert fragment.content.decode().lstrip().startswith('<div id="preflight">')
    assert ">3<" in fragment.content.decode()

    response = logged_in.post(
        "/runs/new/",
        {"dataset": dataset.pk, "judge": judge.pk, "name": "nightly", "tags": "a, b", "batch_size": 100},
    )
    run = Run.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/runs/{run.pk}/"
    assert (run.name, run.tags, run.total_count) == ("nightly", ["a", "b"], 150)


def test_a_judge_input_the_dataset_lacks_blocks_the_start_and_is_named(
    logged_in: Client, judges: dict[str, Judge], make_dataset: Callable[..., Dataset]
) -> None:
    dataset = make_dataset(5)
    judge = judges[RAG_JUDGE]
    html = logged_in.get(f"/runs/new/?dataset={dataset.pk}&judge={judge.pk}").content.decode()
    assert "Cannot start" in html and "<code>contexts</code>" in html
    assert re.search(r'<button type="submit" form="run-form" class="button button-primary" disabled>', html)
    response = logged_in.post("/runs/new/", {"dataset": dataset.pk, "judge": judge.pk, "batch_size": 100})
    assert response.status_code == 400
    assert "contexts" in response.content.decode()
    assert not Run.objects.exists()


def test_bad_form_input_is_answered_with_the_form_not_a_500(
    logged_in: Client, judges: dict[str, Judge]
) -> None:
    response = logged_in.post("/runs/new/", {"dataset": "999", "judge": "abc", "batch_size": "many"})
    assert response.status_code == 200
    assert "Select a valid choice" in response.content.decode()
    assert not Run.objects.exists()


def test_run_page_shows_scores_and_justifications_without_hovering(
    logged_in: Client, judges: dict[str, Judge], make_dataset: Callable[..., Dataset]
) -> None:
    run = finish(run_create(dataset=make_dataset(8), judge=judges[SUPPORT_JUDGE]))
    html = logged_in.get(f"/runs/{run.pk}/").content.decode()
    score = Score.objects.filter(run=run).first()
    assert score is not None
    headers = re.findall(r'<th><a class="sort[^"]*" href="[^"]*"[^>]*>([^<]+)<', html)
    assert [header.strip() for header in headers] == ["Status", *run.evaluators]
    # A finished run opens worst first by its first evaluator.
    assert f'aria-sort="ascending" title="Sorted lowest first; click to reverse">{run.evaluators[0]}' in html
    assert '<span class="clamp small">' in html and score.justification[:40] in html
    assert len(row_ids(html)) == 8


def next_page(html: str) -> str | None:
    match = re.search(r'href="([^"]+)" rel="next"', html)
    return match.group(1).replace("&amp;", "&") if match else None


def test_run_page_paginates_by_key_and_walks_every_item_once(
    logged_in: Client, judges: dict[str, Judge], make_dataset: Callable[..., Dataset]
) -> None:
    run = run_create(dataset=make_dataset(120), judge=judges[SUPPORT_JUDGE])
    first = logged_in.get(f"/runs/{run.pk}/").content.decode()
    assert len(row_ids(first)) == 50
    assert row_ids(first) == {
        str(pk) for pk in run.items.filter(position__lt=50).values_list("pk", flat=True)
    }
    seen = row_ids(first)
    url = next_page(first)
    while url:
        html = logged_in.get(url).content.decode()
        assert not (row_ids(html) & seen)
        seen |= row_ids(html)
        url = next_page(html)
    assert len(seen) == 120


def test_live_endpoint_returns_204_when_nothing_changed_and_only_the_visible_rows_that_did(
    logged_in: Client, judges: dict[str, Judge], make_dataset: Callable[..., Dataset]
) -> None:
    run = run_create(dataset=make_dataset(10), judge=judges[SUPPORT_JUDGE])
    items = list(run.items.order_by("position"))
    visible = ",".join(str(item.pk) for item in items[:5])
    url = f"/runs/{run.pk}/live/?rows={visible}"
    assert logged_in.get(f"{url}&cursor={run.change_seq}").status_code == 204

    cursor = run.change_seq
    with transaction.atomic():
        seq = bump_change_seq(run)
        # Items 0 and 1 are visible; item 7 changed too but is not on the page.
        Item.objects.filter(pk__in=[items[0].pk, items[1].pk, items[7].pk]).update(
            status=Item.Status.COMPLETED, change_seq=seq
        )
        Score.objects.create(
            item=items[0], run=run, evaluator_name="Politeness", score=0.9, justification="says please"
        )
    response = logged_in.get(f"{url}&cursor={cursor}")
    assert response.status_code == 200
    html = response.content.decode()
    assert row_ids(html) == {str(items[0].pk), str(items[1].pk)}
    assert html.count('hx-swap-oob="true"') == 2
    assert "says please" in html
    assert f"cursor={seq}&amp;rows={visible}" in html or f"cursor={seq}&rows={visible}" in html
    assert 'hx-trigger="every 2s"' in html
    assert logged_in.get(f"{url}&cursor={seq}").status_code == 204


def test_a_finished_runs_fragment_carries_no_polling_attribute(
    logged_in: Client, judges: dict[str, Judge], make_dataset: Callable[..., Dataset]
) -> None:
    run = run_create(dataset=make_dataset(6), judge=judges[SUPPORT_JUDGE])
    running = logged_in.get(f"/runs/{run.pk}/").content.decode()
    assert 'id="run-live"' in running and 'hx-trigger="every 2s"' in running
    run = finish(run)
    page = logged_in.get(f"/runs/{run.pk}/").content.decode()
    live = logged_in.get(f"/runs/{run.pk}/live/?cursor=0").content.decode()
    for html in (page, live):
        header = re.search(r'<section id="run-live"[^>]*>', html)
        assert header is not None
        assert "hx-get" not in header.group(0) and "hx-trigger" not in header.group(0)
    assert "Completed" in page


def test_cancel_and_retry_from_the_run_page(
    logged_in: Client, judges: dict[str, Judge], make_dataset: Callable[..., Dataset]
) -> None:
    run = run_create(dataset=make_dataset(30), judge=judges[SUPPORT_JUDGE])
    response = logged_in.post(f"/runs/{run.pk}/cancel/")
    assert response.status_code == 302
    run.refresh_from_db()
    assert run.status == Run.Status.CANCELLED and run.cancelled_count == 30
    page = logged_in.get(f"/runs/{run.pk}/").content.decode()
    assert "Retry 30 failed" in page
    response = logged_in.post(f"/runs/{run.pk}/retry/")
    retry = Run.objects.get(retry_of=run)
    assert response["Location"] == f"/runs/{retry.pk}/"
    assert retry.total_count == 30
    # Cancelling a finished run is refused politely.
    response = logged_in.post(f"/runs/{run.pk}/cancel/", follow=True)
    assert "already finished" in response.content.decode()


def test_cancel_and_retry_want_post(
    logged_in: Client, judges: dict[str, Judge], make_dataset: Callable[..., Dataset]
) -> None:
    run = run_create(dataset=make_dataset(3), judge=judges[SUPPORT_JUDGE])
    assert logged_in.get(f"/runs/{run.pk}/cancel/").status_code == 405
    assert logged_in.get(f"/runs/{run.pk}/retry/").status_code == 405


def test_runs_list_filters_by_status_judge_and_tag(
    logged_in: Client, judges: dict[str, Judge], make_dataset: Callable[..., Dataset]
) -> None:
    dataset = make_dataset(4)
    finish(run_create(dataset=dataset, judge=judges[SUPPORT_JUDGE], name="alpha", tags=["nightly"]))
    run_create(dataset=dataset, judge=judges[SUPPORT_JUDGE], name="beta", tags=["release", "nightly-2"])

    def names(query: str) -> set[str]:
        html = logged_in.get(f"/runs/{query}").content.decode()
        return set(re.findall(r'class="row-link" href="/runs/\d+/">([^<]+)<', html))

    assert names("") == {"alpha", "beta"}
    assert names("?tag=nightly") == {"alpha"}
    assert names("?tag=release") == {"beta"}
    assert names("?status=completed") == {"alpha"}
    assert names(f"?judge={judges[SUPPORT_JUDGE].pk}") == {"alpha", "beta"}
    html = logged_in.get("/runs/").content.decode()
    assert "Politeness" in html  # mean score per evaluator of the finished run
    assert "No runs match" in logged_in.get("/runs/?tag=nothing").content.decode()
    other = make_dataset(2, name="other data")
    run_create(dataset=other, judge=judges[SUPPORT_JUDGE], name="gamma")
    assert names(f"?dataset={other.pk}") == {"gamma"}
    assert names(f"?dataset={dataset.pk}") == {"alpha", "beta"}


def test_the_first_runs_page_can_show_the_latest_verdict_per_row_across_its_retries(
    logged_in: Client,
    judges: dict[str, Judge],
    make_dataset: Callable[..., Dataset],
    offline_judge: Callable[[str], None],
) -> None:
    offline_judge("item_ms=1,lanes=100,item_fail=0.5,seed=4")
    first = finish(run_create(dataset=make_dataset(12), judge=judges[SUPPORT_JUDGE]))
    assert first.failed_count
    offline_judge("item_ms=1,lanes=100")
    logged_in.post(f"/runs/{first.pk}/retry/")
    finish(Run.objects.get(retry_of=first))
    own = logged_in.get(f"/runs/{first.pk}/").content.decode()
    assert own.count("badge badge-failed") == first.failed_count
    latest = logged_in.get(f"/runs/{first.pk}/?view=latest").content.decode()
    assert "Latest verdict per row, with 1 retry" in latest
    assert len(row_ids(latest)) == 12
    assert "badge badge-failed" not in latest.split('<table class="data items" data-keynav>')[1]
