"""Every page needs a login, except the few that must not: checked over the whole URL map."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import pytest
from django.contrib.auth.models import AbstractBaseUser
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from tests.factories import build_run

# Views that answer without a session, each with a reason.
PUBLIC_PREFIXES = (
    "login/",  # the login page itself
    "judge-api/",  # the offline judge: its own API key
    "admin/",  # Django admin has its own login
    "s/",  # share links: a token in the URL
    "healthz",  # load balancer probe
    "api/v1/",  # the HTTP API: bearer tokens, and a 401 problem document instead of a login redirect
)
# The API's schema and docs are public (they describe the API, hold no data); every other route wants a token.
API_PUBLIC = ("api/v1/openapi.json", "api/v1/docs")


def walk(patterns: list[URLPattern | URLResolver], prefix: str = "") -> Iterator[str]:
    for pattern in patterns:
        route = prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            yield from walk(pattern.url_patterns, route)
        else:
            yield route


def sample_path(route: str) -> str:
    route = re.sub(r"<int:[^>]+>", "1", route)
    route = re.sub(r"<uuid:[^>]+>", str(uuid.uuid4()), route)
    route = re.sub(r"<(?:str:|slug:)?[^>]+>", "x", route)
    return "/" + route.lstrip("^").rstrip("$")


PRIVATE_ROUTES = sorted(
    {route for route in walk(get_resolver().url_patterns) if not route.startswith(PUBLIC_PREFIXES)}
)


@pytest.mark.django_db
@pytest.mark.parametrize("route", PRIVATE_ROUTES)
def test_private_pages_redirect_anonymous_visitors_to_login(client: Client, route: str) -> None:
    path = sample_path(route)
    response = client.get(path)
    assert response.status_code == 302, f"{path} answered {response.status_code} without a login"
    assert response["Location"].startswith("/login/?next=")


API_ROUTES = sorted(
    {
        route
        for route in walk(get_resolver().url_patterns)
        if route.startswith("api/v1/")
        and not route.startswith(API_PUBLIC)
        and "<anypath" not in route
        and route != "api/v1/"  # the root is no endpoint: a 404 problem for anyone
    }
)


@pytest.mark.django_db
@pytest.mark.parametrize("route", API_ROUTES)
def test_api_routes_answer_anonymous_visitors_401(client: Client, route: str) -> None:
    path = sample_path(route)
    for method in ("get", "post", "delete"):  # the first the route takes (a wrong method is a 405 first)
        response = getattr(client, method)(path)
        if response.status_code != 405:
            break
    assert response.status_code == 401, f"{path} answered {response.status_code} without a token"
    assert response["Content-Type"] == "application/problem+json"


def test_the_review_and_calibration_api_routes_are_among_those_checked() -> None:
    # API_ROUTES is read from the URL map: this fails if the reviews router is not mounted.
    assert {
        "api/v1/runs/<int:run_id>/reviews/",
        "api/v1/runs/<int:run_id>/reviews/export.csv",
        "api/v1/runs/<int:run_id>/reviews/export.jsonl",
        "api/v1/runs/<int:run_id>/calibration/",
    } <= set(API_ROUTES)


def test_the_url_map_has_private_pages() -> None:
    assert {"runs/", "datasets/", "judges/"} <= set(PRIVATE_ROUTES)


def page_routes(patterns: list[URLPattern | URLResolver], prefix: str = "") -> Iterator[str]:
    """The routes of the dashboard's own pages: the areas dashboard.urls includes from dashboard.views."""
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            module = getattr(pattern.urlconf_name, "__name__", str(pattern.urlconf_name))
            if module.startswith("dashboard.views."):
                yield from walk(pattern.url_patterns, prefix + str(pattern.pattern))


def test_every_page_area_is_among_those_checked() -> None:
    assert {
        "runs/",
        "runs/<int:pk>/history/",
        "datasets/<int:dataset_id>/",
        "healthz",
        "s/<str:token>/",
    } <= set(page_routes(get_resolver().url_patterns))


@pytest.mark.django_db
def test_every_page_refuses_a_method_it_does_not_take_with_405(
    client: Client, user: AbstractBaseUser
) -> None:
    # Staff, so that the status page's own check does not answer first; a real run, so that team pages
    # reach their view (they look the run up before it runs).
    type(user).objects.filter(pk=user.pk).update(is_staff=True)
    client.force_login(user)
    run = build_run({"Politeness": [0.5]})
    wrong = []
    for route in sorted(set(page_routes(get_resolver().url_patterns))):
        path = sample_path(route.replace("<int:pk>", str(run.pk)))
        status = client.generic("PUT", path).status_code
        if status != 405:
            wrong.append(f"{path}: {status}")
    assert not wrong


@pytest.mark.django_db
def test_login_page_is_public_and_styled(client: Client) -> None:
    response = client.get("/login/")
    assert response.status_code == 200
    assert b"docket.css" in response.content
    assert b"Log in to Docket" in response.content


@pytest.mark.django_db
def test_offline_judge_api_answers_without_a_session_but_wants_its_key(client: Client) -> None:
    response = client.get("/judge-api/v1/judges/")
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"


@pytest.mark.django_db
def test_login_then_logout(client: Client, user: object) -> None:
    response = client.post("/login/", {"username": "ada", "password": "a-long-test-password"})
    assert response.status_code == 302
    assert client.get("/runs/").status_code == 200
    response = client.post("/logout/")
    assert response.status_code == 302
    assert client.get("/runs/").status_code == 302


@pytest.mark.django_db
def test_repeated_failed_logins_lock_the_username_out_even_with_the_right_password(
    client: Client, user: object
) -> None:
    for _ in range(4):
        response = client.post("/login/", {"username": "ada", "password": "wrong"})
        assert b"Please enter a correct username and password" in response.content
    response = client.post("/login/", {"username": "ada", "password": "wrong"})
    assert response.status_code == 429
    response = client.post("/login/", {"username": "ada", "password": "a-long-test-password"})
    assert response.status_code == 429
    assert b"Too many failed logins" in response.content
    assert b"Try again in 15 minutes" in response.content
    assert client.get("/runs/").status_code == 302


@pytest.mark.django_db
def test_a_lockout_for_one_username_does_not_block_another(client: Client, django_user_model: type) -> None:
    django_user_model.objects.create_user(username="bob", password="another-long-password")  # type: ignore[attr-defined]
    for _ in range(5):
        client.post("/login/", {"username": "ada", "password": "wrong"})
    response = client.post("/login/", {"username": "bob", "password": "another-long-password"})
    assert response.status_code == 302
