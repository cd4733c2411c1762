"""The results table's cursors: a page's last position, written into `?after=` and read back.

A cursor is the keyset position (the order's fields, or for an evaluator's sort the phase, score and
item) as URL-safe base64 JSON. Anything may arrive as `?after=`: a cursor is read back only when every
value has the type and range this view's order needs; otherwise the page starts again at the top.
"""

from __future__ import annotations

import base64
import json
import math
from typing import TYPE_CHECKING, Any

from django.db.models import Q

from evals.models import Item

if TYPE_CHECKING:
    from evals.selectors.results import ResultsQuery

STATUSES = {choice.value for choice in Item.Status}


def plain_order(query: ResultsQuery) -> list[str]:
    order = ["status", "position"] if query.sort == "status" else ["position"]
    return [f"-{name}" for name in order] if query.descending else order


def results_cursor_fits(cursor: str, query: ResultsQuery) -> bool:
    """Whether `cursor` is one results_page gave for this view (same sort), kept whole.

    results_page starts again at the first page for a cursor that does not fit (the page's forgiving
    `after=`); an API client paging through must hear that instead, or it would see rows twice. A
    cursor of another sort order may pass the position check as "the start": all of it must be kept.
    """
    given = cursor_decode(cursor)
    kept = position_checked(given, query)
    return bool(kept) and set(given) <= set(kept)


def position_checked(position: dict[str, Any], query: ResultsQuery) -> dict[str, Any]:
    """The cursor's position if every value it holds has the type and range this view's order needs,
    else {} (a forged `?after=` gave a KeyError, a TypeError or an integer overflow: a 500)."""
    if not position:
        return {}
    if query.sort_evaluator is None:
        fields = [name.lstrip("-") for name in plain_order(query)]
        checked = {name: position.get(name) for name in fields}
        valid = all(
            _is_row_number(value) if name == "position" else value in STATUSES
            for name, value in checked.items()
        )
        return checked if valid else {}
    phase = position.get("phase", "scored")
    if phase == "scored":
        if "score" not in position and "item_id" not in position:
            return {"phase": "scored"}
        score, item_id = position.get("score"), position.get("item_id")
        valid = _is_score(score) and _is_row_number(item_id)
        return {"phase": "scored", "score": score, "item_id": item_id} if valid else {}
    if phase == "unscored":
        if "position" not in position:
            return {"phase": "unscored"}
        return (
            {"phase": "unscored", "position": position["position"]}
            if _is_row_number(position["position"])
            else {}
        )
    return {}


def _is_row_number(value: Any) -> bool:
    # bool is an int to Python; the columns are 64-bit.
    return type(value) is int and 0 <= value < 2**63


def _is_score(value: Any) -> bool:
    return type(value) in (int, float) and math.isfinite(value)


def rows_after(order: list[str], position: dict[str, Any]) -> Q:
    """Rows strictly after `position` in `order` (a list of fields, each maybe "-"-prefixed).

    Led by a plain bound on the first field (`score >= 0.53 AND (score > 0.53 OR ...)`): the OR alone
    is no index range, so the database walked the index from its start, past every row before the
    position (9 s for the item after the middle one of a 1,000,000-item run on PostgreSQL).
    """
    condition = Q()
    equal = Q()
    for name in order:
        field_name = name.lstrip("-")
        value = position[field_name]
        step = Q(**{f"{field_name}__lt" if name.startswith("-") else f"{field_name}__gt": value})
        condition |= equal & step
        equal &= Q(**{field_name: value})
    if len(order) > 1:
        first = order[0].lstrip("-")
        bound = f"{first}__lte" if order[0].startswith("-") else f"{first}__gte"
        condition = Q(**{bound: position[first]}) & condition
    return condition


def cursor_encode(position: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(position, separators=(",", ":")).encode()).decode().rstrip("=")


def cursor_decode(cursor: str | None) -> dict[str, Any]:
    # A real cursor is well under 200 characters; a forged one may be anything (deep nesting too).
    if not cursor or len(cursor) > 1000:
        return {}
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, TypeError, RecursionError):
        return {}
    return data if isinstance(data, dict) else {}
