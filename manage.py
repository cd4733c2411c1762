#!/usr/bin/env python
from __future__ import annotations

import os
import sys
from contextlib import suppress


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import execute_from_command_line

    from dashboard.management.commands.ensure_var import var_folders

    # Folders, not keys: every command may open the SQLite database under var/ (`migrate` on a fresh
    # checkout first of all). Keys are made by the commands that start Docket (ensure_var). Settings
    # that refuse to load are reported by execute_from_command_line, as for every command.
    with suppress(ImproperlyConfigured):
        var_folders()
    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
