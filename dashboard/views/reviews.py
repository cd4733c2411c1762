"""Review mode: a teammate walks a queue of a run's items and marks each evaluator's verdict pass or fail.

`run_review` without queue parameters is the queue chooser; with them (`order`, `n`, `seed`, `evaluator`,
`i`) it is one item of that queue, and `?item=<pk>` opens an item where it sits in the queue. Marks
post to `run_review_save`, which works as a plain form (post, redirect back) and, from htmx, answers
with the evaluator's card and the progress line. Team only: nothing here is mounted for share links.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.db.models import Count, Max
from django.http import Http404, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import NoReverseMatch, URLPattern, path, reverse
from django.views.decorators.http import require_GET, require_POST

from dashboard.access import RunAccess, team
from dashboard.http import HtmxHttpRequest, row_number
from evals.models import Item, Review, Run, Score
from evals.services.review_queue import (
    DEFAULT_SIZE,
    MAX_SIZE,
    ORDERS,
    QueueError,
    QueueSpec,
    new_seed,
    queue_spec_from_params,
    review_queue,
    reviewed_by,
)
from evals.services.reviews import ReviewError, review_clear, review_save

QUEUE_PARAMS = ("order", "n", "seed", "evaluator", "i", "item")
# How the chooser names each queue parameter in a message.
FIELD_LABELS = {
    "order": "Order",
    "n": "Number of items (n)",
    "seed": "Seed",
    "evaluator": "Evaluator",
    "i": "Place in the queue (i)",
}


def _calibration_url(run: Run) -> str | None:
    # The calibration page is another part of issue 13; until it is mounted, no tab.
    try:
        return reverse("run_calibration", args=[run.pk])
    except NoReverseMatch:
        return None


def _queue_url(run: Run, spec: QueueSpec, index: int) -> str:
    return reverse("run_review", args=[run.pk]) + "?" + urlencode({**spec.params(), "i": index})


def _progress(run: Run, ids: list[int], request: HtmxHttpRequest) -> dict[str, Any]:
    done_ids = reviewed_by(run=run, reviewer=request.user)
    done = sum(1 for item_id in ids if item_id in done_ids)
    return {
        "done": done,
        "total": len(ids),
        "percent": f"{100 * done / len(ids):.1f}" if ids else "0",
        "done_ids": done_ids,
    }


def _start(
    request: HtmxHttpRequest,
    access: RunAccess,
    *,
    error: QueueError | None = None,
    notice: str = "",
    status: int = 200,
) -> HttpResponse:
    """The queue chooser: what there is to review, what has been reviewed, and a form to start."""
    run = access.run
    every = review_queue(run=run, spec=QueueSpec())
    done_ids = reviewed_by(run=run, reviewer=request.user)
    first_open = next((index for index, item_id in enumerate(every) if item_id not in done_ids), None)
    reviewers = list(
        Review.objects.filter(run=run)
        .values("reviewer_name")
        .annotate(reviews=Count("id"), items=Count("item_id", distinct=True), last=Max("updated_at"))
        .order_by("-reviews", "reviewer_name")
    )
    params = request.GET
    return render(
        request,
        "dashboard/review_start.html",
        {
            "access": access,
            "run": run,
            "orders": ORDERS,
            "order": params.get("order", "") if params.get("order", "") in ORDERS else "bands",
            "size": params.get("n", "")[:12] if error else "",
            "evaluator": params.get("evaluator", "") if params.get("evaluator", "") in run.evaluators else "",
            "default_size": DEFAULT_SIZE,
            "max_size": MAX_SIZE,
            "error": error,
            "error_label": FIELD_LABELS.get(error.field, error.field) if error else "",
            "notice": notice,
            "reviewable": len(every),
            "mine": sum(1 for item_id in every if item_id in done_ids),
            "continue_url": _queue_url(run, QueueSpec(), first_open) if first_open is not None else None,
            "reviewers": reviewers,
            "review_count": sum(row["reviews"] for row in reviewers),
            "calibration_url": _calibration_url(run),
        },
        status=status,
    )


def _cards(run: Run, item: Item, request: HtmxHttpRequest) -> list[dict[str, Any]]:
    """One card per evaluator of the run: the judge's verdict, your review, everyone else's."""
    scores = {score.evaluator_name: score for score in Score.objects.filter(item=item)}
    names = list(run.evaluators) + sorted(name for name in scores if name not in run.evaluators)
    reviews: dict[str, list[Review]] = {}
    for review in Review.objects.filter(item=item).order_by("-updated_at", "-id"):
        reviews.setdefault(review.evaluator_name, []).append(review)
    cards = []
    for index, name in enumerate(names):
        score = scores.get(name)
        value = score.score if score else None
        threshold, source = run.threshold_for(name)
        mine = next((r for r in reviews.get(name, []) if r.reviewer_id == request.user.pk), None)
        cards.append(
            {
                "index": index,
                "name": name,
                "score": score,
                "value": value,
                # review_save takes only the run's own evaluators.
                "reviewable": value is not None and name in run.evaluators,
                "threshold": threshold,
                "threshold_source": source,
                "judge_passed": run.passes(name, value),
                "mine": mine,
                "others": [r for r in reviews.get(name, []) if r.reviewer_id != request.user.pk],
                "agrees": None if mine is None or value is None else mine.passed == run.passes(name, value),
            }
        )
    return cards


def _item_page(
    request: HtmxHttpRequest, access: RunAccess, spec: QueueSpec, ids: list[int], index: int
) -> HttpResponse:
    run = access.run
    progress = _progress(run, ids, request)
    done_ids = progress["done_ids"]
    page = {
        "access": access,
        "run": run,
        "spec": spec,
        "total": len(ids),
        "progress": progress,
        "start_url": reverse("run_review", args=[run.pk]),
        "calibration_url": _calibration_url(run),
    }
    if index >= len(ids):
        first_open = next((n for n, item_id in enumerate(ids) if item_id not in done_ids), None)
        return render(
            request,
            "dashboard/review_item.html",
            {
                **page,
                "item": None,
                "previous_url": _queue_url(run, spec, len(ids) - 1) if ids else None,
                "first_open_url": _queue_url(run, spec, first_open) if first_open is not None else None,
            },
        )
    item = Item.objects.select_related("example").filter(pk=ids[index], run=run).first()
    if item is None:
        raise Http404("No such item in this run.")
    example = item.example
    next_open = next(
        (n for n in range(index + 1, len(ids)) if ids[n] not in done_ids),
        None,
    )
    cards = _cards(run, item, request)
    # The first card to focus: the queue's own evaluator, else the first one you have not marked.
    focus = next(
        (card["index"] for card in cards if card["reviewable"] and card["name"] == spec.evaluator),
        next((card["index"] for card in cards if card["reviewable"] and card["mine"] is None), 0),
    )
    return render(
        request,
        "dashboard/review_item.html",
        {
            **page,
            "item": item,
            "example": example,
            "index": index,
            "item_done": item.pk in done_ids,
            "cards": cards,
            "focus": focus,
            "save_url": reverse("run_review_save", args=[run.pk, item.pk])
            + "?"
            + urlencode({**spec.params(), "i": index}),
            "previous_url": _queue_url(run, spec, index - 1) if index > 0 else None,
            "next_url": _queue_url(run, spec, index + 1),
            "next_open_url": _queue_url(run, spec, next_open) if next_open is not None else None,
            "is_last": index == len(ids) - 1,
            "item_url": reverse("run_item", args=[run.pk, item.pk]),
            "texts": [
                ("Request", example.request),
                ("Response", example.response),
                ("Expected output", example.expected_output),
                ("System prompt", example.system_prompt),
            ],
        },
    )


@require_GET
def run_review(request: HtmxHttpRequest, access: RunAccess) -> HttpResponse:
    run = access.run
    params = request.GET
    if not any(name in params for name in QUEUE_PARAMS):
        return _start(request, access)
    try:
        spec = queue_spec_from_params(params, run=run)
    except QueueError as exc:
        return _start(request, access, error=exc, status=400)
    if spec.needs_seed:
        # A random queue gets its seed now and keeps it in the URL: reloading, going back and sharing
        # the link all show the same queue.
        spec = QueueSpec(order=spec.order, size=spec.size, seed=new_seed(), evaluator=spec.evaluator)
        return redirect(_queue_url(run, spec, 0))
    if "item" in params:
        return _open_item(request, access, spec, params.get("item"))
    raw_index = params.get("i", "0") or "0"
    index = row_number(raw_index)
    if index is None:
        error = QueueError("i", f'The place in the queue must be a whole number (got "{raw_index[:20]}").')
        return _start(request, access, error=error, status=400)
    ids = review_queue(run=run, spec=spec)
    if not ids:
        scored = f" of {spec.evaluator}" if spec.evaluator else ""
        notice = f"This queue is empty: no item has a score{scored} yet, so there is nothing to review."
        return _start(request, access, notice=notice)
    return _item_page(request, access, spec, ids, min(index, len(ids)))


def _open_item(
    request: HtmxHttpRequest, access: RunAccess, spec: QueueSpec, raw_pk: str | None
) -> HttpResponse:
    """`?item=<pk>`: the item in the queue the URL names if it is in it, else in the row-order queue."""
    run = access.run
    pk = row_number(raw_pk)
    item = Item.objects.filter(run=run, pk=pk).first() if pk is not None else None
    if item is None:
        raise Http404("No such item in this run.")
    if "order" in request.GET:
        ids = review_queue(run=run, spec=spec)
        if item.pk in ids:
            return redirect(_queue_url(run, spec, ids.index(item.pk)))
    every = review_queue(run=run, spec=QueueSpec())
    if item.pk in every:
        return redirect(_queue_url(run, QueueSpec(), every.index(item.pk)))
    messages.warning(
        request, f"Item {item.position + 1:,} has no score from the judge yet, so there is nothing to review."
    )
    return redirect(reverse("run_review", args=[run.pk]))


# --- Saving a review -------------------------------------------------------------------------------------


def _parse_score(raw: str) -> float | None:
    """The typed corrected score as a number (a decimal comma too); review_save checks its range."""
    text = raw.strip().replace(",", ".")
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        raise ReviewError(
            "score", f'The corrected score must be a number from 0 to 1 (got "{raw[:20]}").'
        ) from None


def _save_one(request: HtmxHttpRequest, run: Run, item: Item, evaluator: str, label: str) -> str:
    """Save, replace or clear the user's review of one evaluator; returns what happened, in words."""
    if label == "clear":
        if evaluator not in run.evaluators:
            raise ReviewError("evaluator", f'This run has no evaluator "{evaluator[:100]}".')
        cleared = review_clear(item=item, evaluator=evaluator, reviewer=request.user)
        return f"Cleared your review of {evaluator}." if cleared else f"You had not reviewed {evaluator}."
    mine = Review.objects.filter(item=item, evaluator_name=evaluator, reviewer_id=request.user.pk).first()
    # A field the form did not send keeps its value: a pass/fail key press keeps the comment and score.
    score = _parse_score(request.POST["score"]) if "score" in request.POST else (mine.score if mine else None)
    comment = request.POST.get("comment", mine.comment if mine else "")
    if label not in ("pass", "fail"):
        if label:
            raise ReviewError("label", 'The label must be "pass", "fail" or "clear".')
        if mine is not None:
            label = mine.label
        elif score is not None:
            # A corrected score alone is a verdict too: pass when it reaches the run's threshold.
            label = "pass" if run.passes(evaluator, score) else "fail"
        else:
            raise ReviewError("label", "Mark pass or fail (or give a corrected score) first.")
    _, created = review_save(
        item=item, evaluator=evaluator, reviewer=request.user, label=label, score=score, comment=comment
    )
    return f"{'Saved' if created else 'Changed'} your review of {evaluator}: {label}."


