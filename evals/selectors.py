"""Reading a run's results: the view state of the results table, and the queries behind it.

Every query walks an index in the order asked for and stops at a page (keyset pagination, never
OFFSET), so a page of a 100,000-item run costs about what a page of a 1,000-item run costs. Sorting
by an evaluator's score walks the scores' (run, evaluator, score, item) index; items without that
score (failed, pending) follow, by position.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Exists, OuterRef, Prefetch, Q, QuerySet
from django.http import QueryDict

from evals.models import Item, Run, Score
from evals.services.runs import run_items_merged

PAGE_SIZE = 50
STATUSES = {choice.value for choice in Item.Status}


@dataclass(frozen=True)
class ResultsQuery:
    """What the results table shows; it round-trips through the URL, so a filtered view is a link.

    sort: "position", "status" or "score:<evaluator>"; `descending` flips it (a leading "-" in the URL).
    """

    sort: str = "position"
    descending: bool = False
    status: str = ""
    search: str = ""
    # evaluator -> (min, max), either end optional
    ranges: dict[str, tuple[float | None, float | None]] = field(default_factory=dict)
    # metadata column -> value
    metadata: dict[str, str] = field(default_factory=dict)
    latest: bool = False

    @property
    def sort_evaluator(self) -> str | None:
        return self.sort.removeprefix("score:") if self.sort.startswith("score:") else None

    @property
    def is_filtered(self) -> bool:
        return bool(self.status or self.search or self.ranges or self.metadata)

    @classmethod
    def from_params(cls, params: QueryDict, *, run: Run) -> ResultsQuery:
        evaluators = set(run.evaluators)
        default_sort = f"score:{run.evaluators[0]}" if run.is_finished and run.evaluators else "position"
        raw_sort = params.get("sort", "") or default_sort
        descending = raw_sort.startswith("-")
        sort = raw_sort.lstrip("-")
        if sort not in ("position", "status") and not (
            sort.startswith("score:") and sort.removeprefix("score:") in evaluators
        ):
            sort, descending = default_sort, False
        status = params.get("status", "")
        if params.get("failed") == "1":
            status = Item.Status.FAILED
        if status not in STATUSES:
            status = ""
        ranges: dict[str, tuple[float | None, float | None]] = {}
        for name in run.evaluators:
            low, high = _number(params.get(f"min.{name}")), _number(params.get(f"max.{name}"))
            if low is not None or high is not None:
                ranges[name] = (low, high)
        metadata = {
            column: str(params.get(f"meta.{column}"))
            for column in run.dataset.metadata_columns
            if params.get(f"meta.{column}", "") != ""
        }
        return cls(
            sort=sort,
            descending=descending,
            status=status,
            search=params.get("q", "").strip()[:200],
            ranges=ranges,
            metadata=metadata,
            latest=params.get("view") == "latest",
        )

    def to_params(self, **changes: Any) -> dict[str, str]:
        """The URL parameters of this state (with `changes` applied), for links and forms."""
        state = {**self.__dict__, **changes}
        params: dict[str, str] = {}
        sort = ("-" if state["descending"] else "") + state["sort"]
        params["sort"] = sort
        if state["status"]:
            params["status"] = state["status"]
        if state["search"]:
            params["q"] = state["search"]
        for name, (low, high) in state["ranges"].items():
            if low is not None:
                params[f"min.{name}"] = f"{low:g}"
            if high is not None:
                params[f"max.{name}"] = f"{high:g}"
        for key, value in state["metadata"].items():
            params[f"meta.{key}"] = value
        if state["latest"]:
            params["view"] = "latest"
        return params


def _number(value: str | None) -> float | None:
    if value is None or value.strip() == "":
        return None
    try:
        return float(value)
    except ValueError:
        return None


@dataclass
class ResultsPage:
    rows: list[Item]
    next_cursor: str | None


def item_conditions(query: ResultsQuery, *, prefix: str = "", skip_range: str | None = None) -> Q:
    """The view's filters as conditions on an item, reached through `prefix` ("" or "item__").

    Written as plain conditions and correlated EXISTS, so the database checks them row by row while it
    walks an index in the page's order, and stops once the page is full.
    """
    item_ref = "item_id" if prefix else "pk"
    condition = Q()
    if query.status:
        condition &= Q(**{f"{prefix}status": query.status})
    for name, (low, high) in query.ranges.items():
        if name == skip_range:
            continue
        scores = Score.objects.filter(item=OuterRef(item_ref), evaluator_name=name)
        if low is not None:
            scores = scores.filter(score__gte=low)
        if high is not None:
            scores = scores.filter(score__lte=high)
        condition &= Q(Exists(scores))
    for key, value in query.metadata.items():
        condition &= Q(**{f"{prefix}example__metadata__{key}": value})
    if query.search:
        text = query.search
        justified = Score.objects.filter(item=OuterRef(item_ref), justification__icontains=text)
        condition &= (
            Q(**{f"{prefix}example__request__icontains": text})
            | Q(**{f"{prefix}example__response__icontains": text})
            | Q(Exists(justified))
        )
    return condition


def base_items(run: Run, query: ResultsQuery) -> QuerySet[Item]:
    """The run's items (or the latest per row across its retries) that pass every filter."""
    items = run_items_merged(run) if query.latest else Item.objects.filter(run=run)
    return items.filter(item_conditions(query))


