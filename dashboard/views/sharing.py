"""Managing a run's share links (teammates only); the shared pages themselves live with the run views."""

from __future__ import annotations

from datetime import timedelta

from django import forms
from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path, reverse
from django.utils import timezone
from django.views.decorators.http import require_http_methods, require_POST

from dashboard.http import HtmxHttpRequest
from evals.models import Run, ShareLink
from evals.services.sharing import ShareError, share_link_create, share_link_revoke

EXPIRY_CHOICES = [
    ("", "Never"),
    ("1", "In 1 day"),
    ("7", "In 7 days"),
    ("30", "In 30 days"),
    ("90", "In 90 days"),
]
NEW_LINK_SESSION_KEY = "docket-new-share-link"


class ShareLinkForm(forms.Form):
    label = forms.CharField(max_length=200, required=False, help_text="Who it is for, e.g. “Acme review”.")
    expires_in = forms.ChoiceField(choices=EXPIRY_CHOICES, required=False, label="Expires")
    hide_text = forms.BooleanField(
        required=False,
        label="Hide the text",
        help_text=(
            "The row key, request, response, contexts, expected output, turns and system prompt never reach the "
            "link's pages or exports; scores and metadata stay."
        ),
    )
    show_justifications = forms.BooleanField(
        required=False,
        label="Show justifications (they may quote the text)",
        help_text="With hidden text, justifications are hidden too unless you tick this; search reads only them.",
    )


@require_http_methods(["GET", "POST"])
def run_share(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    run = get_object_or_404(Run.objects.select_related("dataset", "judge"), pk=pk)
    form = ShareLinkForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        days = form.cleaned_data["expires_in"]
        expires_at = timezone.now() + timedelta(days=int(days)) if days else None
        try:
            link, token = share_link_create(
                run=run,
                created_by=request.user,
                label=form.cleaned_data["label"],
                expires_at=expires_at,
                hide_text=form.cleaned_data["hide_text"],
                show_justifications=form.cleaned_data["show_justifications"],
            )
        except ShareError as exc:
            messages.error(request, str(exc))
        else:
            # Shown once: only the token's hash is kept.
            request.session[NEW_LINK_SESSION_KEY] = {
                "id": link.pk,
                "url": request.build_absolute_uri(reverse("shared_run_detail", args=[token])),
            }
            return redirect("run_share", pk=run.pk)
    new_link = request.session.pop(NEW_LINK_SESSION_KEY, None)
    links = run.share_links.select_related("created_by")
    return render(
        request,
        "dashboard/run_share.html",
        {"run": run, "form": form, "links": links, "new_link": new_link, "now": timezone.now()},
    )


@require_POST
def run_share_revoke(request: HtmxHttpRequest, pk: int, link_pk: int) -> HttpResponse:
    link = get_object_or_404(ShareLink, pk=link_pk, run_id=pk)
    share_link_revoke(link=link)
    messages.success(request, f"Revoked {link}. Anyone opening it now gets a not-found page.")
    return redirect("run_share", pk=pk)


urlpatterns = [
    path("runs/<int:pk>/share/", run_share, name="run_share"),
    path("runs/<int:pk>/share/<int:link_pk>/revoke/", run_share_revoke, name="run_share_revoke"),
]
