"""Cursor pagination the way Scorable (Django REST framework) does it: opaque tokens in full next/previous URLs."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from django.http import HttpRequest

from offline_judge.inputs import Invalid

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100
# A batch of 100 items writes 100 item logs plus one child per evaluator each (up to 500 with four
# evaluators): the log list allows pages that large, so a batch's logs come back in one call.
MAX_LOG_PAGE_SIZE = 1000


class BadCursor(Exception):
    pass


def encode(data: dict[str, Any]) -> str:
    raw = json.dumps(data, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(token: str) -> dict[str, Any]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = json.loads(raw)
    except (binascii.Error, ValueError, RecursionError) as error:
        raise BadCursor(token) from error
    if not isinstance(data, dict):
        raise BadCursor(token)
    return data


def cursor_token(request: HttpRequest) -> str | None:
    """The cursor parameter. The official Python SDK sends the whole `next` URL as the cursor, so take
    the cursor out of it when the value is a URL (or a query string)."""
    value = request.GET.get("cursor")
    if not value:
        return None
    if "cursor=" in value:
        found = parse_qs(urlsplit(value).query or value.lstrip("?")).get("cursor")
        if not found:
            raise BadCursor(value)
        return found[0]
    return value


def page_size(request: HttpRequest, *, maximum: int = MAX_PAGE_SIZE) -> int:
    value = request.GET.get("page_size")
    if value in (None, ""):
        return DEFAULT_PAGE_SIZE
    try:
        size = int(value)
    except ValueError:
        raise Invalid([f'page_size: "{value}" is not an integer.']) from None
    if size < 1:
        raise Invalid([f"page_size: must be at least 1 (got {size})."])
    # Like DRF, a page size above the maximum is capped rather than refused.
    return min(size, maximum)


def page_url(request: HttpRequest, token: str | None) -> str | None:
    """The full URL of another page: same host, path and filters as this request, another cursor."""
    if token is None:
        return None
    params = [(key, value) for key, value in request.GET.items() if key != "cursor"]
    params.append(("cursor", token))
    return request.build_absolute_uri(request.path) + "?" + urlencode(params)
