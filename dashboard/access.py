"""Who may read a run, and where its pages live: teammates under /runs/<pk>/, share links under /s/<token>/.

A read-only view is written once, as `view(request, access)`, and mounted twice: `team(view)` for
logged-in users and `shared(view)` for share links. A share link reaches exactly one run, only with
GET, and its pages tell browsers and robots not to keep them. Revoked, expired and wrong tokens all
get the same not-found page.

What a link may see is `RunAccess.visibility`, applied where the data is read (evals.selectors): the
run is blanked as the access is made, rows as they are loaded, and the results view comes from
`RunAccess.results_query`, so a page or an export made for a link never holds what the link hides.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.decorators import login_not_required
from django.db.models import F
from django.http import Http404, HttpRequest, HttpResponseBase, HttpResponseNotAllowed, QueryDict
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.utils import timezone

from evals.models import Run, ShareLink
from evals.selectors.results import ResultsQuery
from evals.selectors.visibility import ALL, Visibility

RUN_RELATED = ("dataset", "judge", "created_by", "retry_of")


@dataclass(frozen=True)
class RunAccess:
    run: Run
    share: ShareLink | None = None
    token: str = ""

    def __post_init__(self) -> None:
        # The run is loaded for this one request and never saved by a read-only view: blank it now.
        self.visibility.redact_run(self.run)

    @property
    def read_only(self) -> bool:
        return self.share is not None

    @property
    def hide_text(self) -> bool:
        """Share links may hide each row's text (scores stay; justifications only if the link says so)."""
        return bool(self.share and self.share.hide_text)

    @property
    def visibility(self) -> Visibility:
        """Teammates see everything; a link never sees internal ids, and may hide text and justifications."""
        if self.share is None:
            return ALL
        hide = self.share.hide_text
        return Visibility(
            texts=not hide,
            justifications=not hide or self.share.show_justifications,
            internal_ids=False,
        )

    def results_query(self, params: QueryDict) -> ResultsQuery:
        """The results view the URL asks for, searching and showing only what this reader may see."""
        return ResultsQuery.from_params(params, run=self.run, visibility=self.visibility)

    def url(self, name: str, *args: Any) -> str:
        """The URL of page `name` of this run ("detail", "live", "stats", "item", "export"...)."""
        if self.share is not None:
            return reverse(f"shared_run_{name}", args=[self.token, *args])
        return reverse(f"run_{name}", args=[self.run.pk, *args])


View = Callable[..., HttpResponseBase]


def team(view: View) -> View:
    """Mount a run view for logged-in users: /runs/<pk>/..."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, pk: int, *args: Any, **kwargs: Any) -> HttpResponseBase:
        run = get_object_or_404(Run.objects.select_related(*RUN_RELATED), pk=pk)
        return view(request, RunAccess(run=run), *args, **kwargs)

    return wrapper


def shared(view: View, *, record_use: bool = True) -> View:
    """Mount a run view for a share link: /s/<token>/..., read-only, never cached, never indexed.

    `record_use=False` for the live endpoint: its polls are not visits, and need not write.
    """

    @login_not_required
    @functools.wraps(view)
    def wrapper(request: HttpRequest, token: str, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if request.method not in ("GET", "HEAD"):
            return _no_store(HttpResponseNotAllowed(["GET", "HEAD"]))
        link = (
            ShareLink.objects.usable()
            .select_related(*(f"run__{name}" for name in RUN_RELATED))
            .filter(token_hash=ShareLink.hash_token(token))
            .first()
        )
        if link is None:
            raise Http404("No such share link.")
        if record_use:
            ShareLink.objects.filter(pk=link.pk).update(
                last_used_at=timezone.now(), use_count=F("use_count") + 1
            )
        response = view(request, RunAccess(run=link.run, share=link, token=token), *args, **kwargs)
        return _no_store(response)

    return wrapper


def _no_store(response: HttpResponseBase) -> HttpResponseBase:
    response["Cache-Control"] = "private, no-store"
    response["X-Robots-Tag"] = "noindex, nofollow"
    response["Referrer-Policy"] = "no-referrer"
    return response
