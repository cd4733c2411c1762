"""The run pages: start with a pre-flight, the live page and its endpoint, the list, cancel and retry."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.db import transaction
from django.test import Client
from django.utils import timezone

from evals.models import Dataset, Item, Judge, RemoteBatch, Run, Score
from evals.services.runs import bump_change_seq, run_cancel, run_create, run_finish_if_done
from tests.conftest import RAG_JUDGE, SUPPORT_JUDGE
from tests.factories import finish

pytestmark = pytest.mark.usefixtures("offline_judge")


def row_ids(html: str) -> set[str]:
    return set(re.findall(r'<tr id="item-(\d+)"', html))


def header_text(html: str) -> str:
    """The live header's text, tags stripped and spaces collapsed."""
    match = re.search(r'<section id="run-live".*?</section>', html, re.S)
    assert match is not None
    return " ".join(re.sub(r"<[^>]+>", " ", match.group(0)).split()).replace(" ,", ",")


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
    # The button asks what the page then says: one sentence for what a cancel does.
    effect = "Items not yet sent are cancelled; batches already sent are still collected."
    assert (
        f'data-confirm="Stop sending this run? {effect}"'
        in logged_in.get(f"/runs/{run.pk}/").content.decode()
    )
    response = logged_in.post(f"/runs/{run.pk}/cancel/")
    assert response.status_code == 302
    assert f"Cancelled. {effect}" in logged_in.get(response["Location"]).content.decode()
    run.refresh_from_db()
    assert run.status == Run.Status.CANCELLED and run.cancelled_count == 30
    page = logged_in.get(f"/runs/{run.pk}/").content.decode()
    # Nothing failed: 30 items were never sent, and the button says so.
    assert "Resume 30 cancelled…" in page and "failed</a>" not in page
    assert "0 judged, 30 cancelled (never sent)" in header_text(page)
    form = logged_in.get(f"/runs/{run.pk}/retry/").content.decode()
    assert "Resume 30 cancelled?" in form and re.search(r"Items to send</dt><dd><strong[^>]*>30<", form)
    response = logged_in.post(f"/runs/{run.pk}/retry/")
    retry = Run.objects.get(retry_of=run)
    assert response["Location"] == f"/runs/{retry.pk}/"
    assert retry.total_count == 30
    # Cancelling a finished run is refused politely.
    response = logged_in.post(f"/runs/{run.pk}/cancel/", follow=True)
    assert "already finished" in response.content.decode()


def test_cancel_wants_post_and_retry_asks_first(
    logged_in: Client, judges: dict[str, Judge], make_dataset: Callable[..., Dataset]
) -> None:
    run = run_create(dataset=make_dataset(3), judge=judges[SUPPORT_JUDGE])
    assert logged_in.get(f"/runs/{run.pk}/cancel/").status_code == 405
    form = logged_in.get(f"/runs/{run.pk}/retry/")
    assert form.status_code == 200 and "Wait for the run to finish" in form.content.decode()
    assert not Run.objects.filter(retry_of=run).exists()


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


# --- Honest cancel, safe retry --------------------------------------------------------------------------


def retry_links(html: str, run: Run) -> list[str]:
    return re.findall(rf'href="/runs/{run.pk}/retry/">([^<]+)<', html)


