"""Benchmark the dataset import against a floor measured in the same run.

    .venv/bin/python bench/ingest.py [--rows 100000]

Generates a CSV (100,000 rows, about 85 MB, with contexts and multi-line responses) in a temporary
folder, then runs three child processes on it, one after the other:

- docket: the upload's code path on a throwaway SQLite database under a temporary DOCKET_VAR_DIR
  (migrated first, not timed): upload_create (hash, encoding check, preview, mapping), the check task
  (every row validated), then upload_import and the import task (rows written in bounded transactions
  of at most 5,000 rows). "import" below is the last step, from confirming to a ready dataset.
- floor: Python's csv reader plus one sqlite3 executemany, in one transaction, of the same rows into a
  same-shaped table: evals_example's own CREATE statements copied from Docket's database (columns,
  CHECKs, UNIQUE, indexes), each row with a 64-hex hash as its input_key so that index does the
  same work as in Docket. Same pragmas as Docket (WAL, synchronous=NORMAL).
- bare floor: the same, into a table with the same columns and no index, constraint or hash; printed
  for reference only.

Prints rows per second, the import process's peak memory (ru_maxrss of that child process, so it
includes the interpreter and Django), and the ratio of Docket's import to the floor. Targets: ratio
<= 2.0 and peak memory <= 300 MB; exits 1 when a target is missed. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import random
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET_RATIO = 2.0
TARGET_PEAK_MB = 300

WORDS = [
    *[
        "the",
        "model",
        "answer",
        "context",
        "retrieval",
        "latency",
        "judge",
        "score",
        "policy",
        "refund",
        "customer",
        "order",
        "invoice",
    ],
    *[
        "shipping",
        "account",
        "password",
        "reset",
        "billing",
        "plan",
        "upgrade",
        "cancel",
        "support",
        "ticket",
        "error",
        "network",
    ],
    *[
        "cache",
        "database",
        "request",
        "response",
        "token",
        "stream",
        "batch",
        "evaluation",
        "metric",
        "quality",
        "safety",
        "tone",
    ],
]


def sentence(rng: random.Random, words: int) -> str:
    return " ".join(rng.choices(WORDS, k=words)).capitalize() + "."


def generate(path: Path, rows: int) -> None:
    rng = random.Random(3)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "question", "answer", "contexts", "expected", "category"])
        for i in range(rows):
            answer = "\n".join(sentence(rng, rng.randint(12, 18)) for _ in range(rng.randint(3, 5)))
            contexts = json.dumps([sentence(rng, rng.randint(12, 20)) for _ in range(rng.randint(1, 3))])
            writer.writerow(
                [
                    f"row-{i}",
                    sentence(rng, rng.randint(8, 16)),
                    answer,
                    contexts,
                    sentence(rng, 10),
                    f"cat-{i % 7}",
                ]
            )


def peak_mb() -> float:
    # ru_maxrss is in kilobytes on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def example_schema(work: Path) -> list[str]:
    """The CREATE statements of evals_example (table, constraints, indexes) from the migrated database."""
    connection = sqlite3.connect(work / "var" / "docket.sqlite3")
    rows = connection.execute(
        "SELECT sql FROM sqlite_master WHERE tbl_name = 'evals_example' AND sql IS NOT NULL ORDER BY type DESC"
    ).fetchall()
    connection.close()
    return [row[0] for row in rows]


def child_floor(csv_path: Path, work: Path, *, bare: bool = False) -> dict[str, float]:
    """csv reader + one executemany in one transaction.

    The floor proper writes into a table of the same shape as Docket's (the CREATE statements of
    evals_example: columns, CHECKs, UNIQUE and indexes) the same rows, including a 64-hex input_key per
    row (SHA-256 of the request cell) so the input_key index does the same work. The bare floor
    (bare=True) writes the same columns into a table with no index, constraint or hash, for reference.
    """
    database = work / ("bare.sqlite3" if bare else "floor.sqlite3")
    connection = sqlite3.connect(database, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    if bare:
        connection.execute(
            "CREATE TABLE evals_example (id INTEGER PRIMARY KEY AUTOINCREMENT, dataset_id INTEGER NOT NULL, "
            "position INTEGER NOT NULL, source_line INTEGER NOT NULL, request TEXT NOT NULL, "
            "response TEXT NOT NULL, contexts TEXT NOT NULL, expected_output TEXT NOT NULL, turns TEXT NULL, "
            "system_prompt TEXT NOT NULL, metadata TEXT NOT NULL, input_key VARCHAR(80) NOT NULL, "
            "user_id VARCHAR(255) NOT NULL, session_id VARCHAR(255) NOT NULL)"
        )
    else:
        for statement in example_schema(work):
            connection.execute(statement)
    sha256 = hashlib.sha256
    started = time.perf_counter()
    with csv_path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        next(reader)
        # Metadata as JSON with the keys Docket keeps (the CHECKs want JSON; these cells need no escaping).
        rows = (
            (
                1,
                position,
                position + 2,
                row[1],
                row[2],
                row[3],
                row[4],
                None,
                "",
                f'{{"id": "{row[0]}", "category": "{row[5]}"}}',
                "" if bare else sha256(row[1].encode()).hexdigest(),
                "",
                "",
            )
            for position, row in enumerate(reader)
        )
        connection.execute("BEGIN")
        connection.executemany(
            "INSERT INTO evals_example (dataset_id, position, source_line, request, response, contexts, "
            "expected_output, turns, system_prompt, metadata, input_key, user_id, session_id) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            rows,
        )
        connection.execute("COMMIT")
    seconds = time.perf_counter() - started
    count = connection.execute("SELECT COUNT(*) FROM evals_example").fetchone()[0]
    connection.close()
    return {"seconds": seconds, "rows": count, "peak_mb": peak_mb()}


def child_docket(csv_path: Path, work: Path) -> dict[str, float]:
    os.environ["DOCKET_VAR_DIR"] = str(work / "var")
    os.environ["DJANGO_SETTINGS_MODULE"] = "dashboard.settings"
    os.environ.setdefault("DOCKET_LOG_LEVEL", "WARNING")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from unittest import mock

    from django.core.management import call_command

    from dashboard.management.commands.ensure_var import var_folders

    var_folders()  # what manage.py does before any command: SQLite's database goes in var/
    from evals import tasks
    from evals.models import Dataset, Upload
    from evals.services import uploads

    call_command("migrate", verbosity=0)
    # The upload handler leaves the file in FILE_UPLOAD_TEMP_DIR; upload_create moves it from there.
    received = Path(uploads.uploads_dir()) / "received.csv"
    shutil.copyfile(csv_path, received)
    # Large files go to background tasks; here the task functions are called in this process.
    with mock.patch("django_q.tasks.async_task"):
        started = time.perf_counter()
        upload = uploads.upload_create(source=received, original_name="bench.csv")
        received_at = time.perf_counter()
        tasks.upload_validate(str(upload.pk))
        upload = Upload.objects.get(pk=upload.pk)
        checked_at = time.perf_counter()
        dataset = uploads.upload_import(upload=upload, name="bench", skip_invalid=False)
        tasks.dataset_import(str(upload.pk))
        imported_at = time.perf_counter()
    dataset = Dataset.objects.get(pk=dataset.pk)
    assert dataset.status == Dataset.Status.READY, dataset.import_error
    # What the dataset page's search costs on this many rows (a word in few rows, then one in none).
    from django.db.models import Q

    search_started = time.perf_counter()
    list(dataset.examples.filter(Q(request__icontains="zebra") | Q(response__icontains="zebra"))[:51])
    search_seconds = time.perf_counter() - search_started
    return {
        "receive_seconds": received_at - started,
        "check_seconds": checked_at - received_at,
        "import_seconds": imported_at - checked_at,
        "rows": dataset.row_count,
        "invalid": upload.report["invalid"],
        "search_miss_seconds": search_seconds,
        "peak_mb": peak_mb(),
    }


def run_child(kind: str, csv_path: Path, work: Path) -> dict[str, float]:
    output = subprocess.run(
        [sys.executable, __file__, "--child", kind, "--file", str(csv_path), "--work", str(work)],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    return json.loads(output.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--child", choices=["floor", "bare", "docket"])
    parser.add_argument("--file", type=Path)
    parser.add_argument("--work", type=Path)
    args = parser.parse_args()
    if args.child:
        if args.child == "docket":
            result = child_docket(args.file, args.work)
        else:
            result = child_floor(args.file, args.work, bare=args.child == "bare")
        print(json.dumps(result))
        return 0

    with tempfile.TemporaryDirectory(prefix="docket-bench-") as temp:
        work = Path(temp)
        csv_path = work / "bench.csv"
        started = time.perf_counter()
        generate(csv_path, args.rows)
        size_mb = csv_path.stat().st_size / 1e6
        print(
            f"generated {args.rows:,} rows, {size_mb:.1f} MB in {time.perf_counter() - started:.1f} s: {csv_path.name}"
        )
        # Docket first: the floor copies its table's schema from the database Docket migrated.
        docket = run_child("docket", csv_path, work)
        floor = run_child("floor", csv_path, work)
        bare = run_child("bare", csv_path, work)

    rows = docket["rows"]
    assert rows == floor["rows"] == bare["rows"] == args.rows, (rows, floor["rows"], bare["rows"])
    whole = docket["receive_seconds"] + docket["check_seconds"] + docket["import_seconds"]
    ratio = docket["import_seconds"] / floor["seconds"]

    def line(label: str, seconds: float) -> None:
        print(f"{label:<52} {seconds:6.2f} s {rows / seconds:9,.0f} rows/s")

    line("floor: csv + one executemany, same-shaped table", floor["seconds"])
    line("bare floor: same columns, no index or hash", bare["seconds"])
    print(f"{'docket receive: hash, encoding, preview':<52} {docket['receive_seconds']:6.2f} s")
    line("docket check: every row validated", docket["check_seconds"])
    line("docket import: confirm to ready (the upload's path)", docket["import_seconds"])
    line("docket all steps: receive + check + import", whole)
    print(
        f"docket peak memory (ru_maxrss of the import process): {docket['peak_mb']:.0f} MB (target <= {TARGET_PEAK_MB})"
    )
    print(f"search of {rows:,} rows for a word no row has: {docket['search_miss_seconds'] * 1000:.0f} ms")
    print(f"ratio import / floor: {ratio:.2f} (target <= {TARGET_RATIO})")
    print(
        f"for reference: all steps / floor {whole / floor['seconds']:.2f}, import / bare floor {docket['import_seconds'] / bare['seconds']:.2f}"
    )
    ok = ratio <= TARGET_RATIO and docket["peak_mb"] <= TARGET_PEAK_MB
    print("targets met" if ok else "TARGETS MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