def results_page(
    run: Run, query: ResultsQuery, *, cursor: str | None = None, size: int = PAGE_SIZE
) -> ResultsPage:
    """One page of the results table in the query's order, after `cursor` (from the previous page)."""
    position = _decode(cursor)
    rows: list[Item] = []
    next_cursor = None
    if query.sort_evaluator:
        rows, next_cursor = _score_sorted_page(run, query, position, size)
    else:
        items = base_items(run, query)
        order = ["status", "position"] if query.sort == "status" else ["position"]
        if query.descending:
            order = [f"-{name}" for name in order]
        if position:
            items = items.filter(_after(order, position))
        rows = list(_with_details(items.order_by(*order))[: size + 1])
        if len(rows) > size:
            rows = rows[:size]
            last = rows[-1]
            next_cursor = _encode({name.lstrip("-"): getattr(last, name.lstrip("-")) for name in order})
    return ResultsPage(rows=rows, next_cursor=next_cursor)


def results_iter(run: Run, query: ResultsQuery, *, chunk: int = 500) -> Iterator[Item]:
    """Every item of the view in order, a chunk at a time: constant memory for any size of run."""
    cursor = None
    while True:
        page = results_page(run, query, cursor=cursor, size=chunk)
        yield from page.rows
        if page.next_cursor is None:
            return
        cursor = page.next_cursor


def _score_sorted_page(
    run: Run, query: ResultsQuery, position: dict[str, Any], size: int
) -> tuple[list[Item], str | None]:
    name = query.sort_evaluator
    assert name is not None
    rows: list[Item] = []
    if position.get("phase", "scored") == "scored":
        scores = Score.objects.filter(evaluator_name=name, score__isnull=False)
        # Across retries the scores come from several runs: keep those of the latest verdicts.
        scores = scores.filter(item__in=run_items_merged(run)) if query.latest else scores.filter(run=run)
        scores = scores.filter(item_conditions(query, prefix="item__", skip_range=name))
        low, high = query.ranges.get(name, (None, None))
        if low is not None:
            scores = scores.filter(score__gte=low)
        if high is not None:
            scores = scores.filter(score__lte=high)
        order = ["-score", "-item_id"] if query.descending else ["score", "item_id"]
        if "score" in position:
            scores = scores.filter(_after(order, position))
        picked = list(scores.order_by(*order).values_list("score", "item_id")[: size + 1])
        more = len(picked) > size
        picked = picked[:size]
        by_id = {
            item.pk: item for item in _with_details(Item.objects.filter(pk__in=[pk for _, pk in picked]))
        }
        rows = [by_id[pk] for _, pk in picked if pk in by_id]
        if more:
            return rows, _encode({"phase": "scored", "score": picked[-1][0], "item_id": picked[-1][1]})
        if query.ranges.get(name):
            return rows, None  # a score range excludes the items that have no score
        position = {"phase": "unscored"}
    # Then the items without this score (failed, pending, cancelled), by position.
    remaining = size - len(rows)
    if remaining <= 0:
        return rows, _encode({"phase": "unscored"})
    has_score = Score.objects.filter(item=OuterRef("pk"), evaluator_name=name, score__isnull=False)
    unscored = base_items(run, query).filter(~Exists(has_score))
    if "position" in position:
        unscored = unscored.filter(position__gt=position["position"])
    more_rows = list(_with_details(unscored.order_by("position"))[: remaining + 1])
    if len(more_rows) > remaining:
        more_rows = more_rows[:remaining]
        rows.extend(more_rows)
        return rows, _encode({"phase": "unscored", "position": more_rows[-1].position})
    rows.extend(more_rows)
    return rows, None


def _with_details(items: QuerySet[Item]) -> QuerySet[Item]:
    return items.select_related("example").prefetch_related(
        Prefetch("scores", queryset=Score.objects.order_by("evaluator_name"))
    )


def _after(order: list[str], position: dict[str, Any]) -> Q:
    """Rows strictly after `position` in `order` (a list of fields, each maybe "-"-prefixed)."""
    condition = Q()
    equal = Q()
    for name in order:
        field_name = name.lstrip("-")
        value = position[field_name]
        step = Q(**{f"{field_name}__lt" if name.startswith("-") else f"{field_name}__gt": value})
        condition |= equal & step
        equal &= Q(**{field_name: value})
    return condition


def _encode(position: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(position, separators=(",", ":")).encode()).decode().rstrip("=")


def _decode(cursor: str | None) -> dict[str, Any]:
    if not cursor:
        return {}
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, TypeError):
        return {}
    return data if isinstance(data, dict) else {}
