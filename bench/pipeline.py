"""Benchmark: Docket's pipeline against the offline judge run as a separate server.

    .venv/bin/python bench/pipeline.py [--items 10000] [--sdk-items 1000] [--item-ms 20] [--lanes 4]

The judge answers every request after `latency_ms=100` and processes `lanes` items at once, each
taking `item_ms`: the judge alone needs at least T = ceil(items / lanes) * item_ms for the run.
Docket (one qcluster worker) is timed from run creation until the run is finished. In the same
session, the baseline a user would otherwise write: the official SDK calling single execute item
by item (on --sdk-items items, scaled to --items).

Prints Docket / T (target <= 1.15), the speed-up over the SDK loop (target >= 20x) and judge API
calls per item (target <= 0.05), counted by the judge itself.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
LATENCY_MS = 100


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def manage(*args: str, env: dict[str, str], **kwargs: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen([PYTHON, str(ROOT / "manage.py"), *args], env=env, **kwargs)


def wait_http(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2)  # noqa: S310
            return
        except urllib.error.HTTPError:
            return  # it answers (401 without a key is fine)
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"{url} did not come up within {timeout} s")


def judge_stats(url: str, key: str) -> dict[str, Any]:
    request = urllib.request.Request(f"{url}/_offline/stats/", headers={"Authorization": f"Api-Key {key}"})
    with urllib.request.urlopen(request, timeout=30) as reply:  # noqa: S310
        return json.loads(reply.read())


def api_calls(stats: dict[str, Any]) -> int:
    return sum(count for route, count in stats["process"]["requests"].items() if "stats" not in route)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--sdk-items", type=int, default=1_000)
    parser.add_argument("--item-ms", type=float, default=20.0)
    parser.add_argument("--lanes", type=int, default=4)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="docket-bench-"))
    key = secrets.token_urlsafe(24)
    port = free_port()
    judge_url = f"http://127.0.0.1:{port}/judge-api"
    base_env = {
        k: v for k, v in os.environ.items() if not k.startswith(("DOCKET_", "SCORABLE_", "DATABASE_URL"))
    }
    judge_env = {
        **base_env,
        "DOCKET_VAR_DIR": str(work / "judge"),
        "OFFLINE_JUDGE_API_KEY": key,
        "OFFLINE_JUDGE_FAULTS": f"latency_ms={LATENCY_MS},item_ms={args.item_ms:g},lanes={args.lanes}",
        "DOCKET_LOG_LEVEL": "WARNING",
    }
    docket_env = {
        **base_env,
        "DOCKET_VAR_DIR": str(work / "docket"),
        "SCORABLE_API_URL": judge_url,
        "SCORABLE_API_KEY": key,
        "DOCKET_LOG_LEVEL": "WARNING",
    }
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for env in (judge_env, docket_env):
            manage("migrate", "-v0", env=env).wait()
        log = (work / "judge.log").open("wb")
        judge = manage(
            "runserver",
            f"127.0.0.1:{port}",
            "--noreload",
            "--skip-checks",
            env=judge_env,
            stdout=log,
            stderr=log,
        )
        processes.append(judge)
        wait_http(f"{judge_url}/v1/judges/")

        # This process is Docket's side: its settings point at the bench's own database and judge.
        os.environ.update(docket_env)
        os.environ["DJANGO_SETTINGS_MODULE"] = "dashboard.settings"
        sys.path.insert(0, str(ROOT))
        import django

        django.setup()
        from evals.models import Dataset, Example, Judge, Run
        from evals.services.judges import judges_sync
        from evals.services.runs import run_create

        judges_sync()
        judge_row = Judge.objects.get(name="Support assistant safety")
        dataset = Dataset.objects.create(name="bench", status=Dataset.Status.READY, row_count=args.items)
        rows = [
            (
                f"Where is my order number {n}? It was due last week.",
                f"Thanks for asking! Order {n} ships today.",
            )
            for n in range(args.items)
        ]
        Example.objects.bulk_create(
            (
                Example(dataset=dataset, position=n, request=request, response=response)
                for n, (request, response) in enumerate(rows)
            ),
            batch_size=2000,
        )
        worker_log = (work / "qcluster.log").open("wb")
        worker = manage("qcluster", env=docket_env, stdout=worker_log, stderr=worker_log)
        processes.append(worker)
        time.sleep(3)  # let the cluster start before the clock does: startup is not part of a run

        before = api_calls(judge_stats(judge_url, key))
        started = time.monotonic()
        run = run_create(dataset=dataset, judge=judge_row)
        while True:
            run.refresh_from_db()
            if run.is_finished:
                break
            if worker.poll() is not None:
                raise SystemExit("the qcluster worker died; see " + str(work / "qcluster.log"))
            time.sleep(0.1)
        docket_seconds = time.monotonic() - started
        calls = api_calls(judge_stats(judge_url, key)) - before
        assert run.status == Run.Status.COMPLETED, run.status

        # The baseline: the official SDK, one synchronous execute per item.
        from scorable import Scorable

        sdk = Scorable(api_key=key, base_url=judge_url)
        started = time.monotonic()
        for request, response in rows[: args.sdk_items]:
            sdk.judges.run(judge_row.remote_id, request=request, response=response)
        sdk_seconds = (time.monotonic() - started) * args.items / args.sdk_items

        floor = math.ceil(args.items / args.lanes) * args.item_ms / 1000
        print(f"items                      {args.items}")
        print(
            f"judge                      latency_ms={LATENCY_MS}, item_ms={args.item_ms:g}, lanes={args.lanes}"
        )
        print(f"judge floor T              {floor:.1f} s")
        print(f"Docket (1 qcluster)        {docket_seconds:.1f} s")
        print(f"SDK single-execute loop    {sdk_seconds:.1f} s (measured on {args.sdk_items} items, scaled)")
        print(f"Docket / T                 {docket_seconds / floor:.3f}   (target <= 1.15)")
        print(f"speed-up over the SDK loop {sdk_seconds / docket_seconds:.1f}x  (target >= 20x)")
        print(f"judge API calls per item   {calls / args.items:.4f} ({calls} calls; target <= 0.05)")
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
        print(f"logs and databases: {work}")


if __name__ == "__main__":
    main()
