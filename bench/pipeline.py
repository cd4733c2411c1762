"""Benchmark: Docket's pipeline against the offline judge run as a separate server.

    .venv/bin/python bench/pipeline.py [--items 10000] [--sdk-items 1000] [--item-ms 20] [--lanes 4]

The judge answers every request after `latency_ms=100` and processes `lanes` items at once, each
taking `item_ms`: the judge alone needs at least T = ceil(items / lanes) * item_ms for the run.
Docket (one qcluster worker) is timed from run creation until the run is finished. In the same
session, the baseline a user would otherwise write: the official SDK calling single execute item
by item (on --sdk-items items, scaled to --items).

Prints Docket / T (target <= 1.15), the speed-up over the SDK loop (target >= 20x) and judge API
calls per item (target <= 0.05), counted by the judge itself.

    .venv/bin/python bench/pipeline.py --items 1000 --faults "throttle=0.3,retry_after=1,error=0.1"

With --faults, the same run is measured twice, each time from scratch (a new judge server, database and
worker): against a clean judge, then against one injecting those faults (offline_judge/faults.py). It
prints faulted/clean (target <= 1.5), judge API calls per item of each, and batches the judge created
twice (duplicates, target 0). The SDK baseline is skipped in this mode.
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
    parser.add_argument("--faults", default="", help="offline judge faults for a second, faulted run")
    parser.add_argument("--measure-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.faults and not args.measure_only:
        compare_faulted(args)
        return

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
        "OFFLINE_JUDGE_FAULTS": ",".join(
            part
            for part in (f"latency_ms={LATENCY_MS},item_ms={args.item_ms:g},lanes={args.lanes}", args.faults)
            if part
        ),
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
        from evals.client import JudgeError
        from evals.models import Dataset, Example, Judge, Run
        from evals.services.judges import judges_sync
        from evals.services.runs import run_create

        for _ in range(100):  # a faulted judge fails the sync too; the run is what is measured
            try:
                judges_sync()
                break
            except JudgeError:
                continue
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
        if args.measure_only:
            result = {"seconds": docket_seconds, "calls": calls, "duplicates": duplicates(run.uid)}
            print(json.dumps(result))
            return

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


def duplicates(run_uid: object) -> int:
    """Batches of the run the judge holds beyond one per tag: a create that was sent twice."""
    from collections import Counter

    from evals.client import JudgeAPI, JudgeError

    # The faulted judge fails list pages too: read the whole list again until one read goes through.
    for _ in range(200):
        try:
            with JudgeAPI.from_settings() as api:
                tags = Counter(
                    tag
                    for batch in api.list_batches()
                    for tag in batch.tags
                    if tag.startswith(f"docket:{run_uid}:")
                )
        except JudgeError:
            continue
        return sum(count - 1 for count in tags.values())
    raise SystemExit("could not read the judge's batch list to count duplicates")


def measure(args: argparse.Namespace, faults: str) -> dict[str, Any]:
    """One run from scratch in a child process (Django is set up once per process)."""
    command = [
        PYTHON,
        __file__,
        "--measure-only",
        f"--items={args.items}",
        f"--item-ms={args.item_ms:g}",
        f"--lanes={args.lanes}",
        f"--faults={faults}",
    ]
    reply = subprocess.run(command, check=False, capture_output=True, text=True)
    if reply.returncode:
        raise SystemExit(
            f"the measured run failed ({faults or 'clean'}):\n{reply.stdout}\n{reply.stderr[-3000:]}"
        )
    lines = [line for line in reply.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise SystemExit(f"the measured run printed no result:\n{reply.stdout}\n{reply.stderr}")
    return dict(json.loads(lines[-1]))


def compare_faulted(args: argparse.Namespace) -> None:
    clean = measure(args, "")
    faulted = measure(args, args.faults)
    print(f"items                      {args.items}")
    print(f"judge                      latency_ms={LATENCY_MS}, item_ms={args.item_ms:g}, lanes={args.lanes}")
    print(f"faults                     {args.faults}")
    print(f"clean                      {clean['seconds']:.1f} s")
    print(f"faulted                    {faulted['seconds']:.1f} s")
    print(f"faulted/clean              {faulted['seconds'] / clean['seconds']:.2f}   (target <= 1.5)")
    for name, result in (("clean", clean), ("faulted", faulted)):
        per_item = result["calls"] / args.items
        print(f"calls per item, {name:<10} {per_item:.4f} ({result['calls']} calls; clean target <= 0.05)")
    print(f"duplicate batches          {clean['duplicates'] + faulted['duplicates']}   (target 0)")


if __name__ == "__main__":
    main()
