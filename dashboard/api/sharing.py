"""API: compare two runs (the CI gate against a baseline) and manage a run's share links.

The comparison is compare_runs --json, the same numbers as the compare page; share links are made and
revoked by the same services as the share page, and the token of a new link is answered once.
"""

from __future__ import annotations

import math
from datetime import datetime

from django.http import HttpRequest
from django.urls import reverse
from ninja import Field, Router, Schema, Status
from pydantic import AwareDatetime, ConfigDict

from dashboard.api.core import Problem, Text, absolute_url, errors, keyset_page, run_or_404
from dashboard.http import row_number
from evals.models import Run, ShareLink
from evals.selectors.compare import comparison_as_dict, runs_compare, shared_evaluators
from evals.services.sharing import ShareError, share_link_create, share_link_revoke

router = Router(tags=["compare and share"])


# --- Compare ------------------------------------------------------------------------------------------


class CompareDataset(Schema):
    id: int
    name: str


class CompareSide(Schema):
    id: int
    name: str
    status: str
    dataset: CompareDataset
    judge: str
    evaluator_ids: list[str] = Field(description="The run's evaluator set; empty: the whole judge.")


class CompareKeys(Schema):
    a: int
    b: int


class CompareEvaluator(Schema):
    """One shared evaluator: d = B - A over the pairs both scored, with its paired 95% interval."""

    name: str
    pairs: int
    mean_a: float | None
    mean_b: float | None
    diff: float | None
    ci_low: float | None
    ci_high: float | None
    verdict: str
    regression: bool = Field(description="The 95% interval of B - A lies wholly below 0.")
    improved: int
    regressed: int
    unchanged: int
    unscored_pairs: int
    threshold_a: float
    threshold_source_a: str
    threshold_b: float
    threshold_source_b: str
    pass_to_fail: int
    fail_to_pass: int
    reviewed_a: int = Field(0, description="Pairs whose A score carries a human review (with `corrected`).")
    reviewed_b: int = Field(0, description="Pairs whose B score carries a human review (with `corrected`).")


class CompareCost(Schema):
    """Each run's cost per item over its own costed items (the judge's currency), and B - A."""

    per_item_a: float | None
    per_item_b: float | None
    per_item_change: float | None = Field(description="B - A; null unless both are known.")
    total_a: float
    total_b: float
    items_a: int = Field(description="Items of A whose cost is known.")
    items_b: int = Field(description="Items of B whose cost is known.")


class CompareOut(Schema):
    a: CompareSide
    b: CompareSide
    paired_by: str = Field(description='"position" (same dataset) or "input" (the examples\' input keys).')
    pairs: int
    only_a: int
    only_b: int
    duplicated_keys: CompareKeys
    evaluators: list[CompareEvaluator]
    evaluators_only_a: list[str]
    evaluators_only_b: list[str]
    regression: bool = Field(description="Some evaluator's row has regression true.")
    corrected: bool = Field(
        description="Both runs were read with human corrections (the `corrected` parameter)."
    )
    warnings: list[str]
    cost: CompareCost


def _compared_run(raw: str, field: str) -> Run:
    """Run A or B from the query; the problem names the parameter, as compare_runs names the side."""
    pk = row_number(raw.strip())
    if pk is None:
        raise Problem.invalid(field, "not a run id", detail=f'{field} must be a run id, not "{raw[:40]}".')
    run = Run.objects.select_related("dataset", "judge").filter(pk=pk).first()
    if run is None:
        raise Problem(
            404,
            f"There is no run {pk} to use as {field.upper()}.",
            errors=[{"field": field, "message": "no such run"}],
        )
    return run


