"""Make sure someone can log in: the user from DOCKET_ADMIN_USER / DOCKET_ADMIN_PASSWORD, or a generated one."""

from __future__ import annotations

import os
import secrets
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

PASSWORD_FILE = "admin-password.txt"


class Command(BaseCommand):
    help = "Create or update the login named by DOCKET_ADMIN_USER/DOCKET_ADMIN_PASSWORD, or generate one."

    def handle(self, *args: Any, **options: Any) -> None:
        # var/ for the password file, and the secret key that signs the login's session (`make run`
        # starts its web server and worker after this).
        call_command("ensure_var", stdout=self.stdout)
        User = get_user_model()
        username = os.environ.get("DOCKET_ADMIN_USER", "").strip()
        password = os.environ.get("DOCKET_ADMIN_PASSWORD", "")
        if username or password:
            if not (username and password):
                raise CommandError("Set both DOCKET_ADMIN_USER and DOCKET_ADMIN_PASSWORD, or neither.")
            user, created = User.objects.get_or_create(username=username)
            user.is_staff = user.is_superuser = True
            user.set_password(password)
            user.save()
            self.stdout.write(
                f"Login {'created' if created else 'updated'}: {username} (password from DOCKET_ADMIN_PASSWORD)."
            )
            return

        password_file = settings.VAR_DIR / PASSWORD_FILE
        if User.objects.filter(is_active=True).exists():
            if password_file.exists():
                self.stdout.write(f"Log in as admin; the generated password is in {password_file}.")
            return

        password = secrets.token_urlsafe(12)
        User.objects.create_superuser(username="admin", email="", password=password)
        password_file.write_text(f"username: admin\npassword: {password}\n")
        password_file.chmod(0o600)
        line = "=" * 64
        self.stdout.write(
            f"\n{line}\n  Docket login created (shown once, also kept in {password_file}):\n"
            f"    username: admin\n    password: {password}\n{line}\n"
        )
