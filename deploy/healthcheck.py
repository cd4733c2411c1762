"""The container's HEALTHCHECK, for every role of the one image: exit 0 when healthy, 1 when not.

web: GET /healthz on the local gunicorn. Only the database and the broker: restarting or
    replacing a web container never fixes a pump that stopped, and the pump's check would mark
    every web container unhealthy at once. Monitoring reads the full /healthz instead.
worker: the same two checks, made in-process (a worker serves no HTTP).
migrate: a one-shot job, healthy while it runs.

No curl in the image: the standard library does the request.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

CHECKS = "database,broker"


def probe_host() -> str:
    """A Host header Django accepts: the first of ALLOWED_HOSTS (without a wildcard), else 127.0.0.1."""
    for host in os.environ.get("ALLOWED_HOSTS", "").split(","):
        host = host.strip().lstrip(".")
        if host and host != "*" and not host.startswith("*"):
            return host
    return "127.0.0.1"


def check_web() -> int:
    port = os.environ.get("DOCKET_PORT", "8000")
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/healthz?checks={CHECKS}", headers={"Host": probe_host()}
    )
    try:
        with urllib.request.urlopen(request, timeout=8) as response:  # noqa: S310 (a fixed local URL)
            body = json.load(response)
    except urllib.error.HTTPError as exc:
        print(f"unhealthy: HTTP {exc.code} {exc.read(500).decode('utf-8', 'replace')}")
        return 1
    except (OSError, ValueError) as exc:
        print(f"unhealthy: {type(exc).__name__}: {exc}")
        return 1
    print(body.get("status", "?"))
    return 0 if body.get("status") == "ok" else 1


def check_worker() -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
    import django

    django.setup()
    from dashboard.views.ops import health

    results = health(CHECKS.split(","))
    failing = [name for name, result in results.items() if not result["ok"]]
    print(f"unhealthy: {', '.join(failing)}" if failing else "ok")
    return 1 if failing else 0


def main() -> int:
    role = os.environ.get("DOCKET_ROLE", "") or "web"
    if role == "web":
        return check_web()
    if role == "worker":
        return check_worker()
    return 0


if __name__ == "__main__":
    sys.exit(main())
