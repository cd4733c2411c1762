"""`python -m docket_client` is the `docket` command (for a checkout or a venv without scripts on PATH)."""

from __future__ import annotations

from docket_client.cli import main

raise SystemExit(main())
