"""A run's items through the API: the results table a page at a time, and its exports (CSV, JSON Lines).

The same reads as the run's page (`evals.selectors.results`, `evals.selectors.export`), with the page's
filters and sorts taken from the query string.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, StreamingHttpResponse
from ninja import Field, Query, Router, Schema

from dashboard.api.core import Limit, Problem, download, errors, page_limit, run_or_404, streamed
from evals.models import Item
from evals.selectors.export import CONTENT_TYPES, export_filename, export_stream
from evals.selectors.results import ResultsQuery, results_page
from evals.selectors.results_cursor import results_cursor_fits

router = Router()


# --- Shapes -------------------------------------------------------------------------------------------


class ScoreOut(Schema):
    evaluator: str
    score: float | None
    justification: str


class ItemOut(Schema):
    id: int
    position: int = Field(
        description="The row's number in the dataset, from 1, as the page and exports show it."
    )
    key: str = Field(description='The key column mapped at upload; "" for rows paired by their inputs.')
    status: str
    error: str
    request: str
    response: str
    contexts: list[Any]
    expected_output: str
    system_prompt: str
    turns: list[Any] | None
    metadata: dict[str, Any]
    scores: list[ScoreOut]
    cost: float | None = Field(
        description="What judging the item cost; null until its batch's logs are read."
    )
    evaluator_costs: dict[str, float] | None = Field(description="Each evaluator's share of `cost`.")


class ItemPage(Schema):
    items: list[ItemOut]
    next_cursor: str | None


class ItemFilters(Schema):
    """The results table's view, read from the query string by ResultsQuery as the page reads it.

    Also `min.<evaluator>` / `max.<evaluator>` (a score range) and `meta.<column>` (a metadata value).
    Unknown sorts and statuses are ignored, as on the page.
    """

    sort: str | None = Field(
        None,
        description='"position", "status" or "score:<evaluator>", "-" first to reverse. Default: the first '
        "evaluator's score, worst first, once the run has finished; else position.",
    )
    status: str | None = None
    q: str | None = Field(None, description="Search in request, response and justifications.")
    view: str | None = Field(None, description='"latest": the newest verdict per row across the retries.')


# --- Helpers ------------------------------------------------------------------------------------------


def _item(item: Item, order: dict[str, int]) -> dict[str, Any]:
    example = item.example
    scores = sorted(
        item.scores.all(),
        key=lambda score: (order.get(score.evaluator_name, len(order)), score.evaluator_name),
    )
    return {
        "id": item.pk,
        "position": item.position + 1,
        "key": example.key,
        "status": item.status,
        "error": item.error_message,
        "request": example.request,
        "response": example.response,
        "contexts": list(example.contexts or []),
        "expected_output": example.expected_output,
        "system_prompt": example.system_prompt,
        "turns": example.turns,
        "metadata": example.metadata if isinstance(example.metadata, dict) else {},
        "scores": [
            {"evaluator": score.evaluator_name, "score": score.score, "justification": score.justification}
            for score in scores
        ],
        "cost": item.cost,
        "evaluator_costs": item.evaluator_costs if isinstance(item.evaluator_costs, dict) else None,
    }


def _check_cursor(cursor: str | None, query: ResultsQuery) -> None:
    """422 for a cursor this view did not give: the page would silently start again at the top."""
    if cursor and not results_cursor_fits(cursor, query):
        raise Problem.invalid(
            "cursor",
            "not a cursor this API gave for this view",
            detail="cursor is not one this API gave for this view (same sort and filters); start again without it.",
        )


# --- Endpoints ----------------------------------------------------------------------------------------


@router.get(
    "/runs/{int:run_id}/items/", response={200: ItemPage, **errors(404, 422)}, summary="A run's items"
)
def list_items(
    request: HttpRequest,
    run_id: int,
    filters: Query[ItemFilters],
    limit: Limit | None = None,
    cursor: str | None = None,
) -> dict[str, Any]:
    """The results table: its filters and sorts (see the parameters), a page at a time."""
    run = run_or_404(run_id, "dataset")
    query = ResultsQuery.from_params(request.GET, run=run)
    size = page_limit(limit)
    _check_cursor(cursor, query)
    page = results_page(run, query, cursor=cursor or None, size=size)
    order = {name: index for index, name in enumerate(run.evaluators)}
    return {"items": [_item(item, order) for item in page.rows], "next_cursor": page.next_cursor}


def _export(request: HttpRequest, run_id: int, fmt: str, *, corrected: bool) -> StreamingHttpResponse:
    run = run_or_404(run_id, "dataset")
    params = request.GET.copy()
    # As the page's export: without a sort of its own an export is in row order.
    if not params.get("sort"):
        params["sort"] = "position"
    query = ResultsQuery.from_params(params, run=run)
    return download(
        export_stream(run, query, fmt=fmt, corrected=corrected),
        content_type=CONTENT_TYPES[fmt],
        filename=export_filename(run, fmt, query=query, corrected=corrected),
    )


@router.get(
    "/runs/{int:run_id}/export.csv",
    response=errors(404, 422),
    openapi_extra=streamed("text/csv", "One row per item, streamed; the same columns as the page's export."),
    summary="Export a run as CSV",
)
def export_csv(request: HttpRequest, run_id: int, corrected: bool = False) -> StreamingHttpResponse:
    """The results view the query string describes (the items' filters and sort; default: row order).

    A reviewed run's export carries each score's review; `corrected` adds the score with human corrections.
    """
    return _export(request, run_id, "csv", corrected=corrected)


@router.get(
    "/runs/{int:run_id}/export.jsonl",
    response=errors(404, 422),
    openapi_extra=streamed("application/x-ndjson", "One JSON object per item and line, streamed."),
    summary="Export a run as JSON Lines",
)
def export_jsonl(request: HttpRequest, run_id: int, corrected: bool = False) -> StreamingHttpResponse:
    """The results view the query string describes (the items' filters and sort; default: row order).

    A reviewed run's export carries each score's review; `corrected` adds the score with human corrections.
    """
    return _export(request, run_id, "jsonl", corrected=corrected)
