"""The reliability suite's stack: real processes, each test in an environment of its own.

A `Stack` owns, for one test:
- the offline judge as its own `runserver` (its own DOCKET_VAR_DIR and SQLite file, a random API key,
  the scenario's OFFLINE_JUDGE_FAULTS); it is a separate service, so it never shares Docket's database;
- Docket's database: a PostgreSQL database created for the test (and dropped after it) when
  DATABASE_URL names a PostgreSQL server, else a SQLite file in a temporary DOCKET_VAR_DIR;
- Docket's broker: Redis when REDIS_URL is set, on a Redis database number of its own (flushed after
  the test; django-q2's queue name is the fixed cluster name "docket", so the number is the isolation),
  else django-q2's ORM broker on that database;
- Docket's web (`runserver`) and workers (`qcluster`), pointed at the judge with SCORABLE_API_URL/KEY;
- an `Agent`: tests/reliability/agent.py run with the same environment, the test's window into the
  stack's database through Django's ORM (see that file for why).

Every process starts in a session of its own, writes its log under the test's tmp_path, and is
stopped when the stack closes, whatever happened in the test.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx

ROOT = Path(__file__).resolve().parents[2]
MANAGE = ROOT / "manage.py"
AGENT = Path(__file__).with_name("agent.py")
PYTHON = sys.executable
SUPPORT_JUDGE = "Support assistant safety"
CHROMIUM = Path(os.environ.get("DOCKET_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

# Nothing of the test run's own configuration leaks into the stack's processes.
STRIP_PREFIXES = ("DOCKET_", "SCORABLE_", "OFFLINE_JUDGE_", "JUDGE_API_", "PYTEST_")
STRIP_NAMES = {"DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE", "DJANGO_ALLOW_ASYNC_UNSAFE"}

# Short timeouts: the same code paths as production, in seconds instead of minutes.
DOCKET_DEFAULTS = {
    "JUDGE_API_TIMEOUT": "2",
    "DOCKET_POLL_MIN_SECONDS": "0.3",
    "DOCKET_POLL_MAX_SECONDS": "2",
    "DOCKET_BACKOFF_MAX_SECONDS": "2",
    "DOCKET_WORKERS": "2",
    "DOCKET_LOG_LEVEL": "INFO",
}

T = TypeVar("T")


class Deadline:
    """One test's time budget: every wait inside the test draws on it."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.at = time.monotonic() + seconds

    def left(self) -> float:
        return self.at - time.monotonic()

    def cap(self, seconds: float) -> float:
        return max(min(seconds, self.left()), 0.0)


def wait_for(
    check: Callable[[], T | None],
    *,
    timeout: float,
    what: str,
    interval: float = 0.25,
    diagnose: Callable[[], str] | None = None,
    pause: Callable[[float], object] = time.sleep,
) -> T:
    """Poll `check` until it returns something truthy; fail the test with `what` after `timeout` seconds.

    `pause` waits between checks: a Playwright page's own wait, so that its events keep arriving.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            detail = f"\n{diagnose()}" if diagnose else ""
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}{detail}")
        pause(interval)  # polling a condition, bounded by the deadline above


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def base_env() -> dict[str, str]:
    return {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(STRIP_PREFIXES) and key not in STRIP_NAMES
    }


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(max(round(share * (len(ordered) - 1)), 0), len(ordered) - 1)
    return ordered[index]


# --- Backends -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Backends:
    """What the suite runs on, from the environment of the test run: DATABASE_URL and REDIS_URL."""

    postgres_url: str
    redis_url: str

    @classmethod
    def from_env(cls) -> Backends:
        database_url = os.environ.get("DATABASE_URL", "")
        postgres = database_url if database_url.startswith(("postgres://", "postgresql://")) else ""
        return cls(postgres_url=postgres, redis_url=os.environ.get("REDIS_URL", ""))

    @property
    def label(self) -> str:
        database = "postgresql" if self.postgres_url else "sqlite"
        broker = "redis" if self.redis_url else "orm"
        return f"{database}+{broker}"


def _replace_path(url: str, path: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, parts.query, parts.fragment))


class PostgresDatabase:
    """A database of the test's own on the server DATABASE_URL names; dropped when the test ends."""

    def __init__(self, server_url: str) -> None:
        self.name = f"docket_rel_{secrets.token_hex(5)}"
        self.url = _replace_path(server_url, f"/{self.name}")
        self._admin_url = _replace_path(server_url, "/postgres")

    def _execute(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self._admin_url, autocommit=True, connect_timeout=10) as conn:
            conn.execute(sql)  # type: ignore[arg-type]

    def create(self) -> None:
        self._execute(f'CREATE DATABASE "{self.name}"')

    def drop(self, *, timeout: float = 60.0) -> None:
        # The server may be coming back from a restart the test made: try until it answers.
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1.0)


