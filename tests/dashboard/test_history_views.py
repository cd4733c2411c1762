"""The history page of a dataset family: an SVG chart and a table per evaluator, links to each compare,
the one-run family, runs left out, and who may see it."""

from __future__ import annotations

import html
import re
import secrets

import pytest
from django.test import Client

from dashboard.views.history import run_labels
from evals.models import Run, ShareLink
from tests.factories import QUESTIONS, build_run, make_judge, run_over

pytestmark = pytest.mark.django_db

HOSTILE_NAME = '<script>alert("run")</script>'


def text_of(response: object) -> str:
    return response.content.decode()  # type: ignore[attr-defined]


def family_of_three() -> list[Run]:
    judge = make_judge("Support safety", evaluators=["Politeness", "Concision"])
    scores = [
        {"Politeness": [0.2, 0.5, 0.9, 0.4], "Concision": [0.5, 0.5, 0.5, 0.5]},
        {"Politeness": [0.6, 0.3, 0.9, 0.8], "Concision": [0.6, 0.6, 0.6, 0.6]},
        {"Politeness": [0.7, 0.6, 0.9, 0.8], "Concision": [0.7, 0.7, 0.7, 0.7]},
    ]
    return [
        run_over(QUESTIONS[:4], judge=judge, scores=scores[number], name=f"release {number + 1}")
        for number in range(3)
    ]


def svg_of(body: str, index: int = 1) -> str:
    start = body.index(f'aria-labelledby="trend-{index}-title')
    start = body.rindex("<svg", 0, start)
    return body[start : body.index("</svg>", start)]


def test_history_shows_a_chart_and_a_table_per_evaluator_linking_to_each_compare(logged_in: Client) -> None:
    v1, v2, v3 = family_of_three()
    response = logged_in.get(f"/runs/{v2.pk}/history/")
    assert response.status_code == 200
    body = text_of(response)
    assert "<title>History · Support safety on release 2 rows and 2 related · Docket</title>" in body
    assert body.count('role="img"') == 2  # one chart per evaluator
    svg = svg_of(body)
    assert "Mean Politeness score per run, with 95% intervals" in svg
    # Three runs: one line through three points, each with its interval and a hover title.
    assert svg.count("<polyline") == 1 and svg.count("<circle") == 3
    assert svg.count('class="interval"') == 9  # a bar and two caps per point
    # Politeness 0.5, 0.65, 0.75. Release 1: deviations -.3, 0, .4, -.1; s² = .26 / 3; s / √4 = .147196;
    # × t(.975, 3) = 3.182446 gives .468443: from .032 to .968.
    assert "release 1 · " in svg and ": mean 0.500, 95% interval 0.032 to 0.968, n = 4" in svg
    assert ": mean 0.650, " in svg and ": mean 0.750, " in svg
    assert (
        "Mean score of Politeness per run, oldest first, on a scale of 0 to 1: release 1 0.50; release 2 0.65; release 3 0.75."
        in svg
    )
    # y from 0 to 1 with gridlines, runs labelled along x.
    for tick in ("0.0", "0.2", "0.4", "0.6", "0.8", "1.0"):
        assert f">{tick}</text>" in svg
    assert ">release 1</text>" in svg and ">release 3</text>" in svg
    # The table: each run linked, with its change from the previous run and a link to that compare.
    assert f'href="/runs/{v1.pk}/"' in body and f'href="/runs/{v3.pk}/"' in body
    assert f'href="/runs/compare/?a={v1.pk}&amp;b={v2.pk}"' in body
    assert f'href="/runs/compare/?a={v2.pk}&amp;b={v3.pk}"' in body
    assert f"?a={v1.pk}&amp;b={v3.pk}" not in body
    assert "+0.150" in body and "+0.100" in body
    assert "0.032 – 0.968" in body
    assert "this run" in body


def test_a_family_of_one_run_says_so(logged_in: Client) -> None:
    lonely = run_over(QUESTIONS[:4], name="only one")
    body = text_of(logged_in.get(f"/runs/{lonely.pk}/history/"))
    assert "Only this run so far" in body
    assert "Upload the next version’s answers with the same questions or key column" in body
    assert '<svg class="histogram trend-chart"' not in body
    # Its own numbers still show.
    assert "0.50" in body


