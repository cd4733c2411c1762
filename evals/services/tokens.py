"""Personal API tokens: made once and shown once, stored as SHA-256, revoked but never edited."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from django.contrib.auth.models import User
from django.utils import timezone

from evals.models import ApiToken

PREFIX = "dkt_"
# last_used_at is written at most this often per token, so a busy CI client does not write per request.
LAST_USED_EVERY = timedelta(minutes=1)


class TokenError(Exception):
    """A token that cannot be made as asked; the message is for the user."""


def api_token_create(
    *, user: User, name: str, scope: str = ApiToken.Scope.READ, expires_at: datetime | None = None
) -> tuple[ApiToken, str]:
    """Make a token and return it with its secret, which is not kept: show it now."""
    name = " ".join(name.split())
    if not name:
        raise TokenError("A token needs a name, such as the CI job that will use it.")
    if len(name) > 100:
        raise TokenError("A token name can be at most 100 characters.")
    if scope not in ApiToken.Scope.values:
        raise TokenError(f'Scope must be "read" or "write", not "{scope}".')
    if expires_at is not None and expires_at <= timezone.now():
        raise TokenError("The expiry must be in the future.")
    secret = PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        user=user,
        name=name,
        token_hash=ApiToken.hash_token(secret),
        prefix=secret[:8],
        scope=scope,
        expires_at=expires_at,
    )
    return token, secret


def api_token_revoke(*, token: ApiToken) -> ApiToken:
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
    return token


def api_token_authenticate(secret: str) -> ApiToken | None:
    """The usable token with this secret (and its user), or None: unknown, revoked and expired alike."""
    if not secret.startswith(PREFIX) or len(secret) > 200:
        return None
    token = (
        ApiToken.objects.usable()
        .select_related("user")
        .filter(token_hash=ApiToken.hash_token(secret), user__is_active=True)
        .first()
    )
    if token is None:
        return None
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at >= LAST_USED_EVERY:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
    return token
