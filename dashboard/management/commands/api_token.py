"""Personal API tokens from the command line, e.g. for a CI server set up by a script.

    manage.py api_token create --user U --name N [--scope read|write] [--expires-days D|never]
    manage.py api_token list --user U
    manage.py api_token revoke --user U (--name N | --id ID)

`create` prints the new token alone on the last line of standard output (`| tail -n 1` to capture it);
it is not kept, so it is shown this once. `list` never shows secrets, only their first characters.
An unknown user or token, or a bad option, exits 2.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from evals.models import ApiToken
from evals.services.tokens import TokenError, api_token_create, api_token_revoke

EXIT_INVALID = 2
DEFAULT_EXPIRY_DAYS = "90"  # as on the tokens page


class Command(BaseCommand):
    help = "Create, list or revoke a user's personal API tokens."

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True, metavar="create|list|revoke")
        create = actions.add_parser("create", help="Make a token and print it (once) on the last line.")
        create.add_argument("--user", required=True, help="The username the token acts as.")
        create.add_argument("--name", required=True, help="What will use it, e.g. the CI job.")
        create.add_argument("--scope", default=ApiToken.Scope.READ, help="read (the default) or write.")
        create.add_argument(
            "--expires-days",
            default=DEFAULT_EXPIRY_DAYS,
            help=f"Days until it stops working (default {DEFAULT_EXPIRY_DAYS}), or never.",
        )
        listing = actions.add_parser("list", help="The user's tokens, without their secrets.")
        listing.add_argument("--user", required=True)
        revoke = actions.add_parser("revoke", help="Stop a token from working, at once.")
        revoke.add_argument("--user", required=True)
        which = revoke.add_mutually_exclusive_group(required=True)
        which.add_argument("--name", help="The token's name (it must name one active token).")
        which.add_argument("--id", type=int, help="The token's id, as `list` shows it.")

    def handle(self, *args: Any, **options: Any) -> None:
        user = _user(options["user"])
        if options["action"] == "create":
            self.create(user, options)
        elif options["action"] == "list":
            self.list(user)
        else:
            self.revoke(user, options)

    def create(self, user: User, options: dict[str, Any]) -> None:
        days = _expiry_days(options["expires_days"])
        try:
            token, secret = api_token_create(
                user=user,
                name=options["name"],
                scope=options["scope"],
                expires_at=None if days is None else timezone.now() + timedelta(days=days),
            )
        except TokenError as exc:
            raise CommandError(str(exc), returncode=EXIT_INVALID) from exc
        self.stdout.write(
            f'Token "{token.name}" ({token.get_scope_display().lower()}) for {user.get_username()}, '
            f"{_expiry(token)}. Copy it now: it is not shown again."
        )
        self.stdout.write(secret)

    def list(self, user: User) -> None:
        tokens = list(ApiToken.objects.filter(user=user))
        if not tokens:
            self.stdout.write(f"{user.get_username()} has no API tokens.")
            return
        self.stdout.write(
            f"{'id':>5}  {'name':<30} {'token':<10} {'scope':<6} {'state':<8} {'created':<17} {'expires':<17} last used"
        )
        for token in tokens:
            self.stdout.write(
                f"{token.pk:>5}  {token.name[:30]:<30} {token.prefix + '…':<10} {token.scope:<6} "
                f"{_state(token):<8} {_when(token.created_at):<17} {_when(token.expires_at):<17} "
                f"{_when(token.last_used_at)}"
            )

    def revoke(self, user: User, options: dict[str, Any]) -> None:
        tokens = ApiToken.objects.filter(user=user)
        if options["id"] is not None:
            chosen = list(tokens.filter(pk=options["id"]))
            wanted = f"id {options['id']}"
        else:
            chosen = list(tokens.usable().filter(name=" ".join(options["name"].split())))
            wanted = f'named "{options["name"]}"'
        if not chosen:
            raise CommandError(
                f"{user.get_username()} has no active token {wanted} (`api_token list` shows them).",
                returncode=EXIT_INVALID,
            )
        if len(chosen) > 1:
            ids = ", ".join(str(token.pk) for token in chosen)
            raise CommandError(
                f"{len(chosen)} active tokens are {wanted} (ids {ids}): revoke one with --id.",
                returncode=EXIT_INVALID,
            )
        token = api_token_revoke(token=chosen[0])
        self.stdout.write(f'Revoked token {token.pk} "{token.name}": requests that send it now get 401.')


def _user(username: str) -> User:
    user = get_user_model().objects.filter(**{get_user_model().USERNAME_FIELD: username}).first()
    if user is None:
        raise CommandError(f'There is no user "{username}".', returncode=EXIT_INVALID)
    return user


def _expiry_days(raw: str) -> int | None:
    if raw.strip().lower() == "never":
        return None
    try:
        days = int(raw)
    except ValueError:
        days = 0
    if days < 1:
        raise CommandError(
            f'--expires-days must be a whole number of days (1 or more) or "never", not "{raw}".',
            returncode=EXIT_INVALID,
        )
    return days


def _expiry(token: ApiToken) -> str:
    return "never expires" if token.expires_at is None else f"expires {_when(token.expires_at)}"


def _state(token: ApiToken) -> str:
    if token.revoked_at is not None:
        return "revoked"
    if token.expires_at is not None and token.expires_at <= timezone.now():
        return "expired"
    return "active"


def _when(moment: datetime | None) -> str:
    return "never" if moment is None else timezone.localtime(moment).strftime("%Y-%m-%d %H:%M")
