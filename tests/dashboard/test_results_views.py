"""The results pages: statistics, one item, the execution log fetched on demand, export and compare;
for teammates and through share links (with and without the request and response text)."""

from __future__ import annotations

import csv
import html
import io
import json
import re
import secrets
from collections.abc import Callable

import pytest
from django.test import Client

from evals import tasks
from evals.client import JudgeError
from evals.models import Dataset, Item, Judge, Run, Score, ShareLink
from evals.services.runs import run_create
from tests.conftest import SUPPORT_JUDGE
from tests.factories import build_run, finish

pytestmark = pytest.mark.django_db

HOSTILE_REQUEST = "<script>alert('request')</script>"
HOSTILE_RESPONSE = '<img src=x onerror="alert(1)">'
HOSTILE_JUSTIFICATION = '<div hx-get="/runs/" hx-trigger="load">boom</div>'


def share(run: Run, *, hide_text: bool = False) -> str:
    token = secrets.token_urlsafe(32)
    ShareLink.objects.create(run=run, token_hash=ShareLink.hash_token(token), hide_text=hide_text)
    return token


def hand_run(**kwargs: object) -> Run:
    topics = ["billing", "billing", "shipping", "shipping", "shipping", "login"]
    return build_run(
        {"Politeness": [0.9, 0.7, 0.2, 0.4, 0.6, None], "Concision": [0.5, 0.5, 0.5, 0.5, 0.5, None]},
        name="nightly",
        metadata=lambda position: {"topic": topics[position]},
        **kwargs,  # type: ignore[arg-type]
    )


def text_of(response: object) -> str:
    return response.content.decode()  # type: ignore[attr-defined]


# --- Statistics ------------------------------------------------------------------------------------------


def test_statistics_page_shows_the_numbers_and_an_accessible_svg_histogram(logged_in: Client) -> None:
    run = hand_run()
    page = logged_in.get(f"/runs/{run.pk}/stats/")
    assert page.status_code == 200
    body = text_of(page)
    # Politeness: 0.9, 0.7, 0.2, 0.4, 0.6: mean 0.56; squared deviations sum to .292, s² = .073,
    # s/√5 = .120830, × t(.975, 4) = 2.776445 gives .335478: from .224522 to .895478. Median 0.6;
    # 3 of 5 at or above 0.5.
    assert "0.56" in body and "0.225 – 0.895" in body
    assert "60.0%" in body and "(3)" in body
    assert body.count('role="img"') == 2  # one histogram per evaluator
    start = body.index('<svg class="histogram"')
    svg = body[start : body.index("</svg>", start)]
    assert re.search(r'<svg class="histogram"[^>]*aria-labelledby="hist-1-title hist-1-desc"', svg)
    assert '<title id="hist-1-title">Distribution of Politeness scores</title>' in svg
    assert '<desc id="hist-1-desc">5 scores of Politeness in 10 bins' in svg
    assert svg.count("<rect ") == 10
    assert "<script" not in body.split("</head>")[1]  # no chart library, no script of its own
    assert "pass ≥ 0.5" in svg


def test_thresholds_and_slices_come_from_the_url(logged_in: Client) -> None:
    run = hand_run(thresholds={"Politeness": 0.6})
    body = text_of(logged_in.get(f"/runs/{run.pk}/stats/?threshold.Politeness=0.8&slice=topic"))
    # Only 0.9 passes 0.8: 20.0%; Concision keeps the run's 0.5 (the judge named none): all five pass.
    assert "20.0%" in body and "100.0%" in body
    # The override is said to be one, beside the run's own, with the way back to it (the slice stays).
    assert '<span class="badge badge-warn" title="The run’s own: 0.6">override</span>' in body
    assert "Overridden in the address:" in body
    assert 'Politeness at 0.8 <span class="small">(the run’s: 0.6, judge’s)</span>.' in body
    assert '<a href="?slice=topic">Back to the run’s own thresholds</a>' in body
    assert '0.5 <span class="muted small">(default: the judge gave none)</span>' in body
    slices = re.findall(r"<tr>\s*<td>(billing|shipping|login)</td>", body)
    # Politeness by topic, worst mean first: shipping 0.4, billing 0.8, login (no score: failed row).
    assert slices[:2] == ["shipping", "billing"]
    # An unknown column is said to be unknown, not a 500.
    page = logged_in.get(f"/runs/{run.pk}/stats/?slice=<b>nope</b>&threshold=abc")
    assert page.status_code == 200
    assert "“&lt;b&gt;nope&lt;/b&gt;” is not a metadata column" in text_of(page)


