"""Reading a run's results: the view state of the results table, and the queries behind it.

Every query walks an index in the order asked for and stops at a page (keyset pagination, never
OFFSET), so a page of a 100,000-item run costs about what a page of a 1,000-item run costs. Sorting
by an evaluator's score walks the scores' (run, evaluator, score, item) index; items without that
score (failed, pending) follow, by position.

A text search cannot walk the page's order: a word in ten rows of a million would read every row
before the page filled. It first asks for the ids of the items it matches (`_search_matches`), one query
each for the texts and for the justifications, which PostgreSQL answers from the trigram indexes of
migration 0011 when the word is rare and by walking a few rows when it is common. When those are few
the page reads just them; when there are more than SEARCH_LIST_LIMIT the word is common enough for the
page's own walk to fill soon, and the count says "more than".

What a reader may see (`evals.selectors.visibility`) is applied here, where rows are read: a share link
that hides the text gets items whose text was never loaded, and a search that never reads it. The
cursors of its pages are read and written in `evals.selectors.results_cursor`.

One module past 450 lines: the pages, the count, the neighbours and the export all share one view state
and one set of conditions, and must agree row for row.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from functools import reduce
from operator import or_
from typing import Any
from urllib.parse import urlencode

from django.core.cache import cache
from django.db import connection
from django.db.models import Count, Exists, OuterRef, Prefetch, Q, QuerySet, TextField
from django.db.models.expressions import RawSQL
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast
from django.db.models.lookups import Exact
from django.http import QueryDict

from evals.models import Dataset, Example, Item, Run, Score
from evals.selectors.results_cursor import (
    STATUSES,
    cursor_decode,
    cursor_encode,
    plain_order,
    position_checked,
    rows_after,
)
from evals.selectors.runs import run_items_merged
from evals.selectors.visibility import ALL, TEXT_COLUMNS, Visibility

PAGE_SIZE = 50
# The metadata filter suggests at most this many values of a column, the most common first.
METADATA_SUGGESTIONS = 50
METADATA_VALUES_SECONDS = 24 * 3600
# A search that matches at most this many items pages through their ids; past it, the page walks its
# order and checks each row. Also what the match count counts up to: past it, "10,000+ match".
SEARCH_LIST_LIMIT = 10_000
MATCH_COUNT_LIMIT = 10_000


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
    # Who reads: what the search may read and what the rows may carry. Not part of the URL.
    visibility: Visibility = ALL
    # The search's matches per run id, found once for every page and count made from this query.
    _search_found: dict[int, frozenset[int] | None] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    @property
    def sort_evaluator(self) -> str | None:
        return self.sort.removeprefix("score:") if self.sort.startswith("score:") else None

    @property
    def is_filtered(self) -> bool:
        return bool(self.status or self.search or self.ranges or self.metadata)

    @classmethod
    def from_params(cls, params: QueryDict, *, run: Run, visibility: Visibility = ALL) -> ResultsQuery:
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
            # A reader who may see nothing the search reads gets no search (the page shows no box).
            search=params.get("q", "").strip()[:200] if visibility.searchable else "",
            ranges=ranges,
            metadata=metadata,
            latest=params.get("view") == "latest",
            visibility=visibility,
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

    def link_query(self, run: Run) -> str:
        """The query string that carries this view into a link ("?sort=..."), or "" for the default view.

        An item's page reads it back to step through the same rows in the same order.
        """
        params = self.to_params()
        if params == ResultsQuery.from_params(QueryDict(), run=run).to_params():
            return ""
        return "?" + urlencode(params)


def _number(value: str | None) -> float | None:
    if value is None or value.strip() == "":
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    # "nan" and "inf" read as floats, but no score lies between them.
    return number if math.isfinite(number) else None


@dataclass
class ResultsPage:
    rows: list[Item]
    next_cursor: str | None


def item_conditions(
    query: ResultsQuery,
    *,
    prefix: str = "",
    skip_range: str | None = None,
    search_found: frozenset[int] | None = None,
) -> Q:
    """The view's filters as conditions on an item, reached through `prefix` ("" or "item__").

    Written as plain conditions and correlated EXISTS, so the database checks them row by row while it
    walks an index in the page's order, and stops once the page is full. `search_found`: the ids of the
    items the search matches, when `_search_matches` could list them; the search is then those ids.
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
        # Compared as text, as the filter offers them: a JSON Lines number 3 matches "3".
        condition &= Q(Exact(_metadata_text(key, f"{prefix}example__metadata"), value))
    if query.search:
        if search_found is not None:
            condition &= Q(**{f"{prefix}pk__in": _id_list(search_found)})
        else:
            found = _search_conditions(query, prefix=prefix)
            condition &= reduce(or_, found) if found else Q(pk__in=[])
    return condition


