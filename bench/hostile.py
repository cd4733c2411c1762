"""Benchmark: the hostile files of issue 11, each read as an upload is read, with its time and memory.

    .venv/bin/python bench/hostile.py [--only NAME ...]

Builds every file of tests/hostile/build.py in a temporary folder, reads each in a fresh process
(tests/hostile/measure.py: inspect, preview, check every row, as upload_create and upload_validate do)
and prints a table: the file, its size on disk, the outcome, the seconds the reading took and the
process's peak resident memory (VmHWM). Targets: under 30 s and under 500 MB for every file.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.hostile import build  # noqa: E402


def cases() -> dict[str, object]:
    def blank_rows_under_part_limit(folder: Path) -> Path:
        path = build.xlsx_blank_rows(folder, blank=40_000_000)
        return path.rename(folder / "blank-rows-40m.xlsx")

    def dimension_lie_small(folder: Path) -> Path:
        path = build.xlsx_dimension_lie(folder, rows=3)
        return path.rename(folder / "dimension-small.xlsx")

    return {
        **build.BUILDERS,
        "xlsx_blank_rows_40m": blank_rows_under_part_limit,
        "xlsx_dimension_lie_3_rows": dimension_lie_small,
    }


def human(size: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024  # type: ignore[assignment]
    return f"{size:.1f} TB"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", nargs="*", default=[], help="Names of the files to run (default: all).")
    args = parser.parse_args()
    builders = cases()
    names = args.only or list(builders)
    rows: list[tuple[str, str, str, str, str, str]] = []
    with tempfile.TemporaryDirectory(prefix="docket-hostile-") as tmp:
        folder = Path(tmp)
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "dashboard.settings",
            "DOCKET_VAR_DIR": str(folder / "var"),
            "DOCKET_LOG_LEVEL": "WARNING",
        }
        for name in names:
            case_folder = folder / name
            case_folder.mkdir()
            path = builders[name](case_folder)  # type: ignore[operator]
            size = path.stat().st_size
            started = time.monotonic()
            done = subprocess.run(
                [sys.executable, "-m", "tests.hostile.measure", str(path)],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
            )
            wall = time.monotonic() - started
            if done.returncode:
                rows.append(
                    (name, human(size), "CRASHED", done.stderr.strip().splitlines()[-1], f"{wall:.1f}", "?")
                )
                continue
            result = json.loads(done.stdout.strip().splitlines()[-1])
            if result["outcome"] == "refused":
                detail = result["message"]
            elif result["outcome"] == "invalid":
                detail = result["problems"][0]
            else:
                detail = f"{result['rows']:,} rows, {result['columns']} columns"
            rows.append(
                (
                    name,
                    human(size),
                    result["outcome"],
                    detail,
                    f"{result['seconds']:.2f}",
                    f"{result['peak_mb']:.0f}",
                )
            )
            path.unlink()
    header = ("file", "size", "outcome", "message or first problem", "seconds", "peak MB")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    widths[3] = min(widths[3], 110)
    for row in [header, tuple("-" * width for width in widths), *rows]:
        cells = [
            cell if len(cell) <= widths[i] else cell[: widths[i] - 1] + "…" for i, cell in enumerate(row)
        ]
        print(" | ".join(cell.ljust(widths[i]) for i, cell in enumerate(cells)))


if __name__ == "__main__":
    main()
