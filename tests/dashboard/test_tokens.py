"""The API tokens page (/settings/tokens/) and `manage.py api_token`: made once, shown once, revocable."""

from __future__ import annotations

import html
import io
import re

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django.utils import timezone

from evals.models import ApiToken, Run
from evals.services.tokens import api_token_create
from tests.factories import build_run

pytestmark = pytest.mark.django_db

TOKEN = re.compile(r"dkt_[A-Za-z0-9_-]{20,}")


def bearer(secret: str) -> Client:
    return Client(HTTP_AUTHORIZATION=f"Bearer {secret}")


def create(client: Client, **fields: str) -> tuple[int, str, str | None]:
    """POST the form; the status, the page and the secret it shows (None when it shows none)."""
    response = client.post("/settings/tokens/", {"scope": "read", "expires_in": "90", **fields})
    page = response.content.decode()
    found = TOKEN.search(page)
    return response.status_code, page, found.group(0) if found else None


@pytest.fixture
def run() -> Run:
    return build_run({"Politeness": [0.6, 0.7, 0.8]}, name="baseline")


@pytest.fixture
def mallory(db: None) -> AbstractBaseUser:
    return get_user_model().objects.create_user(username="mallory", password="another-long-password")


# --- The page -----------------------------------------------------------------------------------------


def test_a_new_token_is_shown_once_with_a_curl_example_and_works(logged_in: Client, run: Run) -> None:
    status, page, secret = create(logged_in, name="nightly CI", scope="write", expires_in="30")
    assert status == 200 and secret is not None
    assert "you won&#x27;t see it again" in page or "you won't see it again" in page
    assert f'curl -H "Authorization: Bearer {secret}" http://testserver/api/v1/runs/' in html.unescape(page)
    token = ApiToken.objects.get()
    assert (token.name, token.scope, token.prefix) == ("nightly CI", "write", secret[:8])
    assert token.expires_at is not None and 29 <= (token.expires_at - timezone.now()).days <= 30
    assert token.token_hash == ApiToken.hash_token(secret)

    again = logged_in.get("/settings/tokens/").content.decode()
    assert secret not in again and f"{secret[:8]}…" in again and "nightly CI" in again

    response = bearer(secret).post(f"/api/v1/runs/{run.pk}/share-links/", {}, content_type="application/json")
    assert response.status_code == 201


def test_the_secret_never_reaches_the_session_or_a_redirect(logged_in: Client) -> None:
    response = logged_in.post("/settings/tokens/", {"name": "ci", "scope": "read", "expires_in": "never"})
    secret = TOKEN.search(response.content.decode())
    assert response.status_code == 200 and secret is not None
    assert secret.group(0) not in str(dict(logged_in.session))
    assert "no-store" in response["Cache-Control"]
    assert ApiToken.objects.get().expires_at is None


def test_a_read_token_made_on_the_page_cannot_write(logged_in: Client, run: Run) -> None:
    _status, _page, secret = create(logged_in, name="dashboard reader")
    assert secret is not None
    client = bearer(secret)
    assert client.get(f"/api/v1/compare/?a={run.pk}&b={run.pk}").status_code == 200
    assert (
        client.post(f"/api/v1/runs/{run.pk}/share-links/", {}, content_type="application/json").status_code
        == 403
    )


def test_revoking_a_token_makes_it_401_at_once(logged_in: Client, run: Run) -> None:
    _status, _page, secret = create(logged_in, name="short lived")
    assert secret is not None
    assert bearer(secret).get(f"/api/v1/runs/{run.pk}/share-links/").status_code == 200
    token = ApiToken.objects.get()
    response = logged_in.post(f"/settings/tokens/{token.pk}/revoke/", follow=True)
    assert response.status_code == 200 and "Revoked" in response.content.decode()
    token.refresh_from_db()
    assert token.revoked_at is not None
    assert bearer(secret).get(f"/api/v1/runs/{run.pk}/share-links/").status_code == 401
    assert "Revoked" in logged_in.get("/settings/tokens/").content.decode()