def _search_conditions(query: ResultsQuery, *, prefix: str = "") -> list[Q]:
    """The search as conditions on an item: its texts, or one of its justifications, hold the words.

    Only what the reader may see is searched: a hidden text must not be found out one probe at a time.
    """
    text = query.search
    item_ref = "item_id" if prefix else "pk"
    found = []
    if "text" in query.visibility.searchable:
        found.append(
            Q(**{f"{prefix}example__request__icontains": text})
            | Q(**{f"{prefix}example__response__icontains": text})
        )
    if "justifications" in query.visibility.searchable:
        justified = Score.objects.filter(item=OuterRef(item_ref), justification__icontains=text)
        found.append(Q(Exists(justified)))
    return found


def _id_list(ids: frozenset[int]) -> frozenset[int] | RawSQL:
    """`ids` for an `__in` lookup. On PostgreSQL one array parameter: thousands of placeholders cost
    Django and the driver more than the database's lookups (5,000 ids: about 80 ms against 30)."""
    if connection.vendor == "postgresql":
        return RawSQL("SELECT unnest(%s::bigint[])", (sorted(ids),))
    return ids


def _search_matches(run: Run, query: ResultsQuery) -> frozenset[int] | None:
    """The ids of the view's items the search matches, or None when there are more than SEARCH_LIST_LIMIT.

    One query for the texts and one for the justifications, each under every other filter, unordered
    and stopped after SEARCH_LIST_LIMIT + 1 rows. Apart, each can start from its trigram index (an OR
    across the two tables could use neither), and the planner walks the run's items instead when the
    statistics say the word is common. Found once per query object: the pages of an export share it.
    """
    if run.pk in query._search_found:
        return query._search_found[run.pk]
    others = base_items(run, replace(query, search="")).order_by()
    found: set[int] = set()
    for condition in _search_conditions(query):
        found.update(others.filter(condition).values_list("pk", flat=True)[: SEARCH_LIST_LIMIT + 1])
        if len(found) > SEARCH_LIST_LIMIT:
            query._search_found[run.pk] = None
            return None
    query._search_found[run.pk] = frozenset(found)
    return query._search_found[run.pk]


def _metadata_text(column: str, field_name: str) -> Cast:
    return Cast(KeyTextTransform(column, field_name), output_field=TextField())


def base_items(run: Run, query: ResultsQuery) -> QuerySet[Item]:
    """The run's items (or the latest per row across its retries) that pass every filter."""
    items = run_items_merged(run) if query.latest else Item.objects.filter(run=run)
    return items.filter(
        item_conditions(query, search_found=_search_matches(run, query) if query.search else None)
    )


def results_page(
    run: Run, query: ResultsQuery, *, cursor: str | None = None, size: int = PAGE_SIZE
) -> ResultsPage:
    """One page of the results table in the query's order, after `cursor` (from the previous page).

    The cursor comes back from the client: one that does not fit this view's order is the first page.
    """
    position = position_checked(cursor_decode(cursor), query)
    rows: list[Item] = []
    next_cursor = None
    if query.sort_evaluator:
        rows, next_cursor = _score_sorted_page(run, query, position, size)
    else:
        items = base_items(run, query)
        order = plain_order(query)
        if position:
            items = items.filter(rows_after(order, position))
        rows = items_with_details(items.order_by(*order), query.visibility, limit=size + 1)
        if len(rows) > size:
            rows = rows[:size]
            last = rows[-1]
            next_cursor = cursor_encode({name.lstrip("-"): getattr(last, name.lstrip("-")) for name in order})
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


