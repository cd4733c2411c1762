"""docket: the remote command-line client of Docket's HTTP API (/api/v1/); needs only httpx."""

from __future__ import annotations

__version__ = "0.1.0"