def test_a_share_link_opens_the_statistics_read_only(client: Client) -> None:
    run = hand_run()
    token = share(run, hide_text=True)
    page = client.get(f"/s/{token}/stats/")
    assert page.status_code == 200
    assert page["Cache-Control"] == "private, no-store" and "noindex" in page["X-Robots-Tag"]
    body = text_of(page)
    assert "0.56" in body and "read-only view" in body
    assert f"/runs/{run.pk}/" not in body  # no link into the team's pages
    assert "Export the run" in body  # without the hidden columns: see test_sharing.py
    assert client.post(f"/s/{token}/stats/").status_code == 405
    assert client.get(f"/s/{secrets.token_urlsafe(32)}/stats/").status_code == 404


# --- One item --------------------------------------------------------------------------------------------


def test_item_page_shows_every_input_and_the_full_justification(logged_in: Client) -> None:
    long_reason = "The reply thanks the user. " * 80 + "FINAL-SENTENCE-OF-THE-JUSTIFICATION."
    run = build_run(
        {"Politeness": [0.8, 0.3, None]},
        metadata=lambda position: {"topic": "billing", "tier": "gold"},
        justification=lambda name, position, score: long_reason,
        example_fields=lambda position: {
            "contexts": ["First context passage.", "Second context passage."],
            "expected_output": "Open Settings and press Reset.",
            "system_prompt": "You are a support assistant.",
            "turns": [
                {"role": "user", "content": "Hi there"},
                {"role": "assistant", "content": "Hello! How can I help?"},
            ],
        },
    )
    Score.objects.filter(run=run).update(evaluator_id="eval-politeness-7", confidence=0.87)
    item = run.items.get(position=1)
    body = text_of(logged_in.get(f"/runs/{run.pk}/items/{item.pk}/"))
    for text in (
        "How do I reset my password? (row 1)",
        "Open Settings, then Security (1).",
        "First context passage.",
        "Second context passage.",
        "Open Settings and press Reset.",
        "You are a support assistant.",
        "Hello! How can I help?",
        "gold",
        "eval-politeness-7",
        "confidence 0.87",
        item.execution_log_id,
    ):
        assert text in body, text
    assert "FINAL-SENTENCE-OF-THE-JUSTIFICATION." in body  # in full, not cut at some length
    assert '<ol class="context-list">' in body and body.count('<div class="turn turn-') == 2
    # Previous and next follow the run page's default order, worst score first: 0.3 (this row), 0.8, none.
    first, last = run.items.get(position=0), run.items.get(position=2)
    assert 'rel="prev"' not in body and f'rel="next" href="/runs/{run.pk}/items/{first.pk}/"' in body
    assert f'rel="next" href="/runs/{run.pk}/items/{last.pk}/"' in text_of(
        logged_in.get(f"/runs/{run.pk}/items/{first.pk}/")
    )
    assert f'href="/runs/{run.pk}/"' in body  # back to the run page
    failed = text_of(logged_in.get(f"/runs/{run.pk}/items/{last.pk}/"))
    assert "The judge could not score this row." in failed and "No verdict yet from Politeness" in failed


def test_an_item_of_another_run_is_not_found(logged_in: Client) -> None:
    run = hand_run()
    other = hand_run()
    stranger = other.items.first()
    own = run.items.first()
    assert stranger is not None and own is not None
    assert logged_in.get(f"/runs/{run.pk}/items/{stranger.pk}/").status_code == 404
    assert logged_in.get(f"/runs/{run.pk}/items/{own.pk}/").status_code == 200
    anonymous = Client()
    token = share(run)
    assert anonymous.get(f"/s/{token}/items/{stranger.pk}/").status_code == 404
    assert anonymous.get(f"/s/{token}/items/{stranger.pk}/?view=latest").status_code == 404
    page = anonymous.get(f"/s/{token}/items/{own.pk}/")
    assert page.status_code == 200 and page["Cache-Control"] == "private, no-store"
    assert f'href="/s/{token}/"' in text_of(page)  # back to the shared run page, not the team's