class RedisDatabase:
    """A Redis database number that no one else is using, claimed with a key and flushed when done."""

    LOCK = "docket-reliability:claimed"

    def __init__(self, server_url: str) -> None:
        import redis

        self.token = secrets.token_hex(8)
        for number in range(15, 0, -1):
            url = _replace_path(server_url, f"/{number}")
            client = redis.Redis.from_url(url)
            if client.set(self.LOCK, self.token, nx=True, ex=3600):
                if client.dbsize() == 1:
                    self.url, self.client, self.number = url, client, number
                    return
                client.delete(self.LOCK)  # another program keeps keys here: leave it alone
            client.close()
        raise RuntimeError(f"no free Redis database number on {server_url} (1-15 are all in use)")

    def release(self) -> None:
        with contextlib.suppress(Exception):
            if self.client.get(self.LOCK) == self.token.encode():
                self.client.flushdb()
        self.client.close()


# --- Processes ------------------------------------------------------------------------------------------


class Proc:
    """One process of the stack (a server or a qcluster), in a session of its own, logging to a file."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.name = name
        self.log = log
        self.started = time.monotonic()
        with log.open("ab") as handle:
            self.popen = subprocess.Popen(
                argv, env=env, cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
            )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, chars: int = 3000) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return f"--- {self.name} ({self.log}) ---\n{text[-chars:]}"

    def count(self, text: str) -> int:
        """How many lines of this process's log contain `text`."""
        try:
            with self.log.open(errors="replace") as handle:
                return sum(text in line for line in handle)
        except OSError:
            return 0

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM to the main process only (a qcluster stops its own workers), then clean up the group."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=timeout)
        self.kill_group()

    def kill_group(self) -> None:
        """SIGKILL to every process of the group: a crash, as abrupt as it gets."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=10)

    def group_pids(self) -> set[int]:
        """The pids of this process group (the qcluster and its workers), read from /proc."""
        pids = set()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError, ValueError):
                if os.getpgid(int(entry.name)) == self.pid:
                    pids.add(int(entry.name))
        return pids


class AgentError(RuntimeError):
    pass


class Agent:
    """tests/reliability/agent.py in the stack's environment: JSON commands in, JSON answers out."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.log = log
        with log.open("ab") as handle:
            self.popen = subprocess.Popen(
                [PYTHON, str(AGENT)],
                env=env,
                cwd=ROOT,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=handle,
                text=True,
                bufsize=1,
                start_new_session=True,
            )
        self.answers: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self._answer(timeout=60, what="agent start")

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            if line.startswith("@@"):
                self.answers.put(json.loads(line[2:]))
        self.answers.put(None)

    def _answer(self, *, timeout: float, what: str) -> Any:
        try:
            message = self.answers.get(timeout=timeout)
        except queue.Empty:
            raise AgentError(f"the agent did not answer {what} within {timeout:.0f} s") from None
        if message is None:
            raise AgentError(f"the agent exited during {what}; see {self.log}:\n{self._log_tail()}")
        if not message["ok"]:
            raise AgentError(f"{what} failed in the agent:\n{message['error']}")
        return message["result"]

    def _log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return self.log.read_text(errors="replace")[-3000:]
        return ""

    def call(self, cmd: str, *, timeout: float = 120.0, **args: Any) -> Any:
        assert self.popen.stdin is not None
        self.popen.stdin.write(json.dumps({"cmd": cmd, "args": args}) + "\n")
        self.popen.stdin.flush()
        return self._answer(timeout=timeout, what=cmd)

    def close(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            assert self.popen.stdin is not None
            self.popen.stdin.close()
        try:
            self.popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(timeout=10)


# --- The stack ------------------------------------------------------------------------------------------


class Stack:
    def __init__(self, root: Path, backends: Backends) -> None:
        self.root = root
        self.backends = backends
        self.key = secrets.token_urlsafe(24)
        self.logs = root / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.judge_dir = root / "judge"
        self.docket_dir = root / "docket"
        self.procs: list[Proc] = []
        self.judge: Proc | None = None
        self.judge_url = ""
        self.judge_faults = ""
        self.web: Proc | None = None
        self.web_url = ""
        self.web_port = 0
        self.postgres: PostgresDatabase | None = None
        self.redis: RedisDatabase | None = None
        self.env: dict[str, str] = {}
        self._agent: Agent | None = None
        self._counter = 0

    # --- the judge -----------------------------------------------------------------------------------

    def judge_env(self) -> dict[str, str]:
        return {
            **base_env(),
            "DOCKET_VAR_DIR": str(self.judge_dir),
            "OFFLINE_JUDGE_API_KEY": self.key,
            "OFFLINE_JUDGE_FAULTS": self.judge_faults,
            "DOCKET_LOG_LEVEL": "WARNING",
        }

    def start_judge(self, faults: str) -> str:
        self.judge_faults = faults
        self._manage("migrate", "--noinput", "-v0", env=self.judge_env(), name="judge-migrate")
        port = free_port()
        self.judge = self._start("judge", ["runserver", f"127.0.0.1:{port}", "--noreload", "--skip-checks"])
        self.judge_url = f"http://127.0.0.1:{port}/judge-api"
        self._wait_http(f"{self.judge_url}/_offline/stats/", self.judge, headers=self.judge_headers)
        return self.judge_url

    @property
    def judge_headers(self) -> dict[str, str]:
        return {"Authorization": f"Api-Key {self.key}"}

    def judge_stats(self, tag_prefix: str = "") -> dict[str, Any]:
        """The judge's own counters (exempt from its faults)."""
        params = {"tag_prefix": tag_prefix} if tag_prefix else {}
        reply = httpx.get(
            f"{self.judge_url}/_offline/stats/", params=params, headers=self.judge_headers, timeout=30
        )
        reply.raise_for_status()
        return dict(reply.json())

    def judge_call(self, cmd: str, **args: Any) -> Any:
        """One agent command against the judge's own database."""
        agent = Agent(self.judge_env(), self.logs / "judge-agent.log")
        try:
            return agent.call(cmd, **args)
        finally:
            agent.close()

    # --- Docket ---------------------------------------------------------------------------------------

    def provision(self, **settings: str) -> None:
        """Docket's database and broker for this test, its environment, `migrate` and `ensure_var`."""
        assert self.judge_url, "start the judge first"
        env = {
            **base_env(),
            **DOCKET_DEFAULTS,
            "DOCKET_VAR_DIR": str(self.docket_dir),
            "SCORABLE_API_URL": self.judge_url,
            "SCORABLE_API_KEY": self.key,
        }
        if self.backends.postgres_url:
            self.postgres = PostgresDatabase(self.backends.postgres_url)
            self.postgres.create()
            env["DATABASE_URL"] = self.postgres.url
        if self.backends.redis_url:
            self.redis = RedisDatabase(self.backends.redis_url)
            env["REDIS_URL"] = self.redis.url
        env.update(settings)
        self.env = env
        self._manage("migrate", "--noinput", "-v0", env=env, name="docket-migrate")
        # The keys web and workers share (secret key): made once here, as make run and the container do.
        self._manage("ensure_var", env=env, name="docket-var")

    def start_worker(self, name: str = "worker") -> Proc:
        return self._start(name, ["qcluster"])

    def start_web(self) -> Proc:
        self.web_port = self.web_port or free_port()
        self.web = self._start(
            "web", ["runserver", f"127.0.0.1:{self.web_port}", "--noreload", "--skip-checks"]
        )
        self.web_url = f"http://127.0.0.1:{self.web_port}"
        self._wait_http(f"{self.web_url}/login/", self.web)
        return self.web

    @property
    def agent(self) -> Agent:
        if self._agent is None:
            self._agent = Agent(self.env, self.logs / "agent.log")
        return self._agent

    def make_run(self, rows: int, *, batch_size: int = 100) -> dict[str, Any]:
        self.agent.call("sync_judges")
        dataset = self.agent.call("make_dataset", rows=rows)
        return dict(
            self.agent.call("create_run", dataset_id=dataset, judge_name=SUPPORT_JUDGE, batch_size=batch_size)
        )

    def status(self, run_id: int) -> dict[str, Any]:
        return dict(self.agent.call("status", run_id=run_id))

    def diagnose(self, run_id: int | None = None) -> Callable[[], str]:
        def describe() -> str:
            parts = []
            if run_id is not None:
                with contextlib.suppress(Exception):
                    parts.append(f"run: {self.status(run_id)}")
            parts.extend(proc.tail() for proc in self.procs if proc.name != "judge")
            parts.append(f"all logs: {self.logs}")
            return "\n".join(parts)

        return describe

    # --- plumbing -------------------------------------------------------------------------------------

    def _manage(self, *args: str, env: dict[str, str], name: str) -> None:
        log = self.logs / f"{name}.log"
        with log.open("ab") as handle:
            done = subprocess.run(
                [PYTHON, str(MANAGE), *args],
                env=env,
                cwd=ROOT,
                stdout=handle,
                stderr=subprocess.STDOUT,
                timeout=180,
            )
        assert done.returncode == 0, (
            f"manage.py {' '.join(args)} failed:\n{log.read_text(errors='replace')[-3000:]}"
        )

    def _start(self, name: str, args: list[str]) -> Proc:
        self._counter += 1
        env = self.judge_env() if name == "judge" else self.env
        proc = Proc(name, [PYTHON, str(MANAGE), *args], env, self.logs / f"{self._counter:02d}-{name}.log")
        self.procs.append(proc)
        return proc

    def _wait_http(self, url: str, proc: Proc, headers: dict[str, str] | None = None) -> None:
        def answers() -> bool:
            assert proc.alive(), f"{proc.name} exited:\n{proc.tail()}"
            try:
                httpx.get(url, headers=headers, timeout=2)
            except httpx.HTTPError:
                return False
            return True

        wait_for(answers, timeout=60, what=f"{url} to answer", diagnose=proc.tail)

    def close(self) -> None:
        """Stop everything this stack started (workers first), then drop its database and Redis data."""
        errors: list[str] = []
        order = sorted(self.procs, key=lambda proc: proc.name == "judge")
        for proc in order:
            try:
                proc.stop(timeout=10)
            except Exception as error:  # keep going: everything must be stopped
                errors.append(f"{proc.name}: {error!r}")
        if self._agent is not None:
            with contextlib.suppress(Exception):
                self._agent.close()
        if self.postgres is not None:
            try:
                self.postgres.drop()
            except Exception as error:
                errors.append(f"dropping {self.postgres.name}: {error!r}")
        if self.redis is not None:
            self.redis.release()
        if errors:
            raise RuntimeError("; ".join(errors))


# --- Chromium -------------------------------------------------------------------------------------------


def in_chromium(scenario: Callable[[Any], None], *, timeout: float) -> None:
    """Run `scenario(page)` with a fresh Chromium page, in a thread of its own.

    Playwright's sync API allows one instance per thread, and tests/browser keeps a session-wide one
    open in pytest's thread; a thread of our own has its own event loop, whatever ran before.
    """
    failures: list[BaseException] = []

    def drive() -> None:
        from playwright.sync_api import sync_playwright

        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
                try:
                    page = browser.new_context(viewport={"width": 1360, "height": 900}).new_page()
                    page.set_default_timeout(15_000)
                    scenario(page)
                finally:
                    browser.close()
        except BaseException as error:  # handed to pytest's thread below
            failures.append(error)

    thread = threading.Thread(target=drive, name="chromium", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise AssertionError(f"the browser scenario did not finish within {timeout:.0f} s")
    if failures:
        raise failures[0]


# --- Checks ---------------------------------------------------------------------------------------------


def check_run_against_judge(stack: Stack, run: dict[str, Any]) -> dict[str, Any]:
    """The run is over, nothing is lost or doubled, and Docket agrees with the judge item by item.

    - every item is terminal (completed or failed), and there is one per row;
    - each `docket:<run>:<batch>` tag was created exactly once at the judge (its stats and its
      database agree), and each of Docket's batches points at that one remote batch;
    - each item's status is the judge's outcome for it: the failed items are exactly those the judge
      failed; every completed item has its scores.
    """
    records = stack.agent.call("records", run_id=run["id"])
    items = records["items"]
    assert len(items) == run["total"], f"{len(items)} items stored for a run of {run['total']}"
    statuses: dict[str, int] = {}
    for item in items:
        statuses[item[2]] = statuses.get(item[2], 0) + 1
    unfinished = {status: n for status, n in statuses.items() if status not in ("completed", "failed")}
    assert not unfinished, f"items not terminal: {unfinished} (run is {records['status']})"

    prefix = f"docket:{records['uid']}:"
    expected_tags = {batch["tag"] for batch in records["batches"]}
    by_tag = stack.judge_stats(prefix)["database"]["batches_by_tag"]
    doubled = {tag: n for tag, n in by_tag.items() if n != 1}
    assert not doubled, f"tags created more than once at the judge: {doubled}"
    assert set(by_tag) == expected_tags, (
        f"judge has tags {sorted(set(by_tag) ^ expected_tags)} that differ from Docket's batches"
    )
    judged = stack.judge_call("judge_batches", tag_prefix=prefix)
    assert {tag: len(found) for tag, found in judged.items()} == dict.fromkeys(expected_tags, 1)
    remote = {tag: found[0] for tag, found in judged.items()}
    wrong_ids = [
        batch["tag"] for batch in records["batches"] if batch["remote_id"] != remote[batch["tag"]]["id"]
    ]
    assert not wrong_ids, f"batches pointing at another remote batch than their tag's: {wrong_ids}"

    positions = {batch["position"]: batch["tag"] for batch in records["batches"]}
    mismatched = []
    unscored = []
    judge_failed = 0
    for batch_position, index, status, scores, error in items:
        outcome = remote[positions[batch_position]]["items"].get(str(index))
        judge_failed += outcome == "failed"
        if status != outcome:
            mismatched.append((batch_position, index, status, outcome, error))
        if status == "completed" and not scores:
            unscored.append((batch_position, index))
    assert not mismatched, (
        f"{len(mismatched)} items differ from the judge's outcome (batch, index, Docket, judge, error): "
        f"{mismatched[:10]}"
    )
    assert not unscored, f"{len(unscored)} completed items without scores: {unscored[:10]}"
    return {
        "items": len(items),
        "completed": statuses.get("completed", 0),
        "failed": statuses.get("failed", 0),
        "judge_failed": judge_failed,
        "remote_batches": len(by_tag),
    }


def request_counts(stats: dict[str, Any]) -> dict[str, int]:
    return {route: n for route, n in stats["process"]["requests"].items() if "stats" not in route}
