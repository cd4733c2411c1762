"""Fixtures for the API suites: tokens of each scope, and a test client that sends one."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.contrib.auth.models import AbstractBaseUser
from django.test import Client

from evals.models import ApiToken
from evals.services.tokens import api_token_create


@pytest.fixture
def make_token(user: AbstractBaseUser) -> Callable[..., str]:
    def make(scope: str = ApiToken.Scope.WRITE, **kwargs: object) -> str:
        _token, secret = api_token_create(user=user, name=f"{scope} token", scope=scope, **kwargs)  # type: ignore[arg-type]
        return secret

    return make


@pytest.fixture
def api(make_token: Callable[..., str]) -> Client:
    """A client that sends a write token with every request."""
    return Client(HTTP_AUTHORIZATION=f"Bearer {make_token('write')}")


@pytest.fixture
def reader(make_token: Callable[..., str]) -> Client:
    """A client that sends a read token with every request."""
    return Client(HTTP_AUTHORIZATION=f"Bearer {make_token('read')}")
