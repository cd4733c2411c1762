"""Share links: one run, read-only, revocable, hashed, never cached."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import is_dataclass
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Model, QuerySet
from django.db.models.base import ModelState
from django.http.response import HttpResponseBase
from django.template import Context
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.utils import timezone

from evals.models import Dataset, Example, Item, Judge, RemoteBatch, Run, Score, ShareLink
from evals.pump import pump
from evals.services.runs import run_create
from evals.services.sharing import share_link_create
from tests.conftest import SUPPORT_JUDGE
from tests.factories import build_run

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


def test_the_create_form_asks_whether_a_hidden_text_link_shows_justifications(
    logged_in: Client, judges: dict[str, Judge], make_dataset: Callable[..., Dataset]
) -> None:
    run = finished_run(judges, make_dataset, "alpha", "Alpha")
    form = logged_in.get(f"/runs/{run.pk}/share/").content.decode()
    assert "Show justifications (they may quote the text)" in form
    logged_in.post(f"/runs/{run.pk}/share/", {"label": "hidden", "hide_text": "on"})
    logged_in.post(
        f"/runs/{run.pk}/share/", {"label": "reasons", "hide_text": "on", "show_justifications": "on"}
    )
    # Without hidden text the question does not arise: the text shows, and so do the justifications.
    logged_in.post(f"/runs/{run.pk}/share/", {"label": "open", "show_justifications": "on"})
    links = {link.label: (link.hide_text, link.show_justifications) for link in ShareLink.objects.all()}
    assert links == {"hidden": (True, False), "reasons": (True, True), "open": (False, False)}
    listing = logged_in.get(f"/runs/{run.pk}/share/").content.decode()
    assert "text hidden, justifications hidden" in listing and "text hidden, justifications shown" in listing


# --- What a link lets through: every shared route, every export, probed for hidden strings --------------

# Distinctive strings, each in exactly one place of one row; a probe is each one minus its last character,
# so a page that echoes the search box never contains the whole string.
HIDDEN_TEXT = {
    "request": "Zq-request-Kw81",
    "response": "Zq-response-Kw82",
    "context": "Zq-context-Kw83",
    "expected output": "Zq-expected-Kw84",
    "turn": "Zq-turn-Kw85",
    "system prompt": "Zq-system-Kw86",
    "key": "Zq-key-Kw88",
}
JUSTIFICATION = "Zq-justification-Kw87"
EVALUATOR_ID = "5d6c1c7e-0d7b-4f8e-9a51-7a1f3e2b9c01"
LOG_ID = "8a2f0b3c-4d5e-4f60-8172-93a4b5c6d7e8"
BATCH_ID = "c0ffee00-1234-4abc-9def-0123456789ab"
JUDGE_VERSION = "f1e2d3c4-b5a6-4978-8a9b-0c1d2e3f4a5b"
OWNER = "zelda-the-owner"
# What each variant of a shared route is asked for: every route gets every one, so a route added later
# is probed the same way without touching this test.
VARIANTS = [
    "",
    "?view=latest",
    "?sort=-score:Politeness&view=latest",
    "?slice=topic",
    "?format=csv",
    "?format=jsonl",
    *(f"?q={secret[:-1]}" for secret in [*HIDDEN_TEXT.values(), JUSTIFICATION]),
    *(f"?q={secret[:-1]}&format=csv" for secret in [*HIDDEN_TEXT.values(), JUSTIFICATION]),
]


def secret_run(user: AbstractBaseUser) -> tuple[Run, list[Item]]:
    """A finished run whose one judged row carries every hidden string, a failed row whose error
    quotes the request and names a remote batch, and a retry of that row."""
    run = build_run(
        {"Politeness": [0.8, None]},
        name="secret run",
        requests=[HIDDEN_TEXT["request"], "plain request"],
        responses=[HIDDEN_TEXT["response"], "plain response"],
        metadata=lambda position: {"topic": "billing"},
        justification=lambda name, position, score: f"Because {JUSTIFICATION} says so.",
        example_fields=lambda position: {
            "contexts": [HIDDEN_TEXT["context"]],
            "expected_output": HIDDEN_TEXT["expected output"],
            "turns": [
                {"role": "user", "content": HIDDEN_TEXT["turn"]},
                {"role": "assistant", "content": "ok"},
            ],
            "system_prompt": HIDDEN_TEXT["system prompt"],
        },
    )
    Run.objects.filter(pk=run.pk).update(
        created_by=user,
        judge_version_id=JUDGE_VERSION,
        last_error=f"The judge API rejected GET /v1/batch-executions/{BATCH_ID}/ (400): {HIDDEN_TEXT['request']}",
    )
    Score.objects.filter(run=run).update(evaluator_id=EVALUATOR_ID)
    Item.objects.filter(run=run, status=Item.Status.COMPLETED).update(execution_log_id=LOG_ID)
    Item.objects.filter(run=run, status=Item.Status.FAILED).update(
        error_message=f"The judge API rejected batch {BATCH_ID}: bad row {HIDDEN_TEXT['request']}"
    )
    RemoteBatch.objects.filter(run=run).update(remote_id=BATCH_ID)
    Example.objects.filter(dataset=run.dataset, position=0).update(input_key=f"k:{HIDDEN_TEXT['key']}")
    # A batch still retrying after an error: the live header lists those.
    RemoteBatch.objects.create(
        run=run,
        position=7,
        status=RemoteBatch.Status.WAITING,
        attempts=2,
        last_error=f"Lookup of {BATCH_ID} failed: {HIDDEN_TEXT['request']}",
    )
    retry = build_run(
        {"Politeness": [0.4]},
        dataset=run.dataset,
        judge=run.judge,
        retry_of=run,
        positions=[1],
        justification=lambda name, position, score: f"Retry: {JUSTIFICATION}.",
    )
    Score.objects.filter(run=retry).update(evaluator_id=EVALUATOR_ID)
    Item.objects.filter(run=retry).update(execution_log_id=LOG_ID)
    Run.objects.filter(pk=retry.pk).update(last_error=f"Batch {BATCH_ID}: {HIDDEN_TEXT['response']}")
    run.refresh_from_db()
    return run, [*run.items.order_by("position"), *retry.items.all()]


def shared_routes() -> dict[str, set[str]]:
    """Every route a share link reaches (named `shared_run_*`), with the parameters it takes."""
    routes: dict[str, set[str]] = {}

    def walk(patterns: list[URLPattern | URLResolver]) -> None:
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                walk(pattern.url_patterns)
            elif pattern.name and pattern.name.startswith("shared_run_"):
                routes[pattern.name] = set(getattr(pattern.pattern, "converters", {}))

    walk(get_resolver().url_patterns)
    return routes


def shared_urls(token: str, items: list[Item]) -> list[str]:
    """Every shared route of the link, once per item where the route takes one, each with every variant."""
    urls = []
    for name, parameters in shared_routes().items():
        unknown = parameters - {"token", "item_pk"}
        assert not unknown, f"{name} takes {unknown}: teach this test what to pass"
        if "item_pk" in parameters:
            # An item of a retry belongs to the run's page only in the latest-verdict view.
            paths = [
                (
                    reverse(name, kwargs={"token": token, "item_pk": item.pk}),
                    VARIANTS
                    if item.run_id == items[0].run_id
                    else [v for v in VARIANTS if "view=latest" in v],
                )
                for item in items
            ]
        else:
            paths = [(reverse(name, kwargs={"token": token}), VARIANTS)]
        for path, variants in paths:
            urls += [path + variant for variant in variants]
            if name == "shared_run_live":
                rows = ",".join(str(item.pk) for item in items)
                urls += [f"{path}?cursor=-1&rows={rows}", f"{path}?cursor=-1&rows={rows}&view=latest"]
    return urls


def body_of(response: HttpResponseBase) -> str:
    if response.streaming:
        return b"".join(response.streaming_content).decode()  # type: ignore[attr-defined]
    return response.content.decode()  # type: ignore[attr-defined]


def strings_in_context(value: Any, *, seen: set[int] | None = None, depth: int = 0) -> Iterator[str]:
    """Every string a template could reach from its context: through model instances and what they hold
    (related objects, prefetched rows, loaded querysets), dataclasses, lists and dicts. Requests, users
    and the like are left out: they hold no run data."""
    seen = set() if seen is None else seen
    if depth > 12 or id(value) in seen:
        return
    seen.add(id(value))
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, inner in value.items():
            yield from strings_in_context(key, seen=seen, depth=depth + 1)
            yield from strings_in_context(inner, seen=seen, depth=depth + 1)
    elif isinstance(value, list | tuple | set | frozenset):
        for inner in value:
            yield from strings_in_context(inner, seen=seen, depth=depth + 1)
    elif isinstance(value, QuerySet):
        yield from strings_in_context(value._result_cache or [], seen=seen, depth=depth + 1)
    elif _holds_run_data(value):
        yield from strings_in_context(vars(value), seen=seen, depth=depth + 1)


def _holds_run_data(value: Any) -> bool:
    """Model instances (and their state: related objects), dataclasses, and Docket's own objects."""
    if isinstance(value, Model | ModelState):
        return True
    own = is_dataclass(value) or type(value).__module__.startswith(("evals.", "dashboard."))
    return own and hasattr(value, "__dict__")