def test_another_users_token_is_neither_listed_nor_revocable(
    logged_in: Client, mallory: AbstractBaseUser, run: Run
) -> None:
    theirs, secret = api_token_create(user=mallory, name="mallory's token", scope="write")
    assert "mallory&#x27;s token" not in logged_in.get("/settings/tokens/").content.decode()
    assert logged_in.post(f"/settings/tokens/{theirs.pk}/revoke/").status_code == 404
    assert logged_in.post("/settings/tokens/999999/revoke/").status_code == 404
    theirs.refresh_from_db()
    assert theirs.revoked_at is None
    assert bearer(secret).get(f"/api/v1/runs/{run.pk}/share-links/").status_code == 200


def test_revoking_takes_a_post(logged_in: Client, user: AbstractBaseUser) -> None:
    token, _secret = api_token_create(user=user, name="ci")
    assert logged_in.get(f"/settings/tokens/{token.pk}/revoke/").status_code == 405
    token.refresh_from_db()
    assert token.revoked_at is None


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"name": "   "}, "needs a name"),
        ({"name": "ci", "scope": "admin"}, "admin is not one of the available choices"),
        ({"name": "ci", "expires_in": "3"}, "3 is not one of the available choices"),
        ({"name": "x" * 101}, "at most 100 characters"),
    ],
)
def test_a_token_that_cannot_be_made_is_a_form_error(
    logged_in: Client, fields: dict[str, str], message: str
) -> None:
    status, page, secret = create(logged_in, **fields)
    assert status == 400 and secret is None
    assert message in html.unescape(page)
    assert not ApiToken.objects.exists()


def test_the_page_needs_a_login_and_the_header_links_to_it(logged_in: Client) -> None:
    assert Client().get("/settings/tokens/").status_code == 302
    assert 'href="/settings/tokens/"' in logged_in.get("/runs/").content.decode()
    assert 'href="/api/v1/docs"' in logged_in.get("/settings/tokens/").content.decode()


# --- The command --------------------------------------------------------------------------------------


def api_token(*args: str) -> tuple[int, str]:
    out = io.StringIO()
    try:
        call_command("api_token", *args, stdout=out)
    except CommandError as error:
        return error.returncode, str(error)
    return 0, out.getvalue()


def test_the_command_prints_a_working_token_on_its_last_line(user: AbstractBaseUser, run: Run) -> None:
    code, out = api_token(
        "create", "--user", "ada", "--name", "CI", "--scope", "write", "--expires-days", "7"
    )
    assert code == 0
    secret = out.rstrip("\n").splitlines()[-1]
    assert TOKEN.fullmatch(secret)
    response = bearer(secret).post(f"/api/v1/runs/{run.pk}/share-links/", {}, content_type="application/json")
    assert response.status_code == 201
    token = ApiToken.objects.get()
    assert token.user == user and token.scope == "write" and token.expires_at is not None


def test_the_command_lists_tokens_without_secrets_and_revokes_by_name_or_id(user: AbstractBaseUser) -> None:
    _code, out = api_token("create", "--user", "ada", "--name", "CI")
    secret = out.rstrip("\n").splitlines()[-1]
    api_token("create", "--user", "ada", "--name", "laptop", "--expires-days", "never")
    code, listed = api_token("list", "--user", "ada")
    assert code == 0 and "CI" in listed and "laptop" in listed and secret[:8] in listed
    assert secret not in listed

    assert api_token("revoke", "--user", "ada", "--name", "CI")[0] == 0
    assert bearer(secret).get("/api/v1/compare/?a=1&b=1").status_code == 401
    laptop = ApiToken.objects.get(name="laptop")
    assert api_token("revoke", "--user", "ada", "--id", str(laptop.pk))[0] == 0
    laptop.refresh_from_db()
    assert laptop.revoked_at is not None
    assert "revoked" in api_token("list", "--user", "ada")[1]


def test_the_command_refuses_an_unknown_user_or_token_with_exit_2(user: AbstractBaseUser) -> None:
    code, message = api_token("create", "--user", "nobody", "--name", "CI")
    assert code == 2 and "nobody" in message
    assert api_token("list", "--user", "nobody")[0] == 2
    assert api_token("revoke", "--user", "ada", "--name", "missing")[0] == 2
    code, message = api_token("create", "--user", "ada", "--name", "CI", "--expires-days", "0")
    assert code == 2 and "--expires-days" in message
    assert not ApiToken.objects.exists()
