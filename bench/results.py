"""Benchmark the results pages, search, statistics, export and import on a big run against a 1,000-item run.

    .venv/bin/python bench/results.py [--items 100000] [--small 1000] [--repeat 7]
    .venv/bin/python bench/results.py --items 1000000 --database-url postgres://postgres@127.0.0.1:5432/postgres [--keep]
    .venv/bin/python bench/results.py --items 1000000 --database-url ... --reuse docket_bench_results_<pid>

Sets Django up itself under a temporary DOCKET_VAR_DIR (DEBUG turned off after setup, so no query log is
kept), on SQLite there, or with --database-url on a PostgreSQL database the bench creates on that server
(and drops at the end, unless --keep; --reuse times the runs a kept database holds, without building).
Each dataset is a generated CSV imported through the import_dataset command's code path (every row
checked, then written: COPY on PostgreSQL), timed, with rows per second printed for both sizes. Then two
completed runs are built through a fast fixture path (bulk_create of Judge, Run, RemoteBatch, Item and
Score rows; 3 evaluators; justifications of a few sentences; metadata columns topic, channel and
language; Run.evaluators and score_summary filled): one of --items items and one of --small items.
Building is not timed. A rare word sits in 5 rows' questions and another in 5 justifications, at any size.

With Django's test Client (force_login), each URL is requested --repeat times per run, after one
warm-up request, and the median is kept:

- the run page, first page: /runs/<pk>/
- sorted by a score: ?sort=score:<evaluator>
- filtered by a score range plus a search for a common word: ?sort=score:<e>&min.<e>=0.2&max.<e>=0.6&q=<word>
- text searches: a common word, the rare word of the questions, the rare word of the justifications
  (each also held to an absolute target: under 200 ms on the big run)
- the live endpoint with 100 changed items: /runs/<pk>/live/?cursor=<seq>&rows=<100 item ids>, after the
  run's change_seq and those items' change_seq are bumped so that they count as changed
- for reference (no target): the statistics page (its first view, which reads every score, and later
  ones, which read the figures kept for that version of the run), one item's page, and run compare (two runs over the
  same dataset; on the big runs only with --compare, which builds a second big run)

Prints each big/small ratio (target <= 2.0 for the pages and the live endpoint). Then exports each run
as CSV in a child process (the web view through the test Client, streamed and consumed chunk by chunk)
and prints its time and the child's peak resident memory (VmHWM of /proc/self/status on Linux, else
ru_maxrss; see peak_mb), which includes the interpreter and Django (target <= 150 MB), next to the
same figure just before the export began. Then the same exports once more with tracemalloc on (not
timed): the peak of Python's own allocations while streaming, for the big run against the small one
in the same session (target <= 1.5x: a chunk of items at a time, never the whole run) and against the
CSV it produced (target < 0.5x; a flat peak of a few MB is a small share only of a big export, so this
one holds from about 20,000 items, the default being 100,000). Was a memory assertion in tests/evals/test_export.py. Exits 1 when a
target is missed. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TARGET_RATIO = 2.0
TARGET_EXPORT_MB = 150
TARGET_EXPORT_TRACED_RATIO = 1.5
TARGET_EXPORT_TRACED_SHARE = 0.5
EVALUATORS = ("Politeness", "Request relevance", "Concision")
COMMON_WORD = "order"
# Each in RARE_MATCHES rows of any size of run: a search that must find few rows among many.
RARE_TEXT_WORD = "xylophone"
RARE_JUSTIFICATION_WORD = "quokka"
RARE_MATCHES = 5
TARGET_SEARCH_MS = 200
TOPICS = ("billing", "shipping", "returns", "account", "orders", "warranty", "delivery", "payments")
CHANNELS = ("chat", "email", "phone")
LANGUAGES = ("en", "de", "fr", "es")
PRODUCTS = ("router", "headphones", "coffee machine", "laptop stand", "desk lamp", "phone case", "blender")


def setup_django(var_dir: Path) -> None:
    var_dir.mkdir(parents=True, exist_ok=True)  # the settings make no folder (and SQLite makes none)
    os.environ["DOCKET_VAR_DIR"] = str(var_dir)
    os.environ["DJANGO_SETTINGS_MODULE"] = "dashboard.settings"
    os.environ["DOCKET_DEBUG"] = "1"
    os.environ.setdefault("DOCKET_LOG_LEVEL", "WARNING")
    sys.path.insert(0, str(ROOT))
    import django
    from django.conf import settings

    django.setup()
    from dashboard.management.commands.ensure_var import var_folders

    var_folders()  # what manage.py does before any command: SQLite's database goes in var/
    # Development settings (no collected static files needed), but DEBUG off once set up, so Django
    # keeps no log of every query in memory, as in production.
    settings.DEBUG = False


def peak_mb() -> float:
    """This process's peak resident memory.

    VmHWM from /proc/self/status where there is one (Linux): ru_maxrss would not do, because Linux
    carries the parent's peak across fork and exec into the child's ru_maxrss, so the child of this
    benchmark (which holds a 100,000-item run in memory while it builds) would report the parent's
    peak. Elsewhere, ru_maxrss.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- The fast fixture path ---------------------------------------------------------------------------------


