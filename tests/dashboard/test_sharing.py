"""Share links: one run, read-only, revocable, hashed, never cached."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from evals.models import Dataset, Judge, Run, ShareLink
from evals.pump import pump
from evals.services.runs import run_create
from evals.services.sharing import share_link_create
from tests.conftest import SUPPORT_JUDGE

pytestmark = pytest.mark.usefixtures("offline_judge")


def finished_run(judges: dict[str, Judge], make_dataset: Callable[..., Dataset], name: str, text: str) -> Run:
    dataset = make_dataset(6, name=f"{name} data", response=f"{text} response")
    run = run_create(dataset=dataset, judge=judges[SUPPORT_JUDGE], name=name)
    pump(budget_seconds=30, concurrency=1, requeue=False)
    run.refresh_from_db()
    assert run.is_finished
    return run


def test_creating_a_link_shows_it_once_and_keeps_only_its_hash(
    logged_in: Client, judges: dict[str, Judge], make_dataset: Callable[..., Dataset]
) -> None:
    run = finished_run(judges, make_dataset, "alpha", "Alpha")
    response = logged_in.post(
        f"/runs/{run.pk}/share/", {"label": "Acme review", "expires_in": "7"}, follow=True
    )
    html = response.content.decode()
    url = re.search(r'value="(http://testserver/s/([^/"]+)/)"', html)
    assert url is not None, html
    token = url.group(2)
    link = ShareLink.objects.get()
    assert link.token_hash == ShareLink.hash_token(token) != token
    assert token not in str(ShareLink.objects.values_list().get())
    assert (
        link.label == "Acme review"
        and link.expires_at
        and link.expires_at > timezone.now() + timedelta(days=6)
    )
    again = logged_in.get(f"/runs/{run.pk}/share/").content.decode()
    assert token not in again and "Acme review" in again


def test_a_link_opens_its_run_read_only_without_a_login(
    client: Client, judges: dict[str, Judge], make_dataset: Callable[..., Dataset]
) -> None:
    run = finished_run(judges, make_dataset, "alpha", "Alpha")
    other = finished_run(judges, make_dataset, "beta", "Beta")
    link, token = share_link_create(run=run, created_by=None, label="for Acme")
    response = client.get(f"/s/{token}/")
    assert response.status_code == 200
    assert response["Cache-Control"] == "private, no-store"
    assert "noindex" in response["X-Robots-Tag"]
    html = response.content.decode()
    assert "Alpha response" in html and "Beta" not in html
    assert "Cancel run" not in html and "/runs/" not in html and "Log out" not in html
    assert f"/s/{token}/live/" not in html  # finished: no polling
    link.refresh_from_db()
    assert link.use_count == 1 and link.last_used_at is not None
    # Nothing else is reachable: the team pages still want a login, and so do writes.
    assert client.get(f"/runs/{other.pk}/").status_code == 302
    assert client.post(f"/runs/{run.pk}/retry/").status_code == 302
    assert not Run.objects.filter(retry_of=run).exists()


def test_a_link_cannot_post(
    client: Client, judges: dict[str, Judge], make_dataset: Callable[..., Dataset]
) -> None:
    run = finished_run(judges, make_dataset, "alpha", "Alpha")
    _, token = share_link_create(run=run, created_by=None)
    for path in (f"/s/{token}/", f"/s/{token}/live/"):
        response = client.post(path)
        assert response.status_code == 405
        assert response["Cache-Control"] == "private, no-store"


@pytest.mark.parametrize("how", ["revoked", "expired", "wrong"])
def test_revoked_expired_and_wrong_links_get_the_same_not_found_page(
    client: Client,
    logged_in: Client,
    judges: dict[str, Judge],
    make_dataset: Callable[..., Dataset],
    how: str,
) -> None:
    run = finished_run(judges, make_dataset, "alpha", "Alpha")
    link, token = share_link_create(run=run, created_by=None)
    assert client.get(f"/s/{token}/").status_code == 200
    if how == "revoked":
        logged_in.post(f"/runs/{run.pk}/share/{link.pk}/revoke/")
    elif how == "expired":
        ShareLink.objects.filter(pk=link.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    else:
        token = token[:-2] + ("aa" if not token.endswith("aa") else "bb")
    client.logout()
    anonymous = Client()
    for path in (f"/s/{token}/", f"/s/{token}/live/?cursor=0"):
        response = anonymous.get(path)
        assert response.status_code == 404
        assert "There is nothing here" in response.content.decode()
        assert "Alpha" not in response.content.decode()


def test_the_live_endpoint_honours_the_link(
    client: Client, judges: dict[str, Judge], make_dataset: Callable[..., Dataset]
) -> None:
    dataset = make_dataset(4, response="Gamma response")
    run = run_create(dataset=dataset, judge=judges[SUPPORT_JUDGE])
    _, token = share_link_create(run=run, created_by=None)
    page = client.get(f"/s/{token}/").content.decode()
    live_url = re.search(r'hx-get="([^"]+)"', page)
    assert live_url is not None and live_url.group(1).startswith(f"/s/{token}/live/?cursor=")
    url = live_url.group(1).replace("&amp;", "&")
    assert client.get(url).status_code == 204
    pump(budget_seconds=30, concurrency=1, requeue=False)
    response = client.get(url)
    assert response.status_code == 200
    assert response["Cache-Control"] == "private, no-store"
    assert 'hx-swap-oob="true"' in response.content.decode()
    assert "Retry" not in response.content.decode()
    # Polls are not visits: only the page load counted.
    assert ShareLink.objects.get().use_count == 1


def test_hide_text_links_show_scores_but_not_requests_and_responses(
    client: Client, judges: dict[str, Judge], make_dataset: Callable[..., Dataset]
) -> None:
    run = finished_run(judges, make_dataset, "alpha", "Secret")
    _, token = share_link_create(run=run, created_by=None, hide_text=True)
    html = client.get(f"/s/{token}/").content.decode()
    assert "Secret response" not in html and "How do I reset" not in html
    assert "hidden by this share link" in html
    assert 'class="score score-' in html


def test_the_share_page_wants_a_login_and_revoke_wants_post(
    client: Client, logged_in: Client, judges: dict[str, Judge], make_dataset: Callable[..., Dataset]
) -> None:
    run = finished_run(judges, make_dataset, "alpha", "Alpha")
    link, _ = share_link_create(run=run, created_by=None)
    assert logged_in.get(f"/runs/{run.pk}/share/{link.pk}/revoke/").status_code == 405
    assert Client().get(f"/runs/{run.pk}/share/").status_code == 302
