"""Read one file the way an upload is read, in a fresh process, and print what happened as JSON.

    python -m tests.hostile.measure PATH

The steps of upload_create and upload_validate without the database: inspect the file, read the
first sheet that has rows (XLSX), preview, guess the mapping, check every row. Prints the outcome
("refused" with the message, "invalid" with the first problems, or "valid"), the seconds taken and
the process's peak resident memory (VmHWM), so that the memory is measured for the whole process
and not only for Python's allocations.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def peak_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0  # pragma: no cover - every Linux has VmHWM


def read_like_an_upload(path: Path) -> dict[str, Any]:
    from django.conf import settings

    from evals import ingest

    try:
        facts = ingest.inspect_file(path, name=path.name, max_bytes=settings.DOCKET_MAX_UPLOAD_BYTES)
        spec = ingest.ReadSpec(str(path), facts.file_format, facts.encoding, facts.delimiter or ",")
        if facts.file_format == "xlsx":
            sheets = ingest.xlsx_sheet_names(str(path))
            spec = ingest.ReadSpec(str(path), "xlsx", sheet=sheets[0])
        columns, _rows, _more = ingest.preview(spec, rows=10)
        mapping = ingest.detect_mapping(columns)
        report = ingest.validate(spec, mapping, max_rows=settings.DOCKET_MAX_ROWS)
    except ingest.IngestError as error:
        return {"outcome": "refused", "message": str(error)}
    problems = [str(problem) for problem in report.problems[:5]]
    return {
        "outcome": "invalid" if report.invalid else "valid",
        "rows": report.rows,
        "columns": len(report.columns),
        "problems": problems,
    }


def main() -> None:
    path = Path(sys.argv[1])
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
    os.environ.setdefault("DOCKET_VAR_DIR", tempfile.mkdtemp(prefix="docket-hostile-"))
    os.environ.setdefault("DOCKET_LOG_LEVEL", "WARNING")
    import django

    django.setup()
    start = time.monotonic()
    result = read_like_an_upload(path)
    result["seconds"] = round(time.monotonic() - start, 2)
    result["peak_mb"] = round(peak_mb(), 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