def results_count(run: Run, query: ResultsQuery) -> int:
    """How many items the view holds, every page together ("37 of 5,000 items match"), counted up to
    MATCH_COUNT_LIMIT: any number past it means more ("10,000+ match").

    An exact count of a common word would read every row of a large run, whatever the index.
    """
    if query.search:
        # The search's matches are found under every other filter: they are the view, no need to count.
        found = _search_matches(run, query)
        if found is not None:
            return min(len(found), MATCH_COUNT_LIMIT + 1)
        if SEARCH_LIST_LIMIT >= MATCH_COUNT_LIMIT:
            return MATCH_COUNT_LIMIT + 1  # more than SEARCH_LIST_LIMIT of them
    return base_items(run, query).order_by()[: MATCH_COUNT_LIMIT + 1].count()


def results_count_shown(run: Run, query: ResultsQuery) -> tuple[int, bool]:
    """The match count as a page shows it: (count, False) when exact, (MATCH_COUNT_LIMIT, True) past it."""
    count = results_count(run, query)
    return min(count, MATCH_COUNT_LIMIT), count > MATCH_COUNT_LIMIT


def results_neighbours(run: Run, query: ResultsQuery, item: Item) -> tuple[int | None, int | None]:
    """The ids of the items before and after `item` in the view's order (None at either end).

    The same keyset as the pages: a step is one indexed lookup, wherever the item sits in the run.
    """
    name = query.sort_evaluator
    if name is None:
        items = base_items(run, query)
        order = plain_order(query)
        here = {key.lstrip("-"): getattr(item, key.lstrip("-")) for key in order}
        return (
            _first_pk(items.filter(rows_after(_flipped(order), here)).order_by(*_flipped(order))),
            _first_pk(items.filter(rows_after(order, here)).order_by(*order)),
        )
    order = ["-score", "-item_id"] if query.descending else ["score", "item_id"]
    scored = _scored(run, query, name)
    unscored = _unscored(run, query, name)
    # A score range on the sorted evaluator leaves out the items without that score (as the pages do).
    with_unscored = not query.ranges.get(name)
    score = (
        Score.objects.filter(item=item, evaluator_name=name, score__isnull=False)
        .values_list("score", flat=True)
        .first()
    )
    if score is None:
        previous = _first_pk(unscored.filter(position__lt=item.position).order_by("-position"))
        if previous is None:
            previous = _first_pk(scored.order_by(*_flipped(order)), field="item_id")
        return previous, _first_pk(unscored.filter(position__gt=item.position).order_by("position"))
    here = {"score": score, "item_id": item.pk}
    following = _first_pk(scored.filter(rows_after(order, here)).order_by(*order), field="item_id")
    if following is None and with_unscored:
        following = _first_pk(unscored.order_by("position"))
    previous = _first_pk(
        scored.filter(rows_after(_flipped(order), here)).order_by(*_flipped(order)), field="item_id"
    )
    return previous, following


def items_with_details(
    items: QuerySet[Item], visibility: Visibility = ALL, *, limit: int | None = None
) -> list[Item]:
    """The (first `limit`) items with their example and scores, holding only what `visibility` shows.

    Hidden fields are not even read from the database, and are blanked on the objects, so nothing made
    from these items (a page, a live row, an export) can show them.
    """
    scores = Score.objects.order_by("evaluator_name")
    if not visibility.justifications:
        scores = scores.defer("justification")
    if not visibility.internal_ids:
        scores = scores.defer("evaluator_id")
        items = items.select_related("batch")
    items = items.select_related("example").prefetch_related(Prefetch("scores", queryset=scores))
    if not visibility.texts:
        items = items.defer(*(f"example__{name}" for name in TEXT_COLUMNS))
    if limit is not None:
        items = items[:limit]
    return [visibility.redact_item(item) for item in items]


def result_item(*, pk: int, run_ids: list[int], visibility: Visibility = ALL) -> Item | None:
    """One item of these runs in full (its run and remote batch too), as `visibility` lets it be seen."""
    items = Item.objects.select_related("run", "run__judge", "batch").filter(pk=pk, run_id__in=run_ids)
    found = items_with_details(items, visibility)
    return found[0] if found else None


