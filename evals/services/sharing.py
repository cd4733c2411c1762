"""Share links: read-only access to one run for people without an account."""

from __future__ import annotations

import secrets
from datetime import datetime

from django.contrib.auth.models import AnonymousUser, User
from django.utils import timezone

from evals.models import Run, ShareLink


class ShareError(Exception):
    """A share link that cannot be made or changed; the message is for the user."""


def share_link_create(
    *,
    run: Run,
    created_by: User | AnonymousUser | None,
    label: str = "",
    expires_at: datetime | None = None,
    hide_text: bool = False,
    show_justifications: bool = False,
) -> tuple[ShareLink, str]:
    """Make a link and return it with its token; only the token's SHA-256 is stored, so show it now.

    `show_justifications` matters only with `hide_text`: the justifications may quote the hidden text,
    so a link that hides the text hides them too unless its maker says otherwise.
    """
    if expires_at is not None and expires_at <= timezone.now():
        raise ShareError("The expiry must be in the future.")
    token = secrets.token_urlsafe(32)
    link = ShareLink.objects.create(
        run=run,
        token_hash=ShareLink.hash_token(token),
        label=label.strip()[:200],
        hide_text=hide_text,
        show_justifications=hide_text and show_justifications,
        created_by=created_by if isinstance(created_by, User) else None,
        expires_at=expires_at,
    )
    return link, token


def share_link_revoke(*, link: ShareLink) -> ShareLink:
    if link.revoked_at is None:
        link.revoked_at = timezone.now()
        link.save(update_fields=["revoked_at"])
    return link
