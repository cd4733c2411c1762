"""Pieces of the HTTP layer that are plain functions: the API's address, Retry-After."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from docket_client.api import api_root, retry_after

NOW = datetime(2026, 12, 2, 1, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "given",
    ["https://docket.example.com", "https://docket.example.com/", "https://docket.example.com/api/v1/"],
)
def test_docket_url_may_be_given_with_or_without_the_api_path(given: str) -> None:
    assert api_root(given) == "https://docket.example.com/api/v1/"


def test_a_docket_under_a_path_keeps_it() -> None:
    assert api_root("https://tools.example.com/docket") == "https://tools.example.com/docket/api/v1/"


def test_retry_after_in_seconds_or_as_a_date() -> None:
    assert retry_after("7", now=NOW) == 7.0
    assert retry_after("Wed, 02 Dec 2026 01:00:30 GMT", now=NOW) == 30.0
    assert retry_after("Wed, 02 Dec 2026 00:59:00 GMT", now=NOW) == 0.0
    assert retry_after("soon", now=NOW) is None
    assert retry_after(None, now=NOW) is None
