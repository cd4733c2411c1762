"""The pages with human corrections: the Judge | With human corrections toggle on statistics and compare,
exports with reviews, the reviews on an item's page; and what a share link may not see of them."""

from __future__ import annotations

import csv
import html
import io
import json
import re
import secrets

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.test import Client

from evals.models import Item, Run, ShareLink
from evals.services.reviews import review_save
from tests.factories import build_run

pytestmark = pytest.mark.django_db

COMMENT = "Rude in the last line, sorry"


def person(name: str) -> AbstractBaseUser:
    user, _ = get_user_model().objects.get_or_create(username=name)
    return user


def review(
    run: Run, position: int, who: str, label: str, score: float | None = None, comment: str = ""
) -> None:
    review_save(
        item=Item.objects.get(run=run, position=position),
        evaluator="Politeness",
        reviewer=person(who),
        label=label,
        score=score,
        comment=comment,
    )


def reviewed_run(**options: object) -> Run:
    """Politeness 0.2, 0.4, 0.6, 0.8, 1.0 at 0.5 (judge: mean 0.60, 3 of 5 pass). Reviewed by grace:
    row 1 pass at 0.7, row 4 fail (with a comment). Corrected: 0.7, 0.4, 0.6, 0.8, 1.0, mean 0.70;
    passes rows 1, 3, 5: 3 of 5 (60%); two verdicts turned over."""
    run = build_run(
        {"Politeness": [0.2, 0.4, 0.6, 0.8, 1.0]},
        name="nightly",
        thresholds={"Politeness": 0.5},
        **options,  # type: ignore[arg-type]
    )
    review(run, 0, "grace", "pass", 0.7)
    review(run, 3, "grace", "fail", comment=COMMENT)
    return run


def share(run: Run) -> str:
    token = secrets.token_urlsafe(32)
    ShareLink.objects.create(run=run, token_hash=ShareLink.hash_token(token))
    return token


def text_of(response: object) -> str:
    return html.unescape(response.content.decode())  # type: ignore[attr-defined]


def streamed(response: object) -> str:
    return b"".join(response.streaming_content).decode()  # type: ignore[attr-defined]


def overview_mean(body: str) -> str:
    """The mean in the statistics overview's first row."""
    row = body[body.index('<table class="data stats-overview">') :]
    row = row[row.index("<tbody>") :]
    found = re.search(r'<span class="score [^"]*">([0-9.]+)</span>', row)
    assert found, row[:500]
    return found.group(1)


# --- Statistics ----------------------------------------------------------------------------------------


def test_the_statistics_toggle_shows_once_someone_reviewed_a_score(logged_in: Client) -> None:
    run = build_run({"Politeness": [0.2, 0.4]}, thresholds={"Politeness": 0.5})
    body = text_of(logged_in.get(f"/runs/{run.pk}/stats/"))
    assert "With human corrections" not in body
    review(run, 0, "grace", "pass")
    body = text_of(logged_in.get(f"/runs/{run.pk}/stats/"))
    assert "With human corrections" in body and "1 review" in body
    assert 'href="?corrected=1"' in body


def test_statistics_with_human_corrections_use_the_reviewers_verdicts(logged_in: Client) -> None:
    run = reviewed_run()
    judge = text_of(logged_in.get(f"/runs/{run.pk}/stats/"))
    assert overview_mean(judge) == "0.60"
    assert "turned over <strong>2</strong>" in judge  # said in the judge's view too, with a link
    assert "See the figures with human corrections" in judge

    page = logged_in.get(f"/runs/{run.pk}/stats/?corrected=1&threshold=0.5&slice=")
    assert page.status_code == 200
    body = text_of(page)
    assert overview_mean(body) == "0.70"
    assert "with human corrections" in body and "Each reviewed score counts as its reviewer said" in body
    # The other links of the page keep the corrections (and the toggle keeps the threshold).
    assert 'name="corrected" value="1"' in body
    assert re.search(r'href="/runs/\d+/export/\?format=csv&corrected=1"', body)
    assert 'href="?threshold=0.5&slice="' in body  # "Judge": the same page without corrections
    assert "2</strong> of the judge’s verdicts" in body


def test_a_bad_corrected_value_reads_as_the_judges_figures(logged_in: Client) -> None:
    run = reviewed_run()
    for value in ("yes", "", "2", "%00"):
        page = logged_in.get(f"/runs/{run.pk}/stats/?corrected={value}")
        assert page.status_code == 200
        assert overview_mean(text_of(page)) == "0.60"


def test_the_latest_view_tabs_keep_the_corrections(logged_in: Client) -> None:
    run = reviewed_run()
    build_run({"Politeness": [0.9]}, dataset=run.dataset, judge=run.judge, retry_of=run, positions=[4])
    body = text_of(logged_in.get(f"/runs/{run.pk}/stats/?corrected=1"))
    assert 'href="?view=latest&corrected=1"' in body and 'href="?corrected=1"' in body


# --- Share links ---------------------------------------------------------------------------------------


