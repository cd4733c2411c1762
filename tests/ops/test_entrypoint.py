"""The container's entrypoint (`manage.py start`), run for real outside Docker.

Each test starts real processes with a clean environment (none of this test run's DOCKET_*,
DATABASE_URL or REDIS_URL), its own DOCKET_VAR_DIR, and a deadline; every process is stopped in
`finally`.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings

pytestmark = pytest.mark.slow

MANAGE = str(Path(settings.BASE_DIR) / "manage.py")
HOST = "docket.test"
TEST_SECRET_KEY = "ops-tests-only-3f9c1b7e5a2d4c6b8e0f1a3c5e7b9d1f2a4c6e8b"
STRIPPED = (
    "DOCKET_",
    "DATABASE_URL",
    "REDIS_URL",
    "DJANGO_ALLOW_ASYNC_UNSAFE",
    "SCORABLE_",
    "OFFLINE_JUDGE_",
)


def clean_env(var_dir: Path, **extra: str) -> dict[str, str]:
    base = {key: value for key, value in os.environ.items() if not key.startswith(STRIPPED)}
    for key in ("SECRET_KEY", "ALLOWED_HOSTS", "WEB_CONCURRENCY", "CSRF_TRUSTED_ORIGINS"):
        base.pop(key, None)
    return {**base, "DOCKET_VAR_DIR": str(var_dir), "DOCKET_LOG_LEVEL": "INFO", **extra}


def start(role: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, MANAGE, "start", role],
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop(process: subprocess.Popen[bytes], *, timeout: float = 30) -> int:
    """SIGTERM to the process we started (by then gunicorn or qcluster itself), SIGKILL to its group if stuck."""
    if process.poll() is None:
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            return -9
    return process.returncode


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_log(log: Path, pattern: str, process: subprocess.Popen[bytes], *, seconds: float) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        if re.search(pattern, text):
            return text
        if process.poll() is not None:
            break
        time.sleep(0.2)  # the process's progress shows only in its log; bounded by the deadline
    raise AssertionError(
        f"{pattern!r} not seen in {seconds:.0f} s (exit {process.poll()}):\n{log.read_text()[-4000:]}"
    )


def command_line(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def fetch(url: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers={"Host": HOST, **headers})
    opener = urllib.request.build_opener(NoRedirects)
    try:
        with opener.open(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def run_healthcheck(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    script = Path(settings.BASE_DIR) / "deploy" / "healthcheck.py"
    return subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=60)


class NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def test_the_web_role_migrates_then_serves_docket_static_files_and_healthz_through_gunicorn(
    tmp_path: Path,
) -> None:
    port = free_port()
    var_dir = tmp_path / "var"
    env = clean_env(
        var_dir,
        DOCKET_PRODUCTION="1",
        SECRET_KEY=TEST_SECRET_KEY,
        ALLOWED_HOSTS=HOST,
        # Behind a TLS proxy: HTTPS redirects stay on, the proxy's X-Forwarded-Proto is trusted.
        DOCKET_BEHIND_PROXY="1",
        DOCKET_STATIC_ROOT=str(tmp_path / "static"),
        DOCKET_BIND="127.0.0.1",
        DOCKET_PORT=str(port),
        WEB_CONCURRENCY="1",
        DOCKET_ADMIN_USER="ops-admin",
        DOCKET_ADMIN_PASSWORD="a-long-ops-test-password",
    )
    log = tmp_path / "web.log"
    web = start("web", env, log)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_log(log, r"Listening at: http://127\.0\.0\.1:\d+", web, seconds=90)
        # The entrypoint replaced itself with gunicorn: signals reach gunicorn, nothing in between.
        assert "gunicorn" in command_line(web.pid)

        # /healthz answers plain HTTP (load balancers probe without TLS) and is healthy.
        status, headers, body = fetch(f"{base}/healthz")
        assert status == 200, body
        assert b'"status": "ok"' in body

        # Everything else is redirected to HTTPS unless the proxy says the request came that way.
        status, headers, _ = fetch(f"{base}/login/")
        assert status == 301 and headers["Location"] == f"https://{HOST}/login/"
        status, headers, body = fetch(f"{base}/login/", **{"X-Forwarded-Proto": "https"})
        assert status == 200
        page = body.decode()
        assert 'name="password"' in page
        assert "Strict-Transport-Security" in headers

        # WhiteNoise serves the collected, hashed stylesheet, compressed and cached for good.
        css_url = re.search(r'href="(/static/dashboard/docket\.[0-9a-f]{12}\.css)"', page)
        assert css_url, page
        status, headers, body = fetch(
            base + css_url.group(1), **{"X-Forwarded-Proto": "https", "Accept-Encoding": "gzip"}
        )
        assert status == 200
        assert headers["Content-Type"].startswith("text/css")
        assert headers.get("Content-Encoding") == "gzip"
        assert "immutable" in headers["Cache-Control"]

        # The image's HEALTHCHECK command agrees.
        check = run_healthcheck(env)
        assert check.returncode == 0 and check.stdout.strip() == "ok", check.stdout + check.stderr

        # A share link's token never reaches the access log.
        fetch(f"{base}/s/share-token-that-must-not-be-logged/", **{"X-Forwarded-Proto": "https"})
    finally:
        code = stop(web)
    # With gunicorn gone, the HEALTHCHECK command reports the container unhealthy.
    assert run_healthcheck(env).returncode == 1
    text = log.read_text()
    assert code == 0, text[-3000:]
    assert "Shutting down: Master" in text
    assert '"GET /s/<token>/ HTTP/1.1"' in text
    assert not re.search(r'"GET /s/share-token-that-must-not-be-logged/', text)
    # Migrated, and the login from DOCKET_ADMIN_USER/PASSWORD exists (made by the web role).
    assert "Applying evals.0001_initial... OK" in text
    with sqlite3.connect(var_dir / "docket.sqlite3") as db:
        assert db.execute("SELECT is_staff FROM auth_user WHERE username = 'ops-admin'").fetchone() == (1,)


def test_a_worker_waits_for_migrations_then_runs_qcluster_until_sigterm(tmp_path: Path) -> None:
    env = clean_env(tmp_path / "var", DOCKET_WORKERS="1", DOCKET_START_TIMEOUT="120")
    log = tmp_path / "worker.log"
    worker = start("worker", env, log)
    try:
        # A fresh database: the worker must not start qcluster on it, nor migrate it itself.
        wait_for_log(log, r"waiting for migrations", worker, seconds=60)
        assert worker.poll() is None
        # Made before qcluster starts, so that the worker and the web role share the offline judge's key.
        assert (tmp_path / "var" / "offline-judge-api-key").read_text().strip()

        migrate = subprocess.run(
            [sys.executable, MANAGE, "start", "migrate"], env=env, capture_output=True, text=True, timeout=120
        )
        assert migrate.returncode == 0, migrate.stdout + migrate.stderr
        assert "migrations applied; done" in migrate.stdout

        text = wait_for_log(log, r"Q Cluster \S+ \[docket\] running\.", worker, seconds=60)
        assert "migrations are applied" in text
        assert "Applying" not in text
        assert "qcluster" in command_line(worker.pid)
        check = run_healthcheck({**env, "DOCKET_ROLE": "worker"})
        assert check.returncode == 0 and check.stdout.strip() == "ok", check.stdout + check.stderr
    finally:
        code = stop(worker)
    text = log.read_text()
    assert code == 0, text[-3000:]
    assert re.search(r"Q Cluster \S+ has stopped\.", text), text[-3000:]


def test_an_unknown_role_is_refused(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, MANAGE, "start", "cron"],
        env=clean_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "Unknown role 'cron'" in result.stderr


# --- PostgreSQL: containers that start together migrate once -------------------------------------


def postgres_admin_url() -> str:
    url = os.environ.get("DATABASE_URL", "")
    if url.startswith(("postgres://", "postgresql://")):
        return url.rsplit("/", 1)[0] + "/postgres"
    return "postgresql://postgres@127.0.0.1:5432/postgres"


@pytest.fixture
def fresh_postgres_database() -> Iterator[str]:
    """A new, uniquely named database on the local PostgreSQL server, dropped afterwards."""
    psycopg = pytest.importorskip("psycopg", reason="PostgreSQL driver not installed (the `team` extra)")
    admin_url = postgres_admin_url()
    try:
        admin = psycopg.connect(admin_url, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.skip(f"no PostgreSQL server to test against: {type(exc).__name__}")
    name = f"docket_ops_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield admin_url.rsplit("/", 1)[0] + f"/{name}"
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_two_migrate_roles_started_together_migrate_a_fresh_postgres_database_once(
    tmp_path: Path, fresh_postgres_database: str
) -> None:
    import psycopg

    env = clean_env(tmp_path / "var", DATABASE_URL=fresh_postgres_database, DOCKET_START_TIMEOUT="120")
    logs = [tmp_path / "migrate-a.log", tmp_path / "migrate-b.log"]
    processes = [start("migrate", env, log) for log in logs]
    try:
        codes = [process.wait(timeout=150) for process in processes]
    finally:
        for process in processes:
            stop(process, timeout=5)
    outputs = [log.read_text() for log in logs]
    assert codes == [0, 0], "\n\n".join(output[-3000:] for output in outputs)
    # One of them applied every migration; the other, once it had the lock, found nothing to do.
    applied = [output.count("Applying ") for output in outputs]
    assert sorted(applied)[0] == 0 and sorted(applied)[1] > 10, applied
    assert sum("No migrations to apply." in output for output in outputs) == 1
    with psycopg.connect(fresh_postgres_database) as db:
        duplicates = db.execute(
            "SELECT app, name FROM django_migrations GROUP BY app, name HAVING count(*) > 1"
        ).fetchall()
        assert duplicates == []
        # The post-migrate hook that installs the pump's watchdog ran without making two.
        assert db.execute(
            "SELECT count(*) FROM django_q_schedule WHERE func = 'evals.tasks.watchdog'"
        ).fetchone() == (1,)
        # Both released the lock: nothing holds it now.
        assert db.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'").fetchone() == (0,)