def test_the_latest_view_reaches_an_item_of_a_retry(logged_in: Client) -> None:
    first = build_run({"Politeness": [0.2, None]})
    retry = build_run(
        {"Politeness": [0.9]}, dataset=first.dataset, judge=first.judge, retry_of=first, positions=[1]
    )
    item = retry.items.get()
    assert logged_in.get(f"/runs/{first.pk}/items/{item.pk}/").status_code == 404
    page = logged_in.get(f"/runs/{first.pk}/items/{item.pk}/?view=latest")
    assert page.status_code == 200
    assert "the latest verdict, from" in text_of(page)


def test_a_share_link_that_hides_text_hides_the_inputs_but_keeps_the_verdicts(client: Client) -> None:
    run = build_run(
        {"Politeness": [0.8]},
        requests=["SECRET-REQUEST-TEXT"],
        responses=["SECRET-RESPONSE-TEXT"],
        justification=lambda name, position, score: "Visible justification.",
        example_fields=lambda position: {
            "contexts": ["SECRET-CONTEXT"],
            "expected_output": "SECRET-EXPECTED",
            "turns": [{"role": "user", "content": "SECRET-TURN"}],
            "system_prompt": "SECRET-SYSTEM",
        },
    )
    item = run.items.get()
    hidden = text_of(client.get(f"/s/{share(run, hide_text=True)}/items/{item.pk}/"))
    assert "SECRET" not in hidden
    assert (
        hidden.count("Hidden by the share link.") == 6
    )  # request, response, contexts, expected, system, turns
    # Justifications may quote the text: hidden too, unless the link was made to show them.
    assert "Visible justification." not in hidden and "0.80" in hidden
    assert "Justification hidden by the share link." in hidden
    token = secrets.token_urlsafe(32)
    ShareLink.objects.create(
        run=run, token_hash=ShareLink.hash_token(token), hide_text=True, show_justifications=True
    )
    with_reasons = text_of(client.get(f"/s/{token}/items/{item.pk}/"))
    assert "Visible justification." in with_reasons and "SECRET" not in with_reasons
    assert "Fetch cost, model and latency" not in hidden
    shown = text_of(client.get(f"/s/{share(run)}/items/{item.pk}/"))
    for text in ("SECRET-REQUEST-TEXT", "SECRET-RESPONSE-TEXT", "SECRET-CONTEXT", "SECRET-TURN"):
        assert text in shown
    assert "Hidden by the share link" not in shown


def test_hostile_text_is_shown_as_text(logged_in: Client) -> None:
    a = build_run(
        {"Politeness": [0.9]},
        requests=[HOSTILE_REQUEST],
        responses=[HOSTILE_RESPONSE],
        metadata=lambda position: {"topic": HOSTILE_RESPONSE},
        justification=lambda name, position, score: HOSTILE_JUSTIFICATION,
    )
    b = build_run(
        {"Politeness": [0.1]},
        dataset=a.dataset,
        judge=a.judge,
        justification=lambda name, position, score: HOSTILE_JUSTIFICATION,
    )
    pages = [
        logged_in.get(f"/runs/{a.pk}/items/{a.items.get().pk}/"),
        logged_in.get(f"/runs/{a.pk}/stats/?slice=topic"),
        logged_in.get(f"/runs/compare/?a={a.pk}&b={b.pk}"),
    ]
    for page in pages:
        body = text_of(page)
        for raw in (HOSTILE_REQUEST, HOSTILE_RESPONSE, HOSTILE_JUSTIFICATION):
            assert raw not in body
        assert 'hx-get="/runs/"' not in body and "<img src=x" not in body
    item_page, stats_page, compare_page = (text_of(page) for page in pages)
    assert html.escape(HOSTILE_REQUEST) in item_page and html.escape(HOSTILE_RESPONSE) in item_page
    assert html.escape(HOSTILE_JUSTIFICATION) in item_page
    assert html.escape(HOSTILE_RESPONSE) in stats_page  # a metadata value, as a slice
    assert html.escape(HOSTILE_JUSTIFICATION) in compare_page and html.escape(HOSTILE_REQUEST) in compare_page


