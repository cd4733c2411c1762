"""Small display helpers shared by Docket's templates."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django import template

from evals.money import format_cost

register = template.Library()


@register.filter
def duration(value: Any) -> str:
    """A timedelta or a number of seconds, as a person would say it: "12 s", "4 min 5 s", "15 minutes"."""
    if value is None or value == "":
        return ""
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    seconds = max(round(seconds), 0)
    if seconds < 60:
        return f"{seconds} s"
    minutes, rest = divmod(seconds, 60)
    if minutes < 60:
        if rest == 0:
            return f"{minutes} minute{'s' if minutes != 1 else ''}"
        return f"{minutes} min {rest} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} hour{'s' if hours != 1 else ''}"


@register.filter
def score_class(value: Any) -> str:
    """The colour step of a score in [0, 1]: score-1 (worst) to score-5 (best), score-none when absent."""
    if value is None or value == "":
        return "score-none"
    number = min(max(float(value), 0.0), 1.0)
    return f"score-{min(int(number * 5) + 1, 5)}"


@register.filter
def score(value: Any) -> str:
    if value is None or value == "":
        return "—"
    return f"{float(value):.2f}"


@register.filter
def percent(value: Any, digits: int = 0) -> str:
    if value is None or value == "":
        return "—"
    return f"{float(value) * 100:.{int(digits)}f}%"


@register.simple_tag
def run_url(access: Any, name: str, *args: Any) -> str:
    """The URL of a page of the run `access` reaches: under /runs/<pk>/ or under the share link."""
    return str(access.url(name, *args))


@register.simple_tag
def query_url(query: Any, **changes: Any) -> str:
    """The query string of a results view with some of its state changed (for sort and filter links)."""
    from urllib.parse import urlencode

    return "?" + urlencode(query.to_params(**changes))


@register.simple_tag
def sort_url(query: Any, key: str) -> str:
    """The query string that sorts by `key`: lowest first, or reversed when already sorted by it."""
    descending = not query.descending if query.sort == key else False
    return str(query_url(query, sort=key, descending=descending))


@register.filter
def get_item(mapping: Any, key: Any) -> Any:
    if not mapping:
        return None
    return mapping.get(key)


@register.filter
def money(value: Any) -> str:
    """A cost as Docket writes every cost: "$12.50", "$0.0123", "—" when unknown."""
    return format_cost(None if value in (None, "") else float(value))
