"""What every endpoint shares: tokens and scopes, the session for reads, rate limits, problem documents."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from django.contrib.auth.models import AbstractBaseUser
from django.test import Client
from django.utils import timezone
from pytest_django.fixtures import Settings as SettingsWrapper

from evals.models import ApiToken
from evals.services.tokens import api_token_revoke

pytestmark = pytest.mark.django_db


def bearer(secret: str) -> Client:
    return Client(HTTP_AUTHORIZATION=f"Bearer {secret}")


def test_the_schema_is_served_without_a_token() -> None:
    response = Client().get("/api/v1/openapi.json")
    assert response.status_code == 200
    assert response.json()["info"]["title"] == "Docket API"


@pytest.mark.parametrize("header", ["", "Bearer ", "Bearer dkt_nope", "Basic abc", "Bearer " + "x" * 500])
def test_no_usable_token_is_a_401_problem(header: str) -> None:
    client = Client(HTTP_AUTHORIZATION=header) if header else Client()
    response = client.get("/api/v1/runs/")
    assert response.status_code == 401
    assert response["Content-Type"] == "application/problem+json"
    assert response["WWW-Authenticate"].startswith("Bearer")
    body = response.json()
    assert body["status"] == 401 and body["title"] == "Unauthorized" and "token" in body["detail"]


def test_revoked_and_expired_tokens_get_401(make_token: Callable[..., str]) -> None:
    revoked = make_token("write")
    api_token_revoke(token=ApiToken.objects.get(token_hash=ApiToken.hash_token(revoked)))
    expired = make_token("write", expires_at=timezone.now() + timedelta(seconds=30))
    ApiToken.objects.filter(token_hash=ApiToken.hash_token(expired)).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert bearer(revoked).get("/api/v1/runs/").status_code == 401
    assert bearer(expired).get("/api/v1/runs/").status_code == 401


def test_a_read_token_reads_but_cannot_write(reader: Client) -> None:
    assert reader.get("/api/v1/runs/").status_code == 200
    response = reader.post("/api/v1/runs/", {"dataset_id": 1, "judge": "x"}, content_type="application/json")
    assert response.status_code == 403
    assert "write scope" in response.json()["detail"]


def test_the_browser_session_reads_but_does_not_write(logged_in: Client) -> None:
    assert logged_in.get("/api/v1/runs/").status_code == 200
    response = logged_in.post("/api/v1/runs/", {}, content_type="application/json")
    assert response.status_code == 403


def test_a_token_is_stored_as_its_hash_and_records_its_last_use(make_token: Callable[..., str]) -> None:
    secret = make_token("read")
    token = ApiToken.objects.get()
    assert secret not in (token.token_hash, token.prefix) and token.token_hash == ApiToken.hash_token(secret)
    assert token.last_used_at is None
    bearer(secret).get("/api/v1/runs/")
    token.refresh_from_db()
    assert token.last_used_at is not None


def test_a_token_over_its_rate_gets_429_with_retry_after(
    settings: SettingsWrapper, make_token: Callable[..., str], user: AbstractBaseUser
) -> None:
    settings.DOCKET_API_RATE_PER_MINUTE = 3
    client = bearer(make_token("read"))
    statuses = [client.get("/api/v1/runs/").status_code for _ in range(4)]
    if statuses[-1] != 429:  # the minute turned between two requests: the window restarted
        statuses = [client.get("/api/v1/runs/").status_code for _ in range(4)]
    assert statuses[:3] == [200, 200, 200] and statuses[3] == 429
    response = client.get("/api/v1/runs/")
    assert response.status_code == 429
    assert 1 <= int(response["Retry-After"]) <= 61
    # Another token of the same user has its own allowance.
    assert bearer(make_token("read")).get("/api/v1/runs/").status_code == 200


def test_a_bad_json_body_is_a_422_problem_naming_the_field(api: Client) -> None:
    response = api.post("/api/v1/runs/", {"dataset_id": "seven"}, content_type="application/json")
    assert response.status_code == 422
    assert response["Content-Type"] == "application/problem+json"
    fields = {error["field"] for error in response.json()["errors"]}
    assert "dataset_id" in fields


def test_a_misspelt_field_is_a_422_naming_it_not_a_wish_silently_dropped(api: Client) -> None:
    response = api.post(
        "/api/v1/runs/",
        {"dataset_id": 1, "judge": "x", "treshold": {"a": 1}},
        content_type="application/json",
    )
    assert response.status_code == 422
    assert "treshold" in {error["field"] for error in response.json()["errors"]}