# --- The results table's filtered views, and the item pages they lead to -------------------------------------


def test_a_filtered_view_counts_every_matching_item(logged_in: Client) -> None:
    run = hand_run()
    shipping = text_of(logged_in.get(f"/runs/{run.pk}/?meta.topic=shipping"))
    assert '<strong class="num">3</strong> of 6 items match' in shipping
    assert "3 of 6 items match, 3 on this page" in shipping
    failed = text_of(logged_in.get(f"/runs/{run.pk}/?status=failed"))
    assert "1 of 6 items matches" in failed
    assert "items match" not in text_of(logged_in.get(f"/runs/{run.pk}/"))


def test_metadata_filters_offer_the_column_s_values_most_common_first(logged_in: Client) -> None:
    run = hand_run()
    body = text_of(logged_in.get(f"/runs/{run.pk}/"))
    datalist = re.search(r'<datalist id="([^"]+)">(.*?)</datalist>', body)
    assert datalist is not None
    assert f'name="meta.topic" value="" list="{datalist.group(1)}"' in body
    assert re.findall(r'<option value="([^"]+)">', datalist.group(2)) == ["shipping", "billing", "login"]


def test_item_previous_and_next_follow_the_view_it_was_opened_from(logged_in: Client) -> None:
    # Politeness 0.9, 0.7, 0.2, 0.4, 0.6 and a failed row; topics billing, billing, shipping x3, login.
    run = hand_run()
    items = {item.position: item for item in run.items.all()}
    view = "sort=-score%3APoliteness&meta.topic=shipping"
    page = text_of(logged_in.get(f"/runs/{run.pk}/?{view}"))
    # The table's rows open their item with the view in the link.
    assert f'href="/runs/{run.pk}/items/{items[4].pk}/?{view.replace("&", "&amp;")}"' in page
    # Best first among shipping: 0.6 (row 5), 0.4 (row 4), 0.2 (row 3).
    middle = text_of(logged_in.get(f"/runs/{run.pk}/items/{items[3].pk}/?{view}"))
    link = f"/runs/{run.pk}/items/{{}}/?{view.replace('&', '&amp;')}"
    assert f'rel="prev" href="{link.format(items[4].pk)}"' in middle
    assert f'rel="next" href="{link.format(items[2].pk)}"' in middle
    assert f'href="/runs/{run.pk}/?{view.replace("&", "&amp;")}"' in middle  # back to the same view
    last = text_of(logged_in.get(f"/runs/{run.pk}/items/{items[2].pk}/?{view}"))
    assert 'rel="next"' not in last and "Next item →</span>" in last
    # The run page's default view (worst Politeness first) needs no parameters: nor do its items' links.
    default = text_of(logged_in.get(f"/runs/{run.pk}/"))
    assert f'href="/runs/{run.pk}/items/{items[4].pk}/" title' in default
    plain = text_of(logged_in.get(f"/runs/{run.pk}/items/{items[4].pk}/"))
    assert f'rel="prev" href="/runs/{run.pk}/items/{items[3].pk}/"' in plain  # 0.4, then 0.6
    assert f'rel="next" href="/runs/{run.pk}/items/{items[1].pk}/"' in plain  # then 0.7
    # In row order, when asked for.
    rows = text_of(logged_in.get(f"/runs/{run.pk}/items/{items[4].pk}/?sort=position"))
    assert f'rel="next" href="/runs/{run.pk}/items/{items[5].pk}/?sort=position"' in rows


def test_item_cost_from_a_fetched_log_is_shown_in_dollars_and_says_where_it_came_from(
    logged_in: Client,
) -> None:
    run = hand_run()
    item = run.items.get(position=0)
    item.log_detail = {"cost": 0.0123, "model": "m-1", "model_call_duration": 1.5, "evaluator_latencies": []}
    item.save(update_fields=["log_detail"])
    body = text_of(logged_in.get(f"/runs/{run.pk}/items/{item.pk}/"))
    # Costs are in the judge's currency, shown with a "$" as issue 14 (and Scorable's app) does.
    assert re.search(r"\$0\.0123</span> <span[^>]*>from the fetched execution log</span>", body)