def build_run(items: int, *, seed: int, name: str, dataset_id: int) -> int:
    """A completed run of `items` items with 3 evaluators over a dataset's rows, made with bulk_create;
    returns its id. RARE_JUSTIFICATION_WORD is in RARE_MATCHES of its justifications."""
    from django.db import transaction
    from django.utils import timezone

    from evals.models import Dataset, Example, Item, Judge, RemoteBatch, Run, Score

    rng = random.Random(seed)
    chunk = 5_000
    now = timezone.now()
    with transaction.atomic():
        judge, _ = Judge.objects.get_or_create(
            api_url="http://127.0.0.1:8000/judge-api",
            remote_id="bench-judge",
            defaults={
                "source": Judge.Source.OFFLINE,
                "name": "Support assistant quality",
                "version_id": str(uuid.UUID(int=seed)),
                "evaluators": [{"name": evaluator, "threshold": 0.6} for evaluator in EVALUATORS],
            },
        )
        dataset = Dataset.objects.get(pk=dataset_id)
        failed = set(rng.sample(range(items), k=items // 50))
        rare = {(index * items) // RARE_MATCHES + 3 for index in range(RARE_MATCHES)}
        rare -= failed
        run = Run.objects.create(
            name=name,
            dataset=dataset,
            judge=judge,
            judge_version_id=judge.version_id,
            status=Run.Status.PARTIAL if failed else Run.Status.COMPLETED,
            total_count=items,
            completed_count=items - len(failed),
            failed_count=len(failed),
            started_at=now - timedelta(minutes=30),
            finished_at=now,
            evaluators=list(EVALUATORS),
            change_seq=items // 100 + 1,
        )
        batches = RemoteBatch.objects.bulk_create(
            RemoteBatch(
                run=run,
                position=index,
                size=min(100, items - index * 100),
                remote_id=str(uuid.UUID(int=rng.getrandbits(128))),
                status=RemoteBatch.Status.COMPLETED,
                attempts=1,
                submitted_at=now - timedelta(minutes=30),
                finished_at=now,
            )
            for index in range(math.ceil(items / 100))
        )
        example_ids = list(
            Example.objects.filter(dataset=dataset).order_by("position").values_list("id", flat=True)
        )
        summary = {name: {"n": 0, "sum": 0.0, "min": 1.0, "max": 0.0} for name in EVALUATORS}
        shapes = {"Politeness": (5.0, 1.6), "Request relevance": (3.0, 2.0), "Concision": (2.2, 2.2)}
        for start in range(0, items, chunk):
            rows = []
            for position in range(start, min(start + chunk, items)):
                bad = position in failed
                rows.append(
                    Item(
                        run=run,
                        example_id=example_ids[position],
                        batch=batches[position // 100],
                        position=position,
                        index_in_batch=position % 100,
                        status=Item.Status.FAILED if bad else Item.Status.COMPLETED,
                        error_message="The judge could not parse the response (HTTP 502)." if bad else "",
                        execution_log_id="" if bad else str(uuid.UUID(int=rng.getrandbits(128))),
                        started_at=now - timedelta(minutes=20),
                        completed_at=now - timedelta(minutes=10),
                        change_seq=position // 100 + 1,
                    )
                )
            created = Item.objects.bulk_create(rows)
            scores = []
            for item in created:
                if item.status == Item.Status.FAILED:
                    continue
                for evaluator in EVALUATORS:
                    value = round(rng.betavariate(*shapes[evaluator]), 3)
                    entry = summary[evaluator]
                    entry["n"] += 1
                    entry["sum"] += value
                    entry["min"] = min(entry["min"], value)
                    entry["max"] = max(entry["max"], value)
                    scores.append(
                        Score(
                            item=item,
                            run=run,
                            evaluator_name=evaluator,
                            evaluator_id=f"bench-{evaluator.lower().replace(' ', '-')}",
                            score=value,
                            confidence=round(rng.uniform(0.6, 0.99), 2),
                            justification=justification(evaluator, value, rng)
                            + (
                                f" A {RARE_JUSTIFICATION_WORD} of a reply."
                                if item.position in rare and evaluator == EVALUATORS[1]
                                else ""
                            ),
                        )
                    )
            Score.objects.bulk_create(scores, batch_size=chunk)
        Run.objects.filter(pk=run.pk).update(score_summary=summary)
    return run.pk


def write_csv(path: Path, items: int, *, rng: random.Random) -> None:
    """A support-chat CSV of `items` rows: question, answer and three metadata columns.

    RARE_TEXT_WORD is in exactly RARE_MATCHES rows' questions, whatever the size, so that searching for
    it finds as many items in a big run as in a small one.
    """
    rare = {(index * items) // RARE_MATCHES + 7 for index in range(RARE_MATCHES)} if items > 7 else {0}
    with path.open("w", newline="", encoding="utf-8") as handle:
        out = csv.writer(handle)
        out.writerow(["question", "answer", "topic", "channel", "language"])
        for position in range(items):
            product, topic = rng.choice(PRODUCTS), rng.choice(TOPICS)
            request = (
                f"Hello, my {product} (order #{100000 + position}) has a problem with {topic}. "
                f"I tried restarting it twice and it still fails. What should I do next?"
            )
            if position in rare:
                request += f" It makes a {RARE_TEXT_WORD} sound."
            response = (
                f"Thanks for reaching out about your {product}! I'm sorry about the trouble with {topic}. "
                f"Please open the app, go to Settings > {topic.capitalize()}, and choose 'Repair'. "
                "If that does not help, reply here and we will arrange a replacement within 3 days."
            )
            if rng.random() < 0.05:
                response = "I can't help with that request."
            out.writerow([request, response, topic, rng.choice(CHANNELS), rng.choice(LANGUAGES)])


def import_dataset(items: int, *, seed: int, name: str, work: Path) -> tuple[int, float]:
    """Import a generated CSV through the import_dataset command's code path; returns (id, seconds).

    The seconds cover what a user waits for: every row checked, then written (COPY on PostgreSQL).
    """
    from evals.services.datasets import dataset_import_file

    path = work / f"{name.replace(' ', '-').replace(',', '')}.csv"
    write_csv(path, items, rng=random.Random(seed))
    started = time.perf_counter()
    dataset, report = dataset_import_file(path=path, name=f"{name} rows")
    seconds = time.perf_counter() - started
    path.unlink()
    if dataset is None or report.valid != items:
        raise SystemExit(f"the import of {items:,} rows failed: {report}")
    return dataset.pk, seconds


def justification(evaluator: str, value: float, rng: random.Random) -> str:
    verdict = "meets" if value >= 0.6 else "falls short of"
    details = {
        "Politeness": [
            "The reply opens by thanking the customer and apologises for the trouble.",
            "The tone stays courteous throughout; there is no blame on the customer.",
            "It closes with an offer to help further, which reads as friendly.",
            "One sentence is curt and could be read as dismissive.",
        ],
        "Request relevance": [
            "The answer addresses the product and the problem named in the request.",
            "It gives a concrete next step the customer can take in the app.",
            "Part of the reply is generic and would fit any support question.",
            "The request asks what to do next, and the answer says so directly.",
        ],
        "Concision": [
            "The reply is three sentences long, suitable for a support chat.",
            "No sentence repeats another; the instructions are short.",
            "The closing sentence adds little that the customer needs now.",
            "It could drop the apology and still be complete.",
        ],
    }[evaluator]
    picked = rng.sample(details, k=3)
    return f"Score {value:.3f}: the response {verdict} the {evaluator.lower()} criterion. " + " ".join(picked)


# --- Timing ------------------------------------------------------------------------------------------------


def median_seconds(client: Any, url: str, repeat: int) -> tuple[float, int]:
    response = client.get(url)  # warm-up: caches, prepared statements, template loading
    status = response.status_code
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        response = client.get(url)
        if getattr(response, "streaming", False):
            for _chunk in response.streaming_content:
                pass
        times.append(time.perf_counter() - started)
        status = response.status_code
    return statistics.median(times), status


def prepare_live(run_id: int, changed: int = 100) -> str:
    """Bump the run and `changed` of its items, as a pump writing verdicts would; returns the poll URL."""
    from django.db import transaction
    from django.db.models import F

    from evals.models import Item, Run

    with transaction.atomic():
        cursor = Run.objects.values_list("change_seq", flat=True).get(pk=run_id)
        Run.objects.filter(pk=run_id).update(change_seq=F("change_seq") + 1)
        seq = cursor + 1
        ids = list(
            Item.objects.filter(run_id=run_id).order_by("position").values_list("pk", flat=True)[:changed]
        )
        Item.objects.filter(pk__in=ids).update(change_seq=seq)
    return f"/runs/{run_id}/live/?cursor={cursor}&rows={','.join(map(str, ids))}"


def page_urls(run_id: int) -> dict[str, str]:
    evaluator = EVALUATORS[0]
    return {
        "run page, first page": f"/runs/{run_id}/",
        "sorted by score": f"/runs/{run_id}/?sort=score:{evaluator}",
        "score range + search": (
            f"/runs/{run_id}/?sort=score:{evaluator}&min.{evaluator}=0.2&max.{evaluator}=0.6&q={COMMON_WORD}"
        ),
        **search_urls(run_id),
    }


def search_urls(run_id: int) -> dict[str, str]:
    """The text searches, each also held to TARGET_SEARCH_MS on the big run."""
    return {
        "search, common word": f"/runs/{run_id}/?q={COMMON_WORD}",
        "search, rare word in text": f"/runs/{run_id}/?q={RARE_TEXT_WORD}",
        "search, rare in justifications": f"/runs/{run_id}/?q={RARE_JUSTIFICATION_WORD}",
    }


def time_pages(run_id: int, repeat: int) -> dict[str, tuple[float, int]]:
    from django.contrib.auth import get_user_model
    from django.test import Client

    from evals.models import Item

    user, _ = get_user_model().objects.get_or_create(username="bench")
    client = Client()
    client.force_login(user)
    timings = {label: median_seconds(client, url, repeat) for label, url in page_urls(run_id).items()}
    # The live endpoint: 100 changed items each time (re-bumped before every request).
    times, status = [], 0
    for index in range(repeat + 1):
        url = prepare_live(run_id)
        started = time.perf_counter()
        response = client.get(url)
        elapsed = time.perf_counter() - started
        status = response.status_code
        if index:  # the first one warms up
            times.append(elapsed)
    timings["live, 100 changed"] = (statistics.median(times), status)
    # The figures are kept per version of the run: its first view reads every score, later ones none.
    from django.core.cache import cache

    cache.clear()
    started = time.perf_counter()
    status = client.get(f"/runs/{run_id}/stats/").status_code
    timings["statistics page, first view"] = (time.perf_counter() - started, status)
    timings["statistics page"] = median_seconds(client, f"/runs/{run_id}/stats/", repeat)
    item = (
        Item.objects.filter(run_id=run_id).order_by("position").values_list("pk", flat=True)[len(EVALUATORS)]
    )
    timings["item page"] = median_seconds(client, f"/runs/{run_id}/items/{item}/", repeat)
    return timings


def child_export(run_id: int, var_dir: Path, *, traced: bool = False) -> None:
    setup_django(var_dir)
    from django.contrib.auth import get_user_model
    from django.test import Client

    client = Client()
    client.force_login(get_user_model().objects.get(username="bench"))
    before = peak_mb()
    if traced:
        # The same export matching no row first, so that what the first request imports and caches is
        # not counted as the export's own memory.
        for _ in client.get(f"/runs/{run_id}/export/?format=csv&q=no-row-has-this-text").streaming_content:
            pass
        tracemalloc.start()
    started = time.perf_counter()
    response = client.get(f"/runs/{run_id}/export/?format=csv")
    size = 0
    rows = 0
    for chunk in response.streaming_content:
        size += len(chunk)
        rows += chunk.count(b"\n")
    seconds = time.perf_counter() - started
    traced_peak = tracemalloc.get_traced_memory()[1] if traced else 0
    tracemalloc.stop()
    print(
        json.dumps(
            {
                "seconds": seconds,
                "bytes": size,
                "newlines": rows,
                "peak_mb": peak_mb(),
                "before_mb": before,
                "traced_peak_bytes": traced_peak,
            }
        )
    )


def run_export_child(run_id: int, var_dir: Path, *, traced: bool = False) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, __file__, "--child-export", str(run_id), "--var", str(var_dir)]
        + (["--traced"] if traced else []),
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--small", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument(
        "--database-url",
        default="",
        help="A PostgreSQL server (postgres://user@host:port/db): the bench creates a database of its own "
        "there and drops it at the end. Default: SQLite in the temporary folder.",
    )
    parser.add_argument(
        "--keep", action="store_true", help="Keep the temporary folder and database (both are printed)."
    )
    parser.add_argument(
        "--compare", action="store_true", help="Also build a second big run and time compare on the big runs."
    )
    parser.add_argument(
        "--reuse",
        default="",
        metavar="DATABASE",
        help="With --database-url: time the runs a --keep run left in this database instead of building new ones.",
    )
    parser.add_argument("--child-export", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--var", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--traced", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_export:
        child_export(args.child_export, args.var, traced=args.traced)
        return 0

    work = Path(tempfile.mkdtemp(prefix="docket-bench-results-"))
    var_dir = work / "var"
    server = args.database_url
    database = ""
    if args.reuse and not server:
        parser.error("--reuse needs --database-url")
    if server:
        database = args.reuse or f"docket_bench_results_{os.getpid()}"
        if not args.reuse:
            postgres_admin(server, f"CREATE DATABASE {database}")
        os.environ["DATABASE_URL"] = database_url_with_name(server, database)  # the export child's too
    try:
        return bench(args, work, var_dir)
    finally:
        if args.keep or args.reuse:
            print(f"Kept {work}" + (f" and database {database}" if database else ""))
        else:
            shutil.rmtree(work, ignore_errors=True)
            if database:
                from django.db import connections

                connections.close_all()
                postgres_admin(server, f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")


def reused_runs(args: argparse.Namespace) -> tuple[int, int, int, int | None]:
    """The runs a --keep run built: big, small, the small one's second run, and the big one's (or None)."""
    from evals.models import Run

    def named(name: str) -> int | None:
        return Run.objects.filter(name=name).values_list("pk", flat=True).first()

    found = [
        named(f"bench {args.items:,}"),
        named(f"bench {args.small:,}"),
        named(f"bench {args.small:,} again"),
    ]
    if None in found:
        raise SystemExit(f"--reuse: no runs of {args.items:,} and {args.small:,} items in that database")
    big, small, small_b = (int(pk) for pk in found if pk is not None)
    return big, small, small_b, named(f"bench {args.items:,} again") if args.compare else None


def database_url_with_name(url: str, name: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def postgres_admin(url: str, statement: str) -> None:
    """CREATE or DROP DATABASE, which cannot run in a transaction, on the server `url` names."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(statement)


def bench(args: argparse.Namespace, work: Path, var_dir: Path) -> int:
    setup_django(var_dir)
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0)
    imports: list[tuple[int, float]] = []
    if args.reuse:
        big, small, small_b, big_b = reused_runs(args)
        built_big = 0.0
    else:
        big_dataset, import_big = import_dataset(args.items, seed=1, name=f"bench {args.items:,}", work=work)
        small_dataset, import_small = import_dataset(
            args.small, seed=2, name=f"bench {args.small:,}", work=work
        )
        imports = [(args.items, import_big), (args.small, import_small)]
        started = time.perf_counter()
        big = build_run(args.items, seed=1, name=f"bench {args.items:,}", dataset_id=big_dataset)
        built_big = time.perf_counter() - started
        small = build_run(args.small, seed=2, name=f"bench {args.small:,}", dataset_id=small_dataset)
        small_b = build_run(args.small, seed=3, name=f"bench {args.small:,} again", dataset_id=small_dataset)
        big_b = None
        if args.compare:
            big_b = build_run(args.items, seed=4, name=f"bench {args.items:,} again", dataset_id=big_dataset)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SHOW server_version")
            engine = f"PostgreSQL {cursor.fetchone()[0]}"
    else:
        engine = f"SQLite {__import__('sqlite3').sqlite_version}"
    print(f"Built a {args.items:,}-item run in {built_big:.0f} s (not timed below); files under {work}")
    print(f"Django {__import__('django').get_version()}, {engine}, DEBUG off")
    print()
    if imports:
        print("Import (a generated CSV through the import_dataset command's code path: check, then write):")
        for items, seconds in imports:
            print(f"  {items:>9,} rows: {seconds:7.1f} s, {items / seconds:8,.0f} rows/s")
        (big_rows, big_seconds), (small_rows, small_seconds) = imports
        per_row = (big_seconds / big_rows) / (small_seconds / small_rows)
        print(f"  per row, {big_rows:,} / {small_rows:,}: {per_row:.2f}x")
        print()

    big_times = time_pages(big, args.repeat)
    small_times = time_pages(small, args.repeat)
    from django.contrib.auth import get_user_model
    from django.test import Client

    client = Client()
    client.force_login(get_user_model().objects.get(username="bench"))
    compare_small = median_seconds(client, f"/runs/compare/?a={small}&b={small_b}", args.repeat)
    compare_big = (
        median_seconds(client, f"/runs/compare/?a={big}&b={big_b}", max(args.repeat // 2, 1))
        if big_b
        else None
    )

    failures = []
    width = max(len(label) for label in big_times) + 2
    print(f"{'page':<{width}} {args.items:>9,} {args.small:>9,}  ratio  target")
    for label, (seconds, status) in big_times.items():
        small_seconds, small_status = small_times[label]
        ratio = seconds / small_seconds if small_seconds else math.inf
        targeted = label in (
            "run page, first page",
            "sorted by score",
            "score range + search",
            "live, 100 changed",
        )
        searched = label.startswith("search")
        target = f"<= {TARGET_RATIO}" if targeted else f"< {TARGET_SEARCH_MS} ms" if searched else "(none)"
        flag = ""
        if status >= 400 or small_status >= 400:
            flag = f"  HTTP {status}/{small_status}"
            failures.append(f"{label}: HTTP {status}")
        if targeted and ratio > TARGET_RATIO:
            flag += "  MISSED"
            failures.append(f"{label}: ratio {ratio:.2f}")
        if searched and seconds * 1000 >= TARGET_SEARCH_MS:
            flag += "  MISSED"
            failures.append(f"{label}: {seconds * 1000:.0f} ms")
        print(
            f"{label:<{width}} {seconds * 1000:>7.1f}ms {small_seconds * 1000:>7.1f}ms {ratio:>6.2f}  {target}{flag}"
        )
    big_compare = f"{compare_big[0] * 1000:>7.1f}ms" if compare_big else f"{'(--compare)':>9}"
    print(f"{'compare two runs':<{width}} {big_compare} {compare_small[0] * 1000:>7.1f}ms         (none)")
    print()

    print("Export (CSV through the web view, streamed, in a child process; peak = its VmHWM):")
    for run_id, items in ((big, args.items), (small, args.small)):
        result = run_export_child(run_id, var_dir)
        flag = ""
        if items == args.items and result["peak_mb"] > TARGET_EXPORT_MB:
            flag = "  MISSED"
            failures.append(f"export peak {result['peak_mb']:.0f} MB")
        if result["newlines"] < items:
            flag += "  SHORT"
            failures.append(f"export of {items:,} items gave {result['newlines']:,} lines")
        print(
            f"  {items:>9,} items: {result['seconds']:6.1f} s, {result['bytes'] / 1e6:7.1f} MB of CSV, "
            f"{items / result['seconds']:8,.0f} items/s, peak {result['peak_mb']:5.1f} MB ({result['before_mb']:.1f} before) "
            f"(target <= {TARGET_EXPORT_MB} MB){flag}"
        )
    print()

    print("Export memory (Python allocations while streaming the CSV, tracemalloc on, not timed):")
    traced = {
        items: run_export_child(run_id, var_dir, traced=True)
        for run_id, items in ((big, args.items), (small, args.small))
    }
    for items, result in traced.items():
        print(
            f"  {items:>9,} items: peak {result['traced_peak_bytes'] / 1e6:7.2f} MB for {result['bytes'] / 1e6:7.1f} MB of CSV"
        )
    ratio = traced[args.items]["traced_peak_bytes"] / max(traced[args.small]["traced_peak_bytes"], 1)
    share = traced[args.items]["traced_peak_bytes"] / max(traced[args.items]["bytes"], 1)
    flag = "  MISSED" if ratio > TARGET_EXPORT_TRACED_RATIO else ""
    print(
        f"  peak, {args.items:,} items / {args.small:,} items: {ratio:.2f}x (target <= {TARGET_EXPORT_TRACED_RATIO}x){flag}"
    )
    if flag:
        failures.append(f"export memory grows with the run ({ratio:.2f}x)")
    flag = "  MISSED" if share >= TARGET_EXPORT_TRACED_SHARE else ""
    print(
        f"  peak / CSV produced, {args.items:,} items: {share:.3f} (target < {TARGET_EXPORT_TRACED_SHARE}){flag}"
    )
    if flag:
        failures.append(f"export memory holds {share:.2f} of its output")
    print()
    if failures:
        print("Missed: " + "; ".join(failures))
        return 1
    print("All targets met.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
