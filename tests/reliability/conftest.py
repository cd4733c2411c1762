"""The reliability suite: real processes under faults, crashes and load. Off unless DOCKET_RELIABILITY=1.

    DOCKET_RELIABILITY=1 .venv/bin/pytest tests/reliability -v
    DOCKET_RELIABILITY=1 DATABASE_URL=postgres://postgres@127.0.0.1:5432/docket \\
        REDIS_URL=redis://127.0.0.1:6379/0 .venv/bin/pytest tests/reliability -v

Each test builds its own stack (harness.Stack) and prints its figures in a section of the summary.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.reliability.harness import Backends, Stack

ENABLED = os.environ.get("DOCKET_RELIABILITY") == "1"
FIGURES: dict[str, dict[str, Any]] = {}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "reliability: real processes under faults, crashes and load (runs with DOCKET_RELIABILITY=1)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip = pytest.mark.skip(
        reason="reliability suite: set DOCKET_RELIABILITY=1 to run it (real processes, minutes)"
    )
    for item in items:
        if item.get_closest_marker("reliability") and not ENABLED:
            item.add_marker(skip)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not FIGURES:
        return
    terminalreporter.section(f"Docket reliability figures ({Backends.from_env().label})")
    for name, figures in FIGURES.items():
        terminalreporter.write_line(f"{name}:")
        for key, value in figures.items():
            terminalreporter.write_line(
                f"    {key}: {json.dumps(value) if not isinstance(value, str) else value}"
            )
    if path := os.environ.get("DOCKET_RELIABILITY_FIGURES"):
        Path(path).write_text(json.dumps({Backends.from_env().label: FIGURES}, indent=2))


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture(scope="session")
def backends() -> Backends:
    return Backends.from_env()


@pytest.fixture
def stack(request: pytest.FixtureRequest, backends: Backends) -> Iterator[Stack]:
    """A stack of this test's own; every process it started is stopped and its database dropped after.

    Its directory (var dirs, SQLite files, every process's log) is outside pytest's tmp_path, which
    other pytest runs on this machine clean up: removed when the test passes, kept when it fails (or
    always, with DOCKET_RELIABILITY_KEEP=1).
    """
    root = Path(tempfile.mkdtemp(prefix=f"docket-reliability-{request.node.name[:40]}-"))
    built = Stack(root, backends)
    try:
        yield built
    finally:
        built.close()
        report = getattr(request.node, "report_call", None)
        keep = os.environ.get("DOCKET_RELIABILITY_KEEP") == "1"
        if report is not None and not report.failed and not keep:
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"\nreliability stack kept for inspection: {root}")


@pytest.fixture
def figures(request: pytest.FixtureRequest, backends: Backends) -> dict[str, Any]:
    """What the test measured, printed in the summary (and kept even when the test fails)."""
    collected: dict[str, Any] = {"configuration": backends.label}
    FIGURES[request.node.name] = collected
    return collected