def context_strings(response: HttpResponseBase) -> str:
    contexts = getattr(response, "context", None)
    if contexts is None:
        return ""
    if isinstance(contexts, Context):
        contexts = [contexts]
    return "\n".join(
        text
        for context in contexts
        for layer in context.dicts
        for key, value in layer.items()
        if key not in ("request", "user", "perms", "messages", "csrf_token")
        for text in strings_in_context(value)
    )


def probe(client: Client, token: str, items: list[Item]) -> dict[str, str]:
    """url -> what it returned (the bytes and the strings its template context could reach)."""
    answers = {}
    for url in shared_urls(token, items):
        response = client.get(url)
        assert response.status_code in (200, 204), f"{url} answered {response.status_code}"
        answers[url] = body_of(response) + "\n" + context_strings(response)
    return answers


INTERNAL = [EVALUATOR_ID, LOG_ID, BATCH_ID, JUDGE_VERSION, OWNER]


@pytest.mark.django_db
@pytest.mark.parametrize("show_justifications", [False, True])
def test_a_hidden_text_link_never_returns_the_hidden_text_on_any_route_or_export(
    client: Client, show_justifications: bool
) -> None:
    user = get_user_model().objects.create_user(username=OWNER)
    run, items = secret_run(user)
    _, token = share_link_create(
        run=run, created_by=user, hide_text=True, show_justifications=show_justifications
    )
    answers = probe(client, token, items)
    assert {url.split("/")[3] for url in answers} >= {"", "live", "stats", "items", "export"}
    for url, text in answers.items():
        for secret in [*HIDDEN_TEXT.values(), *INTERNAL, str(run.uid), run.judge.remote_id]:
            assert secret not in text, f"{url} leaks {secret!r}"
        assert (JUSTIFICATION in text) <= show_justifications, f"{url} leaks the justification"
        assert "/runs/" not in text, f"{url} links to a team page"
    detail = f"/s/{token}/"
    if show_justifications:
        # The search reads the justifications, and only them: a probe of the request finds nothing.
        assert JUSTIFICATION in answers[detail]
        assert "No item matches" not in answers[f"{detail}?q={JUSTIFICATION[:-1]}"]
        for secret in HIDDEN_TEXT.values():
            assert "No item matches" in answers[f"{detail}?q={secret[:-1]}"]
        assert "Search justifications" in answers[detail]
    else:
        assert 'name="q"' not in answers[detail]
    # Exports go without the hidden columns (and say what they hold in their header).
    header = next(csv.reader(io.StringIO(answers[f"/s/{token}/export/?format=csv"])))
    assert "request" not in header and "response" not in header and "execution_log_id" not in header
    assert ("Politeness justification" in header) == show_justifications
    assert "Politeness score" in header and "position" in header
    record = json.loads(answers[f"/s/{token}/export/?format=jsonl"].splitlines()[0])
    assert not {"request", "response", "contexts", "expected_output", "turns", "system_prompt"} & set(record)
    assert record["scores"]["Politeness"]["score"] == 0.8


@pytest.mark.django_db
def test_an_open_link_shows_the_text_but_no_internal_ids(client: Client) -> None:
    """The control for the test above: the same probes do find the text when the link shows it."""
    user = get_user_model().objects.create_user(username=OWNER)
    run, items = secret_run(user)
    _, token = share_link_create(run=run, created_by=user)
    answers = probe(client, token, items)
    everything = "\n".join(answers.values())
    for secret in [*HIDDEN_TEXT.values(), JUSTIFICATION]:
        assert secret in everything, secret
    for url, text in answers.items():
        for secret in [*INTERNAL, str(run.uid), run.judge.remote_id]:
            assert secret not in text, f"{url} shows {secret!r}"
        assert "/runs/" not in text, f"{url} links to a team page"
    # The search reads the request here: its probe finds the row.
    found = answers[f"/s/{token}/?q={HIDDEN_TEXT['request'][:-1]}"]
    assert "No item matches" not in found and HIDDEN_TEXT["request"] in found
    header = next(csv.reader(io.StringIO(answers[f"/s/{token}/export/?format=csv"])))
    assert "request" in header and "Politeness justification" in header
    assert "execution_log_id" not in header
