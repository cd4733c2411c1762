"""Share tokens are passwords: no log line carries one."""

from __future__ import annotations

import io
import logging
import secrets
from collections.abc import Iterator

import pytest
from django.test import Client


@pytest.fixture
def console() -> Iterator[io.StringIO]:
    """What Docket's console log handler writes (the one Django's request and server loggers use)."""
    handler = logging.getLogger("django.request").handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    buffer = io.StringIO()
    previous = handler.setStream(buffer)
    yield buffer
    handler.setStream(previous)


@pytest.mark.django_db
def test_share_paths_are_logged_without_their_token(client: Client, console: io.StringIO) -> None:
    token = secrets.token_urlsafe(32)
    assert client.get(f"/s/{token}/").status_code == 404
    logging.getLogger("django.server").info('"GET /s/%s/live/ HTTP/1.1" 200 10', token)
    logged = console.getvalue()
    assert "Not Found: /s/<token>/" in logged
    assert '"GET /s/<token>/live/ HTTP/1.1" 200' in logged
    assert token not in logged
