from __future__ import annotations

import re
from collections.abc import Callable
from urllib.parse import urlencode

from django.http import HttpRequest, HttpResponse, QueryDict
from django_htmx.middleware import HtmxDetails

# Ids, positions and sequence numbers are BIGINT columns: a larger number is no row, not a 500 (SQLite
# raises OverflowError on binding it, PostgreSQL an out-of-range error).
_ROW_NUMBER = re.compile(r"[0-9]{1,19}")
ROW_NUMBER_MAX = 2**63 - 1


class HtmxHttpRequest(HttpRequest):
    """The request type of every view: HtmxMiddleware adds `htmx`."""

    htmx: HtmxDetails


def row_number(value: str | None) -> int | None:
    """A non-negative id, position or sequence number from the URL, or None when it cannot be one.

    `str.isdigit` is not enough: it accepts "²" and "١", which int() then refuses or reads, and numbers
    past what the database holds.
    """
    if value is None or not _ROW_NUMBER.fullmatch(value):
        return None
    number = int(value)
    return number if number <= ROW_NUMBER_MAX else None


def declared_length(request: HttpRequest) -> int:
    """The body's length as the client declares it (0 when it does not say), read before the body is."""
    value = request.META.get("CONTENT_LENGTH") or ""
    if not (value.isascii() and value.isdigit()):
        return 0
    return int(value[:30])  # more than 30 digits is over any cap anyway


class StripNulMiddleware:
    """Take NUL characters out of every query-string key and value, in one place, before any view.

    PostgreSQL text cannot hold NUL (psycopg refuses to send one: a 500 on `?q=%00`), and no filter,
    search or cursor of Docket's has a use for one.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        query = request.META.get("QUERY_STRING", "")
        if "\x00" in query or "%00" in query:
            pairs = [
                (key.replace("\x00", ""), value.replace("\x00", ""))
                for key, values in request.GET.lists()
                for value in values
            ]
            request.GET = QueryDict(urlencode(pairs), encoding=request.encoding)
        return self.get_response(request)