def test_runs_not_finished_are_left_out_and_a_missing_evaluator_leaves_a_gap(logged_in: Client) -> None:
    judge = make_judge(evaluators=["Politeness", "Concision"])
    v1 = run_over(QUESTIONS[:3], judge=judge, scores={"Politeness": [0.5] * 3, "Concision": [0.4] * 3})
    v2 = run_over(QUESTIONS[:3], judge=judge, scores={"Politeness": [0.6] * 3}, name="no concision")
    v3 = run_over(QUESTIONS[:3], judge=judge, scores={"Politeness": [0.7] * 3, "Concision": [0.8] * 3})
    running = build_run({"Politeness": [0.1] * 3}, dataset=v1.dataset, judge=judge, name="still going")
    Run.objects.filter(pk=running.pk).update(status=Run.Status.RUNNING)
    body = text_of(logged_in.get(f"/runs/{v3.pk}/history/"))
    assert "still going" not in body
    concision = svg_of(body, 2)
    # Two points and no line across the run that has no Concision score.
    assert concision.count("<circle") == 2 and "<polyline" not in concision
    assert "1 run without scores from Concision" in concision
    assert "Not scored by Concision in this run" in body
    # Its change is against the last run that has a Concision score.
    assert f"?a={v1.pk}&amp;b={v3.pk}" in body and "+0.400" in body
    assert f"?a={v2.pk}&amp;b={v3.pk}" in body  # Politeness


def test_the_page_of_a_running_run_says_its_figures_are_partial(logged_in: Client) -> None:
    [_, _, v3] = family_of_three()
    Run.objects.filter(pk=v3.pk).update(status=Run.Status.RUNNING)
    body = text_of(logged_in.get(f"/runs/{v3.pk}/history/"))
    assert "release 3 is running: its figures cover the items judged so far." in body


def test_history_needs_a_login_and_no_share_link_reaches_it(client: Client) -> None:
    [run, *_] = family_of_three()
    response = client.get(f"/runs/{run.pk}/history/")
    assert response.status_code == 302
    assert response["Location"].startswith("/login/?next=")
    token = secrets.token_urlsafe(32)
    ShareLink.objects.create(run=run, token_hash=ShareLink.hash_token(token))
    assert client.get(f"/s/{token}/history/").status_code == 404


def test_a_missing_run_is_not_found(logged_in: Client) -> None:
    assert logged_in.get("/runs/999999/history/").status_code == 404


def test_hostile_run_dataset_and_evaluator_names_are_escaped(logged_in: Client) -> None:
    judge = make_judge(HOSTILE_NAME, evaluators=[HOSTILE_NAME])
    first = run_over(QUESTIONS[:3], judge=judge, scores={HOSTILE_NAME: [0.5] * 3}, name=HOSTILE_NAME)
    run_over(QUESTIONS[:3], judge=judge, scores={HOSTILE_NAME: [0.6] * 3}, name=HOSTILE_NAME)
    body = text_of(logged_in.get(f"/runs/{first.pk}/history/"))
    assert "<script>" not in body.split("</head>")[1]
    assert html.escape(HOSTILE_NAME, quote=False) in body or html.escape(HOSTILE_NAME) in body
    # The hover titles in the chart are escaped too.
    assert re.search(r"<title>&lt;script&gt;alert\(&quot;run&quot;\)&lt;/script&gt; · ", body)


def test_the_history_of_a_retry_is_that_of_the_run_it_retried(logged_in: Client) -> None:
    [v1, v2, _] = family_of_three()
    retry = build_run(
        {"Politeness": [0.9], "Concision": [0.9]},
        dataset=v1.dataset,
        judge=v1.judge,
        retry_of=v1,
        positions=[0],
        name="retry of release 1",
    )
    body = text_of(logged_in.get(f"/runs/{retry.pk}/history/"))
    assert "retry of release 1 is a retry of" in body and f'<a href="/runs/{v1.pk}/">release 1</a>' in body
    # Its verdict replaces release 1's first row: Politeness 0.9, 0.5, 0.9, 0.4, mean 0.675.
    assert "release 1 · " in body and ": mean 0.675, " in body
    assert f"?a={v1.pk}&amp;b={v2.pk}" in body
    assert f'/runs/{retry.pk}/"' not in body.split("</nav>", 2)[-1]  # no row of its own


def test_axis_labels_keep_the_words_that_tell_the_runs_apart() -> None:
    def named(*names: str) -> list[Run]:
        return [Run(pk=number, name=name) for number, name in enumerate(names, start=1)]

    assert run_labels(named("support-bot v1.0 answers", "support-bot v2.0 answers")) == ["v1.0", "v2.0"]
    # A bare number says less than the name it came from.
    assert run_labels(named("release 1", "release 2")) == ["release 1", "release 2"]
    assert run_labels(named("", "a rather long run name")) == ["#1", "a rather…"]
