"""Docket's HTTP API, /api/v1/: the OpenAPI schema at /api/v1/openapi.json, its docs page at /api/v1/docs.

Each area keeps its endpoints in its own module; they call the same services and selectors the pages
use. What every endpoint shares (authentication, problem documents, cursor pages) is in core.
"""

from __future__ import annotations

from typing import Any

from django.urls import URLPattern, URLResolver
from ninja import NinjaAPI

from dashboard.api import datasets, items, reviews, runs, schema, sharing
from dashboard.api.core import ApiAuth, install_error_handlers

api = NinjaAPI(
    title="Docket API",
    version="1",
    description=(
        "Upload datasets, start and watch evaluation runs, read their scores, compare runs and share them. "
        "Authenticate with a personal API token: `Authorization: Bearer <token>`. Errors are RFC 9457 "
        "problem documents; lists page by cursor (`limit`, `cursor`; the answer's `next_cursor`)."
    ),
    auth=ApiAuth(),
    urls_namespace="api",
)
install_error_handlers(api)
api.add_router("/", datasets.router)
api.add_router("/", runs.router)
api.add_router("/", items.router)
api.add_router("/", sharing.router)
api.add_router("/", reviews.router)
# The documented problem answers, the bearer scheme and operation names; a 404 problem for unknown paths.
schema.install(api)


def _public(patterns: list[Any]) -> list[Any]:
    """The API answers for itself (401 as a problem document): no login redirect from the middleware."""
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            _public(pattern.url_patterns)
        elif isinstance(pattern, URLPattern):
            pattern.callback.login_required = False  # type: ignore[attr-defined]
    return patterns


patterns, app_name, namespace = api.urls
urls = (_public(list(patterns)), app_name, namespace)