@router.get("/compare/", response={200: CompareOut, **errors(404, 422)}, url_name="compare")
def compare(
    request: HttpRequest, a: str, b: str, threshold: float | None = None, corrected: bool = False
) -> dict[str, object]:
    """Run B against run A, evaluator by evaluator (B - A: positive means B scored higher).

    `threshold` replaces both runs' own pass thresholds for every shared evaluator, as
    `compare_runs --threshold` does. `corrected` reads both runs with human corrections: a reviewed
    score counts as its latest review says (as `compare_runs --corrected` and the page's toggle).
    """
    run_a, run_b = _compared_run(a, "a"), _compared_run(b, "b")
    overrides: dict[str, float] = {}
    if threshold is not None:
        if not math.isfinite(threshold):
            raise Problem.invalid(
                "threshold", "not a finite number", detail="threshold must be a finite number."
            )
        overrides = dict.fromkeys(shared_evaluators(run_a, run_b), threshold)
    return comparison_as_dict(runs_compare(a=run_a, b=run_b, thresholds=overrides, corrected=corrected))


# --- Share links --------------------------------------------------------------------------------------


class ShareLinkOut(Schema):
    # By name too: the new link's answer is built from this one's fields.
    model_config = ConfigDict(from_attributes=True, populate_by_name=True)

    id: int
    label: str
    hide_text: bool
    show_justifications: bool
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None
    use_count: int
    usable: bool = Field(validation_alias="is_usable")


class ShareLinkCreated(ShareLinkOut):
    token: str = Field(description="The link's secret: answered now only, never again.")
    url: str = Field(description="The link's page, to send to people without an account.")


class ShareLinkPage(Schema):
    items: list[ShareLinkOut]
    next_cursor: str | None


class ShareLinkIn(Schema):
    model_config = ConfigDict(extra="forbid")

    label: Text = Field("", max_length=200, description="Who it is for, e.g. “Acme review”.")
    expires_at: AwareDatetime | None = Field(None, description="When it stops working (with a timezone).")
    hide_text: bool = Field(
        False,
        description="Keep the row key, request, response, contexts, expected output, turns out of its pages.",
    )
    show_justifications: bool = Field(
        False, description="With hide_text: show the justifications anyway (they may quote the text)."
    )


@router.get(
    "/runs/{run_id}/share-links/",
    response={200: ShareLinkPage, **errors(404, 422)},
    url_name="share_link_list",
)
def share_link_list(
    request: HttpRequest, run_id: int, limit: int | None = None, cursor: str | None = None
) -> dict[str, object]:
    """The run's share links, newest first, usable or not (the tokens themselves are not kept)."""
    rows, next_cursor = keyset_page(run_or_404(run_id).share_links.all(), cursor=cursor, limit=limit)
    return {"items": rows, "next_cursor": next_cursor}


@router.post(
    "/runs/{run_id}/share-links/",
    response={201: ShareLinkCreated, **errors(403, 404, 422)},
    url_name="share_link_create",
)
def share_link_post(request: HttpRequest, run_id: int, payload: ShareLinkIn) -> Status[ShareLinkCreated]:
    """Make a read-only link to the run; its token and url are in this answer only."""
    run = run_or_404(run_id)
    try:
        link, token = share_link_create(
            run=run,
            created_by=request.user,  # the token's user (core's ApiAuth)
            label=payload.label,
            expires_at=payload.expires_at,
            hide_text=payload.hide_text,
            show_justifications=payload.show_justifications,
        )
    except ShareError as exc:
        raise Problem(422, str(exc)) from exc
    url = absolute_url(request, reverse("shared_run_detail", args=[token]))
    return Status(201, ShareLinkCreated(**ShareLinkOut.from_orm(link).model_dump(), token=token, url=url))


@router.delete(
    "/runs/{run_id}/share-links/{link_id}/",
    response={200: ShareLinkOut, **errors(403, 404, 422)},
    url_name="share_link_revoke",
)
def share_link_delete(request: HttpRequest, run_id: int, link_id: int) -> ShareLink:
    """Revoke the link at once: opening it gives a not-found page. Revoking twice answers the same."""
    link = ShareLink.objects.filter(pk=link_id, run=run_or_404(run_id)).first()
    if link is None:
        raise Problem(404, f"Run {run_id} has no share link {link_id}.")
    return share_link_revoke(link=link)
