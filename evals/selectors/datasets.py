"""What the dataset and upload pages list, and a dataset's rows page by page."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypedDict

from django.db.models import Q, QuerySet
from django.db.models.functions import Substr

from evals.models import INPUT_FIELDS, Dataset, Example, Upload


def upload_duplicates(upload: Upload) -> QuerySet[Dataset]:
    """Datasets imported from a file with the same SHA-256."""
    return (
        Dataset.objects.filter(sha256=upload.sha256)
        .exclude(status=Dataset.Status.FAILED)
        .order_by("-created_at")
    )


def dataset_input_counts(dataset: Dataset) -> dict[str, int]:
    """How many rows carry each judge input field."""
    examples = dataset.examples.all()
    counts = {}
    for name in INPUT_FIELDS:
        if name in ("contexts", "turns"):
            filled = examples.exclude(**{f"{name}__isnull": True}).exclude(**{name: []})
        else:
            filled = examples.exclude(**{name: ""})
        counts[name] = filled.count()
    return counts


# Only the start of each text: a row may hold megabytes.
EXCERPT_CHARS = 240
ROWS_PER_PAGE = 50


class RowExcerpt(TypedDict):
    """A row in a list of rows: where it is, and the first EXCERPT_CHARS characters of its texts."""

    position: int
    source_line: int
    request_head: str
    response_head: str
    expected_head: str


@dataclass(frozen=True)
class RowsPage:
    """One page of a dataset's rows, in position order."""

    rows: list[RowExcerpt]
    has_previous: bool
    has_next: bool

    @property
    def first_position(self) -> int | None:
        return self.rows[0]["position"] if self.rows else None

    @property
    def last_position(self) -> int | None:
        return self.rows[-1]["position"] if self.rows else None


def dataset_rows_page(
    *,
    dataset: Dataset,
    search: str = "",
    before: int | None = None,
    after: int | None = None,
    size: int = ROWS_PER_PAGE,
) -> RowsPage:
    """The rows after position `after` (or before `before`), optionally only those whose request or
    response contains `search` (ignoring case).

    Keyset pagination (WHERE position > last, never OFFSET, on the (dataset, position) unique index):
    without a search, a page deep in a million rows costs what the first does.
    """
    matching = Example.objects.filter(dataset=dataset)
    if search:
        matching = matching.filter(Q(request__icontains=search) | Q(response__icontains=search))
    rows = matching.annotate(
        request_head=Substr("request", 1, EXCERPT_CHARS),
        response_head=Substr("response", 1, EXCERPT_CHARS),
        expected_head=Substr("expected_output", 1, EXCERPT_CHARS),
    ).values("position", "source_line", "request_head", "response_head", "expected_head")
    if before is not None:
        page = list(rows.filter(position__lt=before).order_by("-position")[: size + 1])
        return RowsPage(rows=page[:size][::-1], has_previous=len(page) > size, has_next=True)
    start = after if after is not None else -1
    page = list(rows.filter(position__gt=start).order_by("position")[: size + 1])
    has_next = len(page) > size
    page = page[:size]
    has_previous = start >= 0 and bool(page) and matching.filter(position__lt=page[0]["position"]).exists()
    return RowsPage(rows=page, has_previous=has_previous, has_next=has_next)