# --- The execution log, fetched on demand -------------------------------------------------------------------


@pytest.mark.usefixtures("offline_judge")
def test_fetching_the_execution_log_keeps_cost_model_and_latency(
    logged_in: Client, judges: dict[str, Judge], make_dataset: Callable[..., Dataset]
) -> None:
    run = finish(run_create(dataset=make_dataset(3), judge=judges[SUPPORT_JUDGE]))
    item = run.items.order_by("position").first()
    assert item is not None and item.execution_log_id and item.log_detail is None
    page = text_of(logged_in.get(f"/runs/{run.pk}/items/{item.pk}/"))
    assert "Fetch cost, model and latency" in page and f'action="/runs/{run.pk}/items/{item.pk}/log/"' in page

    response = logged_in.post(f"/runs/{run.pk}/items/{item.pk}/log/")
    assert response.status_code == 302 and response["Location"] == f"/runs/{run.pk}/items/{item.pk}/"
    item.refresh_from_db()
    assert item.log_detail is not None
    assert "offline-pattern-1" in item.log_detail["model"]
    assert item.log_detail["cost"] > 0 and item.log_detail["model_call_duration"] > 0
    assert item.log_detail["thresholds"]["Politeness"] == 0.6
    page = text_of(logged_in.get(f"/runs/{run.pk}/items/{item.pk}/"))
    assert "Fetched cost, model and latency" in page
    assert item.log_detail["model"] in page and "Model call" in page
    # Pass and fail are counted at the run's thresholds, which one item's log does not set.
    assert "threshold 0.6" not in page and 'badge-good">pass' not in page
    assert "pending: being read from the judge" in text_of(logged_in.get(f"/runs/{run.pk}/stats/"))
    # Once the run has learned them (the task the pump enqueues), the item page marks its verdicts.
    tasks.run_thresholds_learn(run.pk)
    page = text_of(logged_in.get(f"/runs/{run.pk}/items/{item.pk}/"))
    assert "threshold 0.6" in page and ('badge-good">pass' in page or 'badge-bad">fail' in page)
    assert '0.6 <span class="muted small">(judge’s)</span>' in text_of(
        logged_in.get(f"/runs/{run.pk}/stats/")
    )

    # With htmx: the log card, and the verdicts (now marked pass or fail) out of band.
    fragment = text_of(logged_in.post(f"/runs/{run.pk}/items/{item.pk}/log/", HTTP_HX_REQUEST="true"))
    assert fragment.lstrip().startswith('<section class="card" id="item-log"')
    assert 'id="item-verdicts" aria-labelledby="item-verdicts-title" hx-swap-oob="true"' in fragment
    assert "<html" not in fragment


@pytest.mark.usefixtures("offline_judge")
def test_a_failing_log_fetch_is_a_message_not_a_500(
    logged_in: Client,
    judges: dict[str, Judge],
    make_dataset: Callable[..., Dataset],
    offline_judge: Callable[[str], None],
) -> None:
    run = finish(run_create(dataset=make_dataset(2), judge=judges[SUPPORT_JUDGE]))
    item = run.items.order_by("position").first()
    assert item is not None
    offline_judge("error=1")  # the judge answers 500 to everything
    page = logged_in.post(f"/runs/{run.pk}/items/{item.pk}/log/", follow=True)
    assert page.status_code == 200
    assert "Could not fetch the execution log" in text_of(page)
    item.refresh_from_db()
    assert item.log_detail is None

    offline_judge("item_ms=1,lanes=100")
    Item.objects.filter(pk=item.pk).update(execution_log_id="00000000-0000-0000-0000-000000000000")
    fragment = text_of(logged_in.post(f"/runs/{run.pk}/items/{item.pk}/log/", HTTP_HX_REQUEST="true"))
    assert 'role="alert"' in fragment and "Could not fetch the execution log" in fragment


