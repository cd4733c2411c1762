"""Share tokens are passwords: no log line carries one."""

from __future__ import annotations

import io
import logging
import secrets
from collections.abc import Iterator
from typing import Any

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


@pytest.fixture
def every_handler() -> Iterator[io.StringIO]:
    """What any stream handler of any logger writes (Django's own "console" handler included)."""
    loggers = [logging.getLogger()] + [
        logger for logger in logging.Logger.manager.loggerDict.values() if isinstance(logger, logging.Logger)
    ]
    handlers = {handler for logger in loggers for handler in logger.handlers}
    streams = [handler for handler in handlers if isinstance(handler, logging.StreamHandler)]
    buffer = io.StringIO()
    previous = [handler.setStream(buffer) for handler in streams]
    yield buffer
    for handler, stream in zip(streams, previous, strict=True):
        handler.setStream(stream)


@pytest.mark.django_db
def test_a_bad_post_to_a_share_url_in_debug_logs_no_token_on_any_handler(
    every_handler: io.StringIO, settings: Any
) -> None:
    # Django's default "console" handler (DEBUG only, on the "django" logger) printed the full path.
    settings.DEBUG = True
    token = secrets.token_urlsafe(32)
    response = Client(enforce_csrf_checks=True).post(f"/s/{token}/", {"x": "1"})
    assert response.status_code == 403
    logged = every_handler.getvalue()
    assert "Forbidden (CSRF cookie not set.): /s/<token>/" in logged
    assert token not in logged


def test_every_handler_of_every_logger_masks_share_tokens() -> None:
    from dashboard.logging import MaskShareTokens

    loggers = [logging.getLogger()] + [
        logger for logger in logging.Logger.manager.loggerDict.values() if isinstance(logger, logging.Logger)
    ]
    unmasked = {
        f"{logger.name}: {type(handler).__name__}"
        for logger in loggers
        for handler in logger.handlers
        if not any(isinstance(found, MaskShareTokens) for found in handler.filters)
        # pytest's own capture handlers are not Docket's; a NullHandler (urllib3's, once imported) writes nothing.
        and not type(handler).__module__.startswith("_pytest")
        and not isinstance(handler, logging.NullHandler)
    }
    assert unmasked == set()