def _agree_all(request: HtmxHttpRequest, run: Run, item: Item) -> int:
    """Agree with the judge on every evaluator of the item the user has not marked yet; how many."""
    marked = set(
        Review.objects.filter(item=item, reviewer_id=request.user.pk).values_list("evaluator_name", flat=True)
    )
    saved = 0
    for name, value in Score.objects.filter(item=item, score__isnull=False).values_list(
        "evaluator_name", "score"
    ):
        if name in marked or name not in run.evaluators:
            continue
        verdict = run.passes(name, value)
        review_save(item=item, evaluator=name, reviewer=request.user, label="pass" if verdict else "fail")
        saved += 1
    return saved


@require_POST
def run_review_save(request: HtmxHttpRequest, access: RunAccess, item_pk: int) -> HttpResponse:
    run = access.run
    item = Item.objects.filter(run=run, pk=item_pk).select_related("example").first()
    if item is None:
        raise Http404("No such item in this run.")
    # The queue to return to travels in the action's query string; the review's fields in the body
    # (both have an "evaluator").
    try:
        spec = queue_spec_from_params(request.GET, run=run) if "order" in request.GET else QueueSpec()
    except QueueError:
        spec = QueueSpec()
    if spec.needs_seed:
        spec = QueueSpec()
    ids = review_queue(run=run, spec=spec)
    index = row_number(request.GET.get("i"))
    if index is None or index >= len(ids) or ids[index] != item.pk:
        if item.pk not in ids:
            spec, ids = QueueSpec(), review_queue(run=run, spec=QueueSpec())
        index = ids.index(item.pk) if item.pk in ids else 0
    label = request.POST.get("label", "").strip()
    evaluator = request.POST.get("evaluator", "")

    if label == "agree":
        saved = _agree_all(request, run, item)
        if saved:
            messages.success(
                request,
                f"Item {item.position + 1:,}: agreed with the judge on {saved} evaluator{'s' if saved != 1 else ''}.",
            )
        return redirect(_queue_url(run, spec, index + 1))

    error: ReviewError | None = None
    try:
        done = _save_one(request, run, item, evaluator, label)
    except ReviewError as exc:
        error, done = exc, ""
    if not request.htmx:
        if error:
            messages.error(request, f"{error.field.capitalize()}: {error.message}")
        else:
            messages.success(request, done)
        return HttpResponseRedirect(_queue_url(run, spec, index) + f"#review-{_card_index(run, evaluator)}")
    progress = _progress(run, ids, request)
    context: dict[str, Any] = {
        "access": access,
        "run": run,
        "item": item,
        "spec": spec,
        "index": index,
        "progress": progress,
        "item_done": item.pk in progress["done_ids"],
        "save_url": request.get_full_path(),
        "status_message": f"{error.field.capitalize()}: {error.message}" if error else done,
        "status_bad": error is not None,
        "oob": True,
    }
    card = next((card for card in _cards(run, item, request) if card["name"] == evaluator), None)
    if card is None:
        # No card to put the message in (an evaluator the run does not have): only the status line.
        response = render(request, "dashboard/review_item.html#review-status", context, status=400)
        response["HX-Reswap"] = "none"
        return response
    card["error"] = error
    if error and ("score" in request.POST or "comment" in request.POST):
        # What the reviewer typed comes back in the form, so a refused save loses nothing.
        card["draft"] = {
            "score": request.POST.get("score", "")[:40],
            "comment": request.POST.get("comment", ""),
        }
    context["card"] = card
    # The card swaps in place and the rest out of band: one mark changes four places (the card, the
    # progress bar, the item's state, the status line), which one #partial target cannot cover.
    return render(request, "dashboard/review_item.html#card-response", context, status=400 if error else 200)


def _card_index(run: Run, evaluator: str) -> int:
    return run.evaluators.index(evaluator) if evaluator in run.evaluators else 0


urlpatterns: list[URLPattern] = [
    path("runs/<int:pk>/review/", team(run_review), name="run_review"),
    path("runs/<int:pk>/review/<int:item_pk>/", team(run_review_save), name="run_review_save"),
]