def test_a_share_link_reads_the_judges_figures_and_never_sees_who_reviewed(client: Client) -> None:
    run = reviewed_run()
    token = share(run)
    item = Item.objects.get(run=run, position=3)
    responses = {
        url: client.get(url)
        for url in (
            f"/s/{token}/stats/",
            f"/s/{token}/stats/?corrected=1",
            f"/s/{token}/items/{item.pk}/",
            f"/s/{token}/export/?format=csv&corrected=1",
            f"/s/{token}/export/?format=jsonl",
        )
    }
    pages = {}
    for url, response in responses.items():
        assert response.status_code == 200, url
        body = streamed(response) if response.streaming else text_of(response)
        assert "grace" not in body and COMMENT not in body, url
        assert "/review/" not in body, url
        pages[url] = body
    stats = pages[f"/s/{token}/stats/?corrected=1"]
    assert overview_mean(stats) == "0.60" and "With human corrections" not in stats
    # The item page says how the score was reviewed, not by whom.
    assert "Reviewed: <strong>fail</strong>" in pages[f"/s/{token}/items/{item.pk}/"]
    export = f"/s/{token}/export/?format=csv&corrected=1"
    assert "corrected" not in responses[export]["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(pages[export])))
    assert [row["Politeness human label"] for row in rows] == ["pass", "", "", "fail", ""]


# --- Exports and the item page -------------------------------------------------------------------------


def test_a_teammates_corrected_export_names_the_reviewers(logged_in: Client) -> None:
    run = reviewed_run()
    response = logged_in.get(f"/runs/{run.pk}/export/?format=csv&corrected=1")
    assert response.status_code == 200
    assert "-corrected.csv" in response["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(streamed(response))))
    assert [row["Politeness corrected score"] for row in rows] == ["0.7", "0.4", "0.6", "0.8", "1.0"]
    assert [row["Politeness reviewer"] for row in rows] == ["grace", "", "", "grace", ""]
    assert rows[3]["Politeness review comment"] == COMMENT
    jsonl = logged_in.get(f"/runs/{run.pk}/export/?format=jsonl")
    first = json.loads(streamed(jsonl).splitlines()[0])
    assert first["scores"]["Politeness"]["review"]["reviewer"] == "grace"


def test_an_items_page_lists_its_reviews_newest_first_with_a_link_to_review_it(logged_in: Client) -> None:
    run = reviewed_run()
    review(run, 3, "hopper", "pass", 0.9, comment="Reads fine to me.")
    item = Item.objects.get(run=run, position=3)
    body = text_of(logged_in.get(f"/runs/{run.pk}/items/{item.pk}/"))
    assert (
        "2 people reviewed this score; the most recently changed review counts: <strong>pass</strong>" in body
    )
    assert body.index("hopper") < body.index("grace") < body.index(COMMENT)
    assert "Reads fine to me." in body and "(the judge said fail)" not in body
    assert f'href="/runs/{run.pk}/review/?item={item.pk}"' in body
    unreviewed = Item.objects.get(run=run, position=2)
    body = text_of(logged_in.get(f"/runs/{run.pk}/items/{unreviewed.pk}/"))
    assert "Not reviewed yet." in body and f"/review/?item={unreviewed.pk}" in body


# --- Compare -------------------------------------------------------------------------------------------


def compared() -> tuple[Run, Run]:
    """A 0.2, 0.6, 0.9, 0.4 and B 0.6, 0.3, 0.9, 0.8 at 0.5. In B, grace passes row 2 at 0.6 and fails
    row 3. Judge: B - A = 0.4, -0.3, 0, 0.4 (mean +0.125). Corrected: 0.4, 0, 0, 0.4 (mean +0.200)."""
    a = build_run({"Politeness": [0.2, 0.6, 0.9, 0.4]}, thresholds={"Politeness": 0.5}, name="before")
    b = build_run(
        {"Politeness": [0.6, 0.3, 0.9, 0.8]},
        dataset=a.dataset,
        judge=a.judge,
        thresholds={"Politeness": 0.5},
        name="after",
    )
    review(b, 1, "grace", "pass", 0.6)
    review(b, 2, "grace", "fail")
    return a, b


def test_compare_with_human_corrections(logged_in: Client) -> None:
    a, b = compared()
    judge = text_of(logged_in.get(f"/runs/compare/?a={a.pk}&b={b.pk}"))
    assert "+0.125" in judge and "With human corrections" in judge and "2 reviews" in judge
    body = text_of(logged_in.get(f"/runs/compare/?a={a.pk}&b={b.pk}&corrected=1"))
    assert "+0.200" in body and "+0.125" not in body
    assert "With human corrections, on both sides." in body
    assert "reviewed: 0 in A, 2 in B" in body
    # Links and forms keep the corrections: swap, item by item, the threshold form.
    assert f'href="/runs/compare/?a={b.pk}&b={a.pk}&corrected=1"' in body
    assert f"/runs/compare/items/?a={a.pk}&b={b.pk}&evaluator=Politeness&corrected=1" in body
    assert 'name="corrected" value="1"' in body
    # Row 3 passed in A and fails in B by grace's label: one pass -> fail (the judge had row 2 instead).
    assert "1 pass → fail" in body
    # Its score did not drop (0.9 in both): the page says why it is listed instead of "−0.00".
    assert "no drop in score: a reviewer’s verdict" in body and "−0.00" not in body


def test_compare_item_by_item_with_human_corrections(logged_in: Client) -> None:
    a, b = compared()
    url = f"/runs/compare/items/?a={a.pk}&b={b.pk}&evaluator=Politeness&corrected=1"
    page = logged_in.get(url)
    assert page.status_code == 200
    body = text_of(page)
    assert "reviewed: pass in B" in body and "reviewed: fail in B" in body
    assert "reviewed: pass, the judge gave 0.30" in body  # B row 2, corrected to 0.6
    assert "with human corrections (0 reviewed in A, 2 in B)" in body
    # Rows 2 and 3 are unchanged once corrected; only rows 1 and 4 improved.
    tabs = body[body.index('class="tabs compare-items-tabs"') :]
    assert re.search(r"Improved <span[^>]*>2</span>", tabs) and re.search(
        r"Regressed <span[^>]*>0</span>", tabs
    )
    assert "corrected=1" in body[body.index('aria-label="Which pairs"') :]
    judge = text_of(logged_in.get(url.replace("&corrected=1", "")))
    assert re.search(r"Regressed <span[^>]*>1</span>", judge)
