"""Make what Docket's processes share under DOCKET_VAR_DIR: the folder, its uploads folder and the keys.

Settings only read var/ (importing them writes nothing), so the commands that start Docket's processes
run this first: ensure_login and serve (`make run`), and start (the container, every role).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand


def var_folders() -> Path:
    """Make VAR_DIR and FILE_UPLOAD_TEMP_DIR (manage.py does, before any command); returns VAR_DIR.

    SQLite cannot make the folder its database file goes in, and Django's system checks refuse a
    FILE_UPLOAD_TEMP_DIR that does not exist.
    """
    var_dir = Path(settings.VAR_DIR)
    var_dir.mkdir(parents=True, exist_ok=True)
    Path(settings.FILE_UPLOAD_TEMP_DIR).mkdir(parents=True, exist_ok=True)
    return var_dir


def var_prepare() -> list[Path]:
    """Make the folders and each generated key that is missing; returns the key files written."""
    var_dir = var_folders()
    return [path for name in settings.GENERATED_KEYS if key_write_once(path := var_dir / name)]


def key_write_once(path: Path) -> bool:
    """Write a new random key to path unless the file exists; True when this call wrote it.

    O_EXCL makes two processes starting together (web and worker) agree on one value: one creates the
    file, the other finds it.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_urlsafe(32) + "\n")
    return True


class Command(BaseCommand):
    help = "Make DOCKET_VAR_DIR, its uploads folder and the keys Docket generates (each kept once made)."

    def handle(self, *args: Any, **options: Any) -> None:
        for path in var_prepare():
            self.stdout.write(f"Generated {path}.")
