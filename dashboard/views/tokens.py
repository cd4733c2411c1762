"""The user's personal API tokens: make one (its secret shown once, on this very answer), list, revoke.

A new token's secret is rendered in the POST's own response, never put in the session or a redirect's
URL: only its hash is kept, and nothing should carry the secret beyond the page that shows it.
"""

from __future__ import annotations

from datetime import timedelta

from django import forms
from django.contrib import messages
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path, reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from dashboard.http import HtmxHttpRequest
from evals.models import ApiToken
from evals.services.tokens import TokenError, api_token_create, api_token_revoke

EXPIRY_CHOICES = [
    ("7", "In 7 days"),
    ("30", "In 30 days"),
    ("90", "In 90 days"),
    ("365", "In a year"),
    ("never", "Never"),
]


class ApiTokenForm(forms.Form):
    # Not required and no max_length here: the service checks the name, and says what is wrong in its words.
    name = forms.CharField(
        required=False,
        widget=forms.TextInput(attrs={"maxlength": 100, "required": True, "autocomplete": "off"}),
        help_text="What will use it, e.g. “nightly CI eval”; it tells your tokens apart.",
    )
    scope = forms.ChoiceField(
        choices=ApiToken.Scope.choices,
        initial=ApiToken.Scope.READ,
        widget=forms.RadioSelect,
        help_text="Read sees runs, datasets and scores; write also uploads, starts, cancels and shares.",
    )
    expires_in = forms.ChoiceField(choices=EXPIRY_CHOICES, initial="90", label="Expires")


def _owner(request: HtmxHttpRequest) -> User:
    # LoginRequiredMiddleware lets no anonymous visitor this far; this says so to the type checker.
    if not isinstance(request.user, User):
        raise PermissionDenied
    return request.user


@never_cache
@require_http_methods(["GET", "POST"])
def token_list(request: HtmxHttpRequest) -> HttpResponse:
    owner = _owner(request)
    form = ApiTokenForm(request.POST or None)
    new_token = None
    if request.method == "POST" and form.is_valid():
        days = form.cleaned_data["expires_in"]
        try:
            token, secret = api_token_create(
                user=owner,
                name=form.cleaned_data["name"],
                scope=form.cleaned_data["scope"],
                expires_at=None if days == "never" else timezone.now() + timedelta(days=int(days)),
            )
        except TokenError as exc:
            form.add_error(None, str(exc))
        else:
            new_token = {"id": token.pk, "name": token.name, "secret": secret}
            form = ApiTokenForm()
    context = {
        "form": form,
        "tokens": ApiToken.objects.filter(user=owner),
        "new_token": new_token,
        "runs_url": request.build_absolute_uri(reverse("api:api-root") + "runs/"),
        "now": timezone.now(),
    }
    return render(request, "dashboard/token_list.html", context, status=400 if form.errors else 200)


@require_POST
def token_revoke(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    # Another user's token is not found: whether it exists is not this user's business.
    token = get_object_or_404(ApiToken, pk=pk, user=_owner(request))
    api_token_revoke(token=token)
    messages.success(request, f"Revoked “{token.name}”. Requests that send it now get 401.")
    return redirect("token_list")


urlpatterns = [
    path("settings/tokens/", token_list, name="token_list"),
    path("settings/tokens/<int:pk>/revoke/", token_revoke, name="token_revoke"),
]