def stats_table(client: Client, run: Run) -> str:
    body = text_of(client.get(f"/runs/{run.pk}/stats/"))
    start = body.index('<table class="data stats-overview">')
    return body[start : body.index("</table>", start)]


@pytest.mark.usefixtures("offline_judge")
@pytest.mark.parametrize("learned", ["judge", "default", "pending"])
def test_fetching_an_execution_log_changes_no_statistic(
    logged_in: Client,
    judges: dict[str, Judge],
    make_dataset: Callable[..., Dataset],
    monkeypatch: pytest.MonkeyPatch,
    learned: str,
) -> None:
    """The issue's complaint: "33.0% at 0.5 default", then "25.0% at 0.7 judge's" after one click."""
    run = finish(run_create(dataset=make_dataset(6), judge=judges[SUPPORT_JUDGE]))
    if learned == "judge":
        tasks.run_thresholds_learn(run.pk)
    elif learned == "default":
        # The log the run learned from was gone (404): every evaluator passes at 0.5.
        def gone(*args: object) -> None:
            raise JudgeError("not found", status=404, permanent=True)

        with monkeypatch.context() as patch:
            patch.setattr("evals.client.JudgeAPI.get_execution_log", gone)
            tasks.run_thresholds_learn(run.pk)
    run.refresh_from_db()
    assert run.threshold_for("Politeness")[1] == learned
    before = stats_table(logged_in, run)
    for item in run.items.filter(log_detail__isnull=True).order_by("-position")[:2]:
        assert logged_in.post(f"/runs/{run.pk}/items/{item.pk}/log/").status_code == 302
        item.refresh_from_db()
        assert item.log_detail is not None and item.log_detail["thresholds"]["Politeness"] == 0.6
    assert stats_table(logged_in, run) == before


def test_the_log_fetch_is_for_teammates_and_wants_post(logged_in: Client) -> None:
    run = hand_run()
    item = run.items.first()
    assert item is not None
    assert logged_in.get(f"/runs/{run.pk}/items/{item.pk}/log/").status_code == 405
    anonymous = Client()
    token = share(run)
    assert anonymous.post(f"/s/{token}/items/{item.pk}/").status_code == 405
    assert "Fetch cost, model and latency" not in text_of(anonymous.get(f"/s/{token}/items/{item.pk}/"))
    # Anonymous visitors are sent to the login page, never to the judge API.
    response = anonymous.post(f"/runs/{run.pk}/items/{item.pk}/log/")
    assert response.status_code == 302 and response["Location"].startswith("/login/")
    item.refresh_from_db()
    assert item.log_detail is None


# --- Export -------------------------------------------------------------------------------------------


def rows_of(response: object) -> list[list[str]]:
    data = b"".join(response.streaming_content).decode()  # type: ignore[attr-defined]
    return list(csv.reader(io.StringIO(data, newline="")))


def test_export_streams_the_whole_run_or_the_filtered_view(logged_in: Client) -> None:
    run = hand_run()
    response = logged_in.get(f"/runs/{run.pk}/export/?format=csv")
    assert response.status_code == 200 and response.streaming
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == f'attachment; filename="docket-run-{run.pk}-nightly.csv"'
    rows = rows_of(response)
    assert [row[0] for row in rows[1:]] == ["1", "2", "3", "4", "5", "6"]  # the whole run, in row order
    failed = rows_of(logged_in.get(f"/runs/{run.pk}/export/?format=csv&status=failed"))
    assert [row[0] for row in failed[1:]] == ["6"]
    worst = rows_of(logged_in.get(f"/runs/{run.pk}/export/?sort=score:Politeness&max.Politeness=0.6"))
    assert [row[0] for row in worst[1:]] == ["3", "4", "5"]

    jsonl = logged_in.get(f"/runs/{run.pk}/export/?format=jsonl&meta.topic=billing")
    assert jsonl["Content-Type"] == "application/x-ndjson; charset=utf-8"
    assert jsonl["Content-Disposition"].endswith('-filtered.jsonl"')
    records = [json.loads(line) for line in b"".join(jsonl.streaming_content).decode().splitlines()]
    assert [record["position"] for record in records] == [1, 2]
    assert logged_in.get(f"/runs/{run.pk}/export/?format=xlsx").status_code == 400


