from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.test import Client


@pytest.fixture
def user(db: None) -> AbstractBaseUser:
    return get_user_model().objects.create_user(username="ada", password="a-long-test-password")


@pytest.fixture
def logged_in(client: Client, user: AbstractBaseUser) -> Client:
    client.force_login(user)
    return client
