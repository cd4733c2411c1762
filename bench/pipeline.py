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

    .venv/bin/python bench/pipeline.py --zero-latency 10000 [--profile] [--database-url postgres://...]

Docket's own CPU per item (issue 16): the judge answers at once (item_ms=0, no latency, enough lanes),
one qcluster worker works the run, and `manage.py run_eval --wait` creates it and waits for it. Prints
CPU milliseconds per item of the worker's process tree (from the CLI's start until the worker has
nothing left to do: costs reads included), of the waiting CLI (startup and create, waiting, summary),
and of the judge server for reference, all read from /proc (bench/pipeline_cpu.py); and items per
second. CPU time, not wall time, is the figure to trust on a shared machine. With --profile the
worker's tasks run under cProfile (bench/profile_qcluster.py): the merged .prof and a text summary
(top 30 cumulative, top 30 tottime) go to bench/out/, beside a JSON of the figures of every run.
--database-url points Docket's side (not the judge's) at another database, e.g. PostgreSQL.
When run_eval works the run itself (it does when it sees no live pump, as between two 120 s pump
slices), the bench says so: the worker/CLI split is then not a waiting CLI's, but their sum still is
Docket's own CPU; "waiting alone" is the CLI's CPU per second before its first takeover.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import pstats
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline_cpu import TICKS_PER_SECOND, read_stat, tree_cpu_ms

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
LATENCY_MS = 100
OUT = ROOT / "bench" / "out"
JUDGE_NAME = "Support assistant safety"
# The offline judge's maximum: with item_ms=0 the lanes never queue anything anyway.
ZERO_LATENCY_LANES = 1000
# The idle worker (the ORM broker's poll, the sentinel's guard loop) is sampled this long before the run.
IDLE_SECONDS = 5.0
# After the run finishes, the worker still reads the last batches' execution logs (costs).
SETTLE_TIMEOUT = 120.0
FINISHED_LINE = re.compile(r"^run \d+: (completed|partial|failed|cancelled), ")


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


@dataclass
class Bench:
    """A fresh judge server and Docket database in a temporary directory, and the processes started."""

    work: Path
    key: str
    port: int
    judge_env: dict[str, str]
    docket_env: dict[str, str]
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def judge_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/judge-api"


def bench_new(*, judge_faults: str, database_url: str = "") -> Bench:
    work = Path(tempfile.mkdtemp(prefix="docket-bench-"))
    key = secrets.token_urlsafe(24)
    port = free_port()
    base_env = {
        k: v for k, v in os.environ.items() if not k.startswith(("DOCKET_", "SCORABLE_", "DATABASE_URL"))
    }
    judge_env = {
        **base_env,
        "DOCKET_VAR_DIR": str(work / "judge"),
        "OFFLINE_JUDGE_API_KEY": key,
        "OFFLINE_JUDGE_FAULTS": judge_faults,
        "DOCKET_LOG_LEVEL": "WARNING",
    }
    docket_env = {
        **base_env,
        "DOCKET_VAR_DIR": str(work / "docket"),
        "SCORABLE_API_URL": f"http://127.0.0.1:{port}/judge-api",
        "SCORABLE_API_KEY": key,
        # Settings no longer write a key file on import: without one shared key, the worker could not
        # read the tasks this process and run_eval sign.
        "SECRET_KEY": secrets.token_urlsafe(50),
        "DOCKET_LOG_LEVEL": "WARNING",
    }
    if database_url:
        docket_env["DATABASE_URL"] = database_url
    return Bench(work=work, key=key, port=port, judge_env=judge_env, docket_env=docket_env)


def bench_start(bench: Bench) -> subprocess.Popen[bytes]:
    """Migrate both databases, start the judge server, and set this process up as Docket's side."""
    for env in (bench.judge_env, bench.docket_env):
        if manage("migrate", "-v0", env=env).wait():
            raise SystemExit("migrate failed")
    log = (bench.work / "judge.log").open("wb")
    judge = manage(
        "runserver",
        f"127.0.0.1:{bench.port}",
        "--noreload",
        "--skip-checks",
        env=bench.judge_env,
        stdout=log,
        stderr=log,
    )
    bench.processes.append(judge)
    wait_http(f"{bench.judge_url}/v1/judges/")

    # This process is Docket's side: its settings point at the bench's own database and judge.
    os.environ.update(bench.docket_env)
    os.environ["DJANGO_SETTINGS_MODULE"] = "dashboard.settings"
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from evals.client import JudgeError
    from evals.services.judges import judges_sync

    for _ in range(100):  # a faulted judge fails the sync too; the run is what is measured
        try:
            judges_sync()
            break
        except JudgeError:
            continue
    return judge