def test_export_through_share_links(client: Client) -> None:
    run = hand_run()
    open_link = share(run)
    response = client.get(f"/s/{open_link}/export/?format=csv")
    assert response.status_code == 200 and response["Cache-Control"] == "private, no-store"
    assert len(rows_of(response)) == 7
    # A link that hides the text exports the rest: scores and metadata, no text, no justifications.
    hiding = share(run, hide_text=True)
    rows = rows_of(client.get(f"/s/{hiding}/export/?format=csv"))
    assert rows[0] == ["position", "status", "error", "topic", "Politeness score", "Concision score"]
    assert [row[0] for row in rows[1:]] == ["1", "2", "3", "4", "5", "6"]


# --- Compare -------------------------------------------------------------------------------------------


def test_compare_without_runs_shows_a_filterable_picker(logged_in: Client) -> None:
    first = build_run({"Politeness": [0.5]}, name="alpha release")
    second = build_run({"Politeness": [0.5]}, name="beta release")
    body = text_of(logged_in.get("/runs/compare/"))
    assert "Choose two runs" in body
    assert f'<option value="{first.pk}"' in body and f'<option value="{second.pk}"' in body
    filtered = text_of(logged_in.get("/runs/compare/?q=beta"))
    assert f'<option value="{second.pk}"' in filtered and f'<option value="{first.pk}"' not in filtered
    for query in ("?a=abc&b=", f"?a={first.pk}&b=999999", "?a=-1&b=2"):
        page = logged_in.get(f"/runs/compare/{query}")
        assert page.status_code == 200
        assert "Choose two runs" in text_of(page)
    assert "There is no run &quot;999999&quot; to use as B." in text_of(
        logged_in.get(f"/runs/compare/?a={first.pk}&b=999999")
    )


def test_compare_shows_the_paired_difference_and_the_pass_to_fail_items(logged_in: Client) -> None:
    a = build_run({"Politeness": [0.2, 0.5, 0.9, 0.4]}, name="before")
    b = build_run(
        {"Politeness": [0.6, 0.3, 0.9, 0.8]},
        dataset=a.dataset,
        judge=a.judge,
        name="after",
        justification=lambda name, position, score: f"B thinks row {position} is worth {score}",
    )
    body = text_of(logged_in.get(f"/runs/compare/?a={a.pk}&b={b.pk}"))
    # Worked by hand in tests/evals/test_compare.py: d̄ = 0.15, 95% interval -0.327 to 0.627.
    assert "+0.150" in body and "-0.327 to 0.627" in body
    assert "no significant difference" in body
    assert "Read this comparison with care" not in body
    assert "Passed in A, fail in B" in body and "1 pass → fail" in body
    assert "Politeness: 0.5" in body and "B thinks row 1 is worth 0.3" in body
    item_a, item_b = a.items.get(position=1), b.items.get(position=1)
    assert (
        f'href="/runs/{a.pk}/items/{item_a.pk}/"' in body
        and f'href="/runs/{b.pk}/items/{item_b.pk}/"' in body
    )
    assert f'href="/runs/compare/?a={b.pk}&amp;b={a.pk}"' in body  # swap


def test_compare_warns_when_judges_and_item_sets_differ(logged_in: Client) -> None:
    a = build_run({"Politeness": [0.2, 0.5, 0.9]}, requests=["one", "two", "three"], responses=["ok"] * 3)
    b = build_run({"Politeness": [0.3, 0.6]}, requests=["two", "four"], responses=["ok"] * 2)
    body = text_of(logged_in.get(f"/runs/compare/?a={a.pk}&b={b.pk}"))
    assert "Read this comparison with care" in body
    assert "different judges" in body
    assert "1 pair by input, 2 only in A, 1 only in B" in body


def test_the_results_pages_are_read_with_get_only(logged_in: Client) -> None:
    run = hand_run()
    item = run.items.first()
    assert item is not None
    for url in (f"/runs/{run.pk}/stats/", f"/runs/{run.pk}/items/{item.pk}/", f"/runs/{run.pk}/export/"):
        assert logged_in.get(url).status_code == 200, url
        assert logged_in.post(url).status_code == 405, url