def metadata_values(run: Run, *, limit: int = METADATA_SUGGESTIONS) -> dict[str, list[str]]:
    """Each metadata column's most common values in the run's dataset (at most `limit`), for the filters.

    Counting them reads every row (about a second for 100,000 rows and three columns), and a dataset's
    rows never change once imported: counted once, kept in the cache. The key holds the dataset's
    creation time too, so a new dataset that reuses a deleted one's id is counted afresh.
    """
    dataset = run.dataset
    key = f"docket:metadata-values:{dataset.pk}:{dataset.created_at.timestamp()}:{limit}"
    values: dict[str, list[str]] | None = cache.get(key)
    if values is None:
        values = _metadata_values(dataset, limit=limit)
        cache.set(key, values, METADATA_VALUES_SECONDS)
    return values


def _metadata_values(dataset: Dataset, *, limit: int) -> dict[str, list[str]]:
    examples = Example.objects.filter(dataset=dataset)
    values: dict[str, list[str]] = {}
    for column in dataset.metadata_columns:
        common = (
            examples.annotate(value=_metadata_text(column, "metadata"))
            .exclude(value__isnull=True)
            .exclude(value="")
            .values("value")
            .annotate(n=Count("pk"))
            .order_by("-n", "value")
        )
        values[column] = [row["value"] for row in common[:limit]]
    return values


def _flipped(order: list[str]) -> list[str]:
    return [name[1:] if name.startswith("-") else f"-{name}" for name in order]


def _first_pk(rows: QuerySet[Any], *, field: str = "pk") -> int | None:
    return rows.values_list(field, flat=True).first()


def _scored(run: Run, query: ResultsQuery, name: str) -> QuerySet[Score]:
    """The scores of evaluator `name` of the view's items, with the view's range on them."""
    scores = Score.objects.filter(evaluator_name=name, score__isnull=False)
    # Across retries the scores come from several runs: keep those of the latest verdicts.
    scores = scores.filter(item__in=run_items_merged(run)) if query.latest else scores.filter(run=run)
    found = _search_matches(run, query) if query.search else None
    scores = scores.filter(item_conditions(query, prefix="item__", skip_range=name, search_found=found))
    low, high = query.ranges.get(name, (None, None))
    if low is not None:
        scores = scores.filter(score__gte=low)
    if high is not None:
        scores = scores.filter(score__lte=high)
    return scores


def _unscored(run: Run, query: ResultsQuery, name: str) -> QuerySet[Item]:
    """The view's items without a score from evaluator `name` (failed, pending, cancelled)."""
    has_score = Score.objects.filter(item=OuterRef("pk"), evaluator_name=name, score__isnull=False)
    return base_items(run, query).filter(~Exists(has_score))


def _score_sorted_page(
    run: Run, query: ResultsQuery, position: dict[str, Any], size: int
) -> tuple[list[Item], str | None]:
    name = query.sort_evaluator
    assert name is not None
    rows: list[Item] = []
    if position.get("phase", "scored") == "scored":
        scores = _scored(run, query, name)
        order = ["-score", "-item_id"] if query.descending else ["score", "item_id"]
        if "score" in position:
            scores = scores.filter(rows_after(order, position))
        picked = list(scores.order_by(*order).values_list("score", "item_id")[: size + 1])
        more = len(picked) > size
        picked = picked[:size]
        by_id = {
            item.pk: item
            for item in items_with_details(
                Item.objects.filter(pk__in=[pk for _, pk in picked]), query.visibility
            )
        }
        rows = [by_id[pk] for _, pk in picked if pk in by_id]
        if more:
            return rows, cursor_encode({"phase": "scored", "score": picked[-1][0], "item_id": picked[-1][1]})
        if query.ranges.get(name):
            return rows, None  # a score range excludes the items that have no score
        position = {"phase": "unscored"}
    # Then the items without this score (failed, pending, cancelled), by position.
    remaining = size - len(rows)
    if remaining <= 0:
        return rows, cursor_encode({"phase": "unscored"})
    unscored = _unscored(run, query, name)
    if "position" in position:
        unscored = unscored.filter(position__gt=position["position"])
    more_rows = items_with_details(unscored.order_by("position"), query.visibility, limit=remaining + 1)
    if len(more_rows) > remaining:
        more_rows = more_rows[:remaining]
        rows.extend(more_rows)
        return rows, cursor_encode({"phase": "unscored", "position": more_rows[-1].position})
    rows.extend(more_rows)
    return rows, None