def bench_dataset(items: int) -> tuple[Any, list[tuple[str, str]]]:
    from evals.models import Dataset, Example

    dataset = Dataset.objects.create(name="bench", status=Dataset.Status.READY, row_count=items)
    rows = [
        (
            f"Where is my order number {n}? It was due last week.",
            f"Thanks for asking! Order {n} ships today.",
        )
        for n in range(items)
    ]
    Example.objects.bulk_create(
        (
            Example(dataset=dataset, position=n, request=request, response=response)
            for n, (request, response) in enumerate(rows)
        ),
        batch_size=2000,
    )
    return dataset, rows


def bench_stop(bench: Bench) -> None:
    for process in bench.processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in bench.processes:
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
    print(f"logs and databases: {bench.work}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--sdk-items", type=int, default=1_000)
    parser.add_argument("--item-ms", type=float, default=20.0)
    parser.add_argument("--lanes", type=int, default=4)
    parser.add_argument("--faults", default="", help="offline judge faults for a second, faulted run")
    parser.add_argument(
        "--zero-latency",
        type=int,
        metavar="N",
        help="measure Docket's own CPU per item on N items against a judge that answers at once",
    )
    parser.add_argument(
        "--profile", action="store_true", help="with --zero-latency: the worker under cProfile"
    )
    parser.add_argument(
        "--database-url", default="", help="with --zero-latency: Docket's database (the judge keeps SQLite)"
    )
    parser.add_argument("--measure-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.zero_latency:
        zero_latency(args)
        return
    if args.faults and not args.measure_only:
        compare_faulted(args)
        return

    bench = bench_new(
        judge_faults=",".join(
            part
            for part in (f"latency_ms={LATENCY_MS},item_ms={args.item_ms:g},lanes={args.lanes}", args.faults)
            if part
        )
    )
    try:
        bench_start(bench)
        from evals.models import Judge, Run
        from evals.services.runs import run_create

        judge_row = Judge.objects.get(name=JUDGE_NAME)
        dataset, rows = bench_dataset(args.items)
        worker_log = (bench.work / "qcluster.log").open("wb")
        worker = manage("qcluster", env=bench.docket_env, stdout=worker_log, stderr=worker_log)
        bench.processes.append(worker)
        time.sleep(3)  # let the cluster start before the clock does: startup is not part of a run

        before = api_calls(judge_stats(bench.judge_url, bench.key))
        started = time.monotonic()
        run = run_create(dataset=dataset, judge=judge_row)
        while True:
            run.refresh_from_db()
            if run.is_finished:
                break
            if worker.poll() is not None:
                raise SystemExit("the qcluster worker died; see " + str(bench.work / "qcluster.log"))
            time.sleep(0.1)
        docket_seconds = time.monotonic() - started
        calls = api_calls(judge_stats(bench.judge_url, bench.key)) - before
        assert run.status == Run.Status.COMPLETED, run.status
        if args.measure_only:
            result = {"seconds": docket_seconds, "calls": calls, "duplicates": duplicates(run.uid)}
            print(json.dumps(result))
            return

        # The baseline: the official SDK, one synchronous execute per item.
        from scorable import Scorable

        sdk = Scorable(api_key=bench.key, base_url=bench.judge_url)
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
        bench_stop(bench)


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


# --- Docket's own CPU per item (--zero-latency) -------------------------------------------------------


def process_cpu_ms(pid: int) -> float:
    """One process's CPU, its reaped children included (run_eval has none)."""
    stat = read_stat(pid)
    if stat is None:
        raise ProcessLookupError(pid)
    return (stat.own_ticks + stat.reaped_ticks) * 1000 / TICKS_PER_SECOND


@dataclass
class CliTimes:
    """The waiting CLI's CPU (ms) and monotonic time at the end of each of its phases."""

    run_id: int = 0
    created_cpu: float | None = None
    created_at: float = 0.0
    finished_cpu: float | None = None
    finished_at: float = 0.0
    worker_at_finish: float = 0.0
    # Before run_eval first works the run itself: the waiting alone, whose cost issue 16 wants flat in N.
    waiting_only_cpu: float = 0.0
    waiting_only_seconds: float = 0.0
    took_over: bool = False
    output: list[str] = field(default_factory=list)


def cli_follow(cli: subprocess.Popen[bytes], worker_pid: int) -> CliTimes:
    """Read run_eval's lines as they come; sample its CPU when the run exists and when it has finished."""
    times = CliTimes()
    assert cli.stdout is not None
    for raw in cli.stdout:
        line = raw.decode(errors="replace").rstrip("\n")
        times.output.append(line)
        times.took_over = times.took_over or "working the run in this process" in line
        if times.created_cpu is not None and times.finished_cpu is None and not times.took_over:
            times.waiting_only_cpu = process_cpu_ms(cli.pid) - times.created_cpu
            times.waiting_only_seconds = time.monotonic() - times.created_at
        if times.created_cpu is None and (started := re.match(r"^run (\d+) started: ", line)):
            times.created_cpu = process_cpu_ms(cli.pid)
            times.created_at = time.monotonic()
            times.run_id = int(started.group(1))
        elif times.finished_cpu is None and FINISHED_LINE.match(line):
            times.finished_cpu = process_cpu_ms(cli.pid)
            times.finished_at = time.monotonic()
            times.worker_at_finish = tree_cpu_ms(worker_pid)[0]
    return times


def worker_settle(run_id: int, worker: subprocess.Popen[bytes]) -> float:
    """Wait until the worker has nothing left for the run (costs reads, thresholds); seconds waited."""
    from evals.models import Run
    from evals.pump import pump_alive, pump_has_work

    started = time.monotonic()
    while time.monotonic() - started < SETTLE_TIMEOUT:
        if worker.poll() is not None:
            raise SystemExit("the qcluster worker died")
        learned = Run.objects.filter(pk=run_id, thresholds_learned_at__isnull=False).exists()
        if learned and not pump_has_work() and not pump_alive():
            return time.monotonic() - started
        time.sleep(0.2)
    print(f"warning: the worker still had work {SETTLE_TIMEOUT:g} s after the run finished")
    return time.monotonic() - started


def zero_latency(args: argparse.Namespace) -> None:
    items = args.zero_latency
    database = "postgresql" if args.database_url.startswith("postgres") else "sqlite"
    label = f"{items}-{database}" + ("-profiled" if args.profile else "")
    bench = bench_new(
        judge_faults=f"latency_ms=0,item_ms=0,lanes={ZERO_LATENCY_LANES}", database_url=args.database_url
    )
    profile_dir = bench.work / "profiles"
    try:
        judge = bench_start(bench)
        dataset, _ = bench_dataset(items)
        worker_log = (bench.work / "qcluster.log").open("wb")
        if args.profile:
            worker = subprocess.Popen(
                [PYTHON, str(ROOT / "bench" / "profile_qcluster.py")],
                env={**bench.docket_env, "BENCH_PROFILE_DIR": str(profile_dir)},
                stdout=worker_log,
                stderr=worker_log,
            )
        else:
            worker = manage("qcluster", env=bench.docket_env, stdout=worker_log, stderr=worker_log)
        bench.processes.append(worker)
        time.sleep(3)  # the cluster's startup is not part of a run

        idle_from = tree_cpu_ms(worker.pid)[0]
        time.sleep(IDLE_SECONDS)
        worker_before, worker_processes = tree_cpu_ms(worker.pid)
        idle_ms_per_second = (worker_before - idle_from) / IDLE_SECONDS
        judge_before = tree_cpu_ms(judge.pid)[0]

        cli_log = (bench.work / "run_eval.err").open("wb")
        cli = subprocess.Popen(
            [
                PYTHON,
                str(ROOT / "manage.py"),
                "run_eval",
                f"--dataset={dataset.pk}",
                f"--judge={JUDGE_NAME}",
                "--wait",
            ],
            # Line by line, so each phase is sampled when its line is written.
            env={**bench.docket_env, "PYTHONUNBUFFERED": "1"},
            stdout=subprocess.PIPE,
            stderr=cli_log,
        )
        cli_started = time.monotonic()
        times = cli_follow(cli, worker.pid)
        # wait4 gives the exited CLI's own rusage: the same kernel accounting as /proc, at its very end.
        _, status, usage = os.wait4(cli.pid, 0)
        cli.returncode = os.waitstatus_to_exitcode(status)
        cli_ended = time.monotonic()
        cli_total = (usage.ru_utime + usage.ru_stime) * 1000
        if times.created_cpu is None or times.finished_cpu is None:
            tail = "\n".join(times.output[-20:])
            raise SystemExit(f"run_eval exited {cli.returncode}:\n{tail}\nsee {bench.work / 'run_eval.err'}")
        cli_error = ""
        if cli.returncode:
            # The run finished and was waited for: the figures stand, but the summary's CPU is cut short.
            errors = (bench.work / "run_eval.err").read_text(errors="replace").strip().splitlines()
            cli_error = (
                f"run_eval exited {cli.returncode} after the run finished: {errors[-1] if errors else ''}"
            )

        settled = worker_settle(times.run_id, worker)
        worker_after = tree_cpu_ms(worker.pid)[0]
        judge_after = tree_cpu_ms(judge.pid)[0]

        from evals.models import Run

        run = Run.objects.get(pk=times.run_id)
        if run.status != Run.Status.COMPLETED or run.completed_count != items:
            raise SystemExit(f"run {run.pk} is {run.status} with {run.completed_count}/{items} completed")
        assert run.finished_at is not None
        run_seconds = (run.finished_at - run.created_at).total_seconds()
        worker_ms = worker_after - worker_before
        cli_ms = {
            "startup_and_create": times.created_cpu,
            "waiting": times.finished_cpu - times.created_cpu,
            "summary": cli_total - times.finished_cpu,
            "total": cli_total,
        }
        result = {
            "items": items,
            "database": database,
            "profiled": args.profile,
            "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "judge_faults": bench.judge_env["OFFLINE_JUDGE_FAULTS"],
            "run_seconds": run_seconds,
            "items_per_second": items / run_seconds,
            "worker_cpu_ms": worker_ms,
            "worker_cpu_ms_to_finish": times.worker_at_finish - worker_before,
            "worker_settle_seconds": settled,
            "worker_idle_cpu_ms_per_second": idle_ms_per_second,
            "worker_processes": worker_processes,
            "worker_window_seconds": cli_ended - cli_started + settled,
            "cli_cpu_ms": cli_ms,
            "cli_waiting_seconds": times.finished_at - times.created_at,
            "cli_waiting_only_cpu_ms": times.waiting_only_cpu,
            "cli_waiting_only_seconds": times.waiting_only_seconds,
            "judge_cpu_ms": judge_after - judge_before,
            "cli_error": cli_error,
            # run_eval works the run itself when it sees no live pump (between two pump slices): then the
            # split between worker and CLI is not the one this bench means to measure.
            "cli_took_over": sum("working the run in this process" in line for line in times.output),
        }
        (bench.work / "run_eval.out").write_text("\n".join(times.output) + "\n")
        OUT.mkdir(exist_ok=True)
        (OUT / f"pipeline-zero-{label}.json").write_text(json.dumps(result, indent=2) + "\n")
        zero_latency_print(result)
    finally:
        bench_stop(bench)
    if args.profile:
        profile_write(profile_dir, label=label)


def zero_latency_print(result: dict[str, Any]) -> None:
    items = result["items"]
    per_item = 1 / items
    cli = result["cli_cpu_ms"]
    docket = result["worker_cpu_ms"] + cli["total"]
    profiled = "  (worker under cProfile: CPU inflated)" if result["profiled"] else ""
    print(f"items                      {items} on {result['database']}{profiled}")
    print(f"judge                      {result['judge_faults']} (a separate process)")
    print(
        f"run (created -> finished)  {result['run_seconds']:.1f} s wall, {result['items_per_second']:.0f} items/s"
    )
    print(
        f"worker tree CPU            {result['worker_cpu_ms'] / 1000:.1f} s = "
        f"{result['worker_cpu_ms'] * per_item:.2f} ms/item "
        f"({result['worker_cpu_ms_to_finish'] / 1000:.1f} s until the run finished, then "
        f"{result['worker_settle_seconds']:.1f} s more until no costs were left to read)"
    )
    idle = result["worker_idle_cpu_ms_per_second"]
    print(
        f"  of which idle polling    about {idle * result['worker_window_seconds'] / 1000:.1f} s "
        f"({idle:.0f} ms of CPU per second when idle, {result['worker_processes']} processes)"
    )
    print(
        f"waiting CLI CPU            {cli['total'] / 1000:.1f} s = {cli['total'] * per_item:.2f} ms/item: "
        f"startup and create {cli['startup_and_create'] / 1000:.1f} s, waiting {cli['waiting'] / 1000:.1f} s "
        f"over {result['cli_waiting_seconds']:.0f} s, summary {cli['summary'] / 1000:.1f} s"
    )
    waited = result["cli_waiting_only_seconds"]
    if waited:
        print(
            f"  waiting alone            {result['cli_waiting_only_cpu_ms'] / waited:.1f} ms of CPU per second "
            f"({result['cli_waiting_only_cpu_ms'] / 1000:.2f} s over {waited:.0f} s, before any takeover)"
        )
    if result["cli_took_over"]:
        print(
            f"  warning: run_eval worked the run itself {result['cli_took_over']} times (it saw no live "
            "pump, as between two slices of the worker's): part of the worker's work is in the CLI's figure"
        )
    if result["cli_error"]:
        print(f"  warning: {result['cli_error']} (its summary CPU is cut short)")
    print(f"Docket (worker + CLI)      {docket * per_item:.2f} ms/item   (issue 16: was 3.9, target <= 1)")
    print(
        f"judge server CPU           {result['judge_cpu_ms'] * per_item:.2f} ms/item (reference, not Docket's)"
    )
    print("CPU time is the figure to trust on a shared machine; wall time and items/s move with its load.")


def profile_write(profile_dir: Path, *, label: str) -> None:
    """Merge the workers' profiles into one .prof and a text summary under bench/out/."""
    files = sorted(profile_dir.glob("worker-*.prof"))
    if not files:
        raise SystemExit(f"no worker profile was written under {profile_dir}")
    stats = pstats.Stats(*(str(path) for path in files))
    OUT.mkdir(exist_ok=True)
    prof = OUT / f"pipeline-profile-{label}.prof"
    stats.dump_stats(str(prof))
    rows: dict[tuple[str, int, str], tuple[int, int, float, float, Any]] = stats.stats  # type: ignore[attr-defined]
    total = sum(row[2] for row in rows.values())
    text = io.StringIO()
    text.write(
        f"cProfile of the qcluster workers' tasks and the pump's HTTP threads, merged ({len(files)} processes)\n"
        f"total profiled time {total:.2f} s of CPU (time.thread_time per thread); the profiler inflates\n"
        "call-heavy code (Django's expression trees) more than C code: shares are a guide, not a measure\n"
        "\n=== Docket's own functions (evals/), top 15 by cumulative CPU, share of the total ===\n"
    )
    own = sorted(
        (
            (row[3], f"{Path(file).relative_to(ROOT)}:{line}({name})")
            for (file, line, name), row in rows.items()
            if file.startswith(str(ROOT / "evals"))
        ),
        reverse=True,
    )
    for cumulative, where in own[:15]:
        text.write(f"{cumulative:9.2f} s {100 * cumulative / total:5.1f}%  {where}\n")
    for order in ("cumulative", "tottime"):
        text.write(f"\n=== top 30 by {order} ===\n")
        pstats.Stats(str(prof), stream=text).sort_stats(order).print_stats(30)
    summary = OUT / f"pipeline-profile-{label}.txt"
    summary.write_text(text.getvalue())
    print(f"profile                    {prof.relative_to(ROOT)} and {summary.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
