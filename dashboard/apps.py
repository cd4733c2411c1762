from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.core.checks import CheckMessage, Warning, register

# The commands whose process shares keys with others (and `check`, which is asked): a one-off command
# such as import_dataset signs nothing another process reads, so a key of its own is harmless there.
SHARING_COMMANDS = {"runserver", "qcluster", "check"}


def generated_keys_check(**kwargs: Any) -> list[CheckMessage]:
    """Say when a key the settings generate is not kept in var/ yet.

    Until `manage.py ensure_var` writes it, every process makes up its own, so a worker cannot read the
    web's signed tasks and sessions do not survive a restart: the failure would show far from its cause.
    """
    command = sys.argv[1] if Path(sys.argv[0]).name == "manage.py" and len(sys.argv) > 1 else None
    if command is not None and command not in SHARING_COMMANDS:
        return []
    missing = [name for name in settings.GENERATED_KEYS if not (Path(settings.VAR_DIR) / name).exists()]
    if not missing:
        return []
    return [
        Warning(
            f"{', '.join(missing)} not found in {settings.VAR_DIR}: this process made up its own.",
            hint="Run `manage.py ensure_var` once before starting web and workers (make run and the container "
            "do), or set SECRET_KEY and OFFLINE_JUDGE_API_KEY in the environment.",
            id="docket.W001",
        )
    ]


class DashboardConfig(AppConfig):
    name = "dashboard"

    def ready(self) -> None:
        register(generated_keys_check)