def test_a_cancelled_run_counts_only_the_items_that_will_be_judged(
    logged_in: Client,
    judges: dict[str, Judge],
    make_dataset: Callable[..., Dataset],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    run = run_create(dataset=make_dataset(50), judge=judges[SUPPORT_JUDGE], batch_size=10)
    # Two batches were sent before the cancel; the other three (30 items) never will be.
    run.batches.filter(position__in=[0, 1]).update(status=RemoteBatch.Status.RUNNING)
    run = run_cancel(run=run)
    assert run.cancelled_count == 30 and not run.is_finished
    started = timezone.now() - timedelta(hours=1)
    run.items.filter(batch__position=0).update(status=Item.Status.COMPLETED)
    run.batches.filter(position=0).update(status=RemoteBatch.Status.COMPLETED)
    Run.objects.filter(pk=run.pk).update(completed_count=10, started_at=started, status=Run.Status.RUNNING)
    # 100 s after the start: 10 judged, so 0.1 items/s, and the 10 items still in flight need 100 s more.
    monkeypatch.setattr(
        "dashboard.views.runs.timezone", SimpleNamespace(now=lambda: started + timedelta(seconds=100))
    )
    text = header_text(logged_in.get(f"/runs/{run.pk}/").content.decode())
    assert "10 of 20 judged (50%), 30 cancelled (never sent)" in text
    assert "0.1 items/s" in text and "about 1 min 40 s left" in text

    # The batch in flight comes back: the run ends cancelled, and says what happened to each item.
    with transaction.atomic():
        run.items.filter(batch__position=1).update(status=Item.Status.COMPLETED)
        run.batches.filter(position=1).update(status=RemoteBatch.Status.COMPLETED)
        Run.objects.filter(pk=run.pk).update(completed_count=20)
        run_finish_if_done(run_id=run.pk)
    html = logged_in.get(f"/runs/{run.pk}/").content.decode()
    text = header_text(html)
    assert "Cancelled 20 judged, 30 cancelled (never sent)" in text and "%" not in text
    assert "items finished" not in text
    assert retry_links(html, run) == ["Resume 30 cancelled…"]


def test_after_a_retry_completed_every_row_the_run_offers_no_retry_and_a_post_sends_nothing(
    logged_in: Client, judges: dict[str, Judge], make_dataset: Callable[..., Dataset]
) -> None:
    run = run_cancel(run=run_create(dataset=make_dataset(30), judge=judges[SUPPORT_JUDGE]))
    logged_in.post(f"/runs/{run.pk}/retry/")
    retry = finish(Run.objects.get(retry_of=run))
    assert retry.completed_count == 30
    for page in (run, retry):
        html = logged_in.get(f"/runs/{page.pk}/").content.decode()
        assert retry_links(html, page) == [], "the retry completed every row: nothing is left to retry"
    form = logged_in.get(f"/runs/{run.pk}/retry/").content.decode()
    assert "there is nothing to retry" in form and 'method="post"' not in form.split("<main")[1]
    response = logged_in.post(f"/runs/{run.pk}/retry/", follow=True)
    assert "nothing to retry" in response.content.decode()
    assert Run.objects.filter(retry_of=run).count() == 1


def test_a_second_retry_post_while_the_first_runs_goes_back_to_it(
    logged_in: Client, judges: dict[str, Judge], make_dataset: Callable[..., Dataset]
) -> None:
    run = run_cancel(run=run_create(dataset=make_dataset(30), judge=judges[SUPPORT_JUDGE]))
    first = logged_in.post(f"/runs/{run.pk}/retry/")
    retry = Run.objects.get(retry_of=run)
    second = logged_in.post(f"/runs/{run.pk}/retry/", follow=True)
    assert first["Location"] == second.redirect_chain[0][0] == f"/runs/{retry.pk}/"
    assert "is already retrying these items: nothing new was sent" in second.content.decode()
    # The first run's page points to the retry under way instead of offering another.
    html = logged_in.get(f"/runs/{run.pk}/").content.decode()
    assert retry_links(html, run) == [] and f'href="/runs/{retry.pk}/">Retry under way' in html
    assert Run.objects.filter(retry_of=run).count() == 1


def test_the_retry_form_says_what_it_sends_and_lists_the_rows_it_leaves_out(
    logged_in: Client, judges: dict[str, Judge], make_dataset: Callable[..., Dataset]
) -> None:
    run = run_create(dataset=make_dataset(30), judge=judges[SUPPORT_JUDGE], batch_size=10)
    run.batches.filter(position__in=[0, 1]).update(status=RemoteBatch.Status.RUNNING)
    run_cancel(run=run)
    with transaction.atomic():
        run.items.filter(batch__position=0).update(status=Item.Status.COMPLETED)
        run.items.filter(batch__position=1, position__lt=15).update(
            status=Item.Status.FAILED, error_message="400: response is too long", error_is_permanent=True
        )
        run.items.filter(batch__position=1, position__gte=15).update(
            status=Item.Status.FAILED, error_message="judge API timeout"
        )
        run.batches.update(status=RemoteBatch.Status.COMPLETED)
        Run.objects.filter(pk=run.pk).update(completed_count=10, failed_count=10)
        run_finish_if_done(run_id=run.pk)
    html = logged_in.get(f"/runs/{run.pk}/").content.decode()
    assert retry_links(html, run) == ["Retry 5 failed, resume 10 cancelled…"]
    form = logged_in.get(f"/runs/{run.pk}/retry/").content.decode()
    assert re.search(r"Items to send</dt><dd><strong[^>]*>15<", form)
    assert "5 rows a retry would not fix" in form
    rejected = run.items.filter(error_is_permanent=True).order_by("position")
    for item in rejected:
        assert f'href="/runs/{run.pk}/items/{item.pk}/">{item.position + 1}<' in form
    assert form.count("The judge rejected this row: 400: response is too long") == 5
    logged_in.post(f"/runs/{run.pk}/retry/")
    retry = Run.objects.get(retry_of=run)
    assert retry.total_count == 15
    assert not retry.items.filter(example__in=rejected.values("example")).exists()


def test_a_run_whose_failures_no_retry_can_fix_offers_no_retry_but_says_why(
    logged_in: Client, judges: dict[str, Judge], make_dataset: Callable[..., Dataset]
) -> None:
    run = run_create(dataset=make_dataset(3), judge=judges[SUPPORT_JUDGE])
    with transaction.atomic():
        run.items.update(status=Item.Status.FAILED, error_message="400: unreadable", error_is_permanent=True)
        run.batches.update(status=RemoteBatch.Status.FAILED)
        Run.objects.filter(pk=run.pk).update(failed_count=3)
        run_finish_if_done(run_id=run.pk)
    html = logged_in.get(f"/runs/{run.pk}/").content.decode()
    assert retry_links(html, run) == ["3 failed for good"]
    form = logged_in.get(f"/runs/{run.pk}/retry/").content.decode()
    assert "Every row left to retry failed for a reason a retry cannot fix" in form
    assert "3 rows a retry would not fix" in form


def test_run_started_shows_in_the_live_header_until_the_run_ends(
    logged_in: Client, judges: dict[str, Judge], make_dataset: Callable[..., Dataset]
) -> None:
    dataset = make_dataset(150)
    logged_in.post(
        "/runs/new/", {"dataset": dataset.pk, "judge": judges[SUPPORT_JUDGE].pk, "batch_size": 100}
    )
    run = Run.objects.get()
    page = logged_in.get(f"/runs/{run.pk}/").content.decode()
    notice = "Run started: 150 items in 2 remote batches."
    assert notice in header_text(page)
    assert notice not in page.split('<section id="run-live"')[0], "not a message outside the live header"
    live_url = re.search(r'hx-get="([^"]+)"', page)
    assert live_url is not None and "started=1" in live_url.group(1)
    # The polls keep it while the run works...
    live = logged_in.get(f"/runs/{run.pk}/live/?cursor=-1&rows=&started=1").content.decode()
    assert notice in live
    # ...and drop it with the header swap that ends the run.
    finish(run)
    live = logged_in.get(f"/runs/{run.pk}/live/?cursor=-1&rows=&started=1").content.decode()
    assert "Completed" in live and notice not in live
    # Shown once: a later visit to the run does not announce it again.
    assert notice not in logged_in.get(f"/runs/{run.pk}/").content.decode()


def test_started_ago_is_a_time_the_page_keeps_current(
    logged_in: Client, judges: dict[str, Judge], make_dataset: Callable[..., Dataset]
) -> None:
    run = run_create(dataset=make_dataset(3), judge=judges[SUPPORT_JUDGE])
    Run.objects.filter(pk=run.pk).update(created_at=timezone.now() - timedelta(minutes=5))
    html = logged_in.get(f"/runs/{run.pk}/").content.decode()
    match = re.search(r'<time datetime="([^"]+)" data-ago data-now="[^"]+">([^<]+)</time>', html)
    assert match is not None and "5\xa0minutes ago" in match.group(2)
    assert "/static/dashboard/ago.js" in html


# --- Delete ---------------------------------------------------------------------------------------------


def test_delete_a_run_from_its_page_takes_its_retries_after_a_confirmation_that_says_so(
    logged_in: Client, judges: dict[str, Judge], make_dataset: Callable[..., Dataset]
) -> None:
    dataset = make_dataset(20)
    run = run_cancel(run=run_create(dataset=dataset, judge=judges[SUPPORT_JUDGE], name="nightly"))
    logged_in.post(f"/runs/{run.pk}/retry/")
    retry = Run.objects.get(retry_of=run)
    other = run_create(dataset=dataset, judge=judges[SUPPORT_JUDGE], name="other")
    assert f'href="/runs/{retry.pk}/delete/">Delete…' in logged_in.get(f"/runs/{retry.pk}/").content.decode()

    confirm = logged_in.get(f"/runs/{retry.pk}/delete/").content.decode()
    text = " ".join(re.sub(r"<[^>]+>", " ", confirm).split())
    assert "Delete “Retry of nightly”?" not in text and "Delete 2 runs?" in text
    assert "40 items" in text and "1 more run of the same chain goes too" in text
    assert "still running" in text, "the retry is queued: it is cancelled first"
    assert Run.objects.count() == 3, "a GET deletes nothing"

    response = logged_in.post(f"/runs/{retry.pk}/delete/", follow=True)
    assert response.redirect_chain[-1][0] == "/runs/"
    assert "Deleted 2 runs: 40 items" in response.content.decode()
    assert list(Run.objects.all()) == [other]
    assert not Item.objects.exclude(run=other).exists()


def test_delete_several_runs_at_once_from_the_list(
    logged_in: Client, judges: dict[str, Judge], make_dataset: Callable[..., Dataset]
) -> None:
    dataset = make_dataset(5)
    runs = [run_create(dataset=dataset, judge=judges[SUPPORT_JUDGE], name=f"run {n}") for n in range(3)]
    listing = logged_in.get("/runs/").content.decode()
    assert 'action="/runs/delete/"' in listing
    for run in runs:
        assert f'<input type="checkbox" name="run" value="{run.pk}"' in listing
    confirm = logged_in.get(f"/runs/delete/?run={runs[0].pk}&run={runs[2].pk}").content.decode()
    assert (
        "Delete 2 runs?" in confirm and "run 0" in confirm and "run 2" in confirm and "run 1" not in confirm
    )
    logged_in.post("/runs/delete/", {"run": [runs[0].pk, runs[2].pk]})
    assert list(Run.objects.values_list("name", flat=True)) == ["run 1"]
    nothing = logged_in.get("/runs/delete/", follow=True).content.decode()
    assert "Choose at least one run to delete" in nothing


def test_each_run_page_takes_only_the_methods_it_serves(
    logged_in: Client, judges: dict[str, Judge], make_dataset: Callable[..., Dataset]
) -> None:
    run = run_create(dataset=make_dataset(3), judge=judges[SUPPORT_JUDGE])
    for url in ("/", "/runs/", f"/runs/{run.pk}/", f"/runs/{run.pk}/live/"):
        assert logged_in.post(url).status_code == 405, url
    for url in ("/runs/new/", f"/runs/{run.pk}/retry/", f"/runs/{run.pk}/delete/", "/runs/delete/"):
        assert logged_in.put(url).status_code == 405, url
    assert Run.objects.filter(pk=run.pk, status=Run.Status.QUEUED).exists()
