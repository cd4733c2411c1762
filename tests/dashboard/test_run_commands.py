"""The commands behind `make run`: ensure_login and serve."""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError
from pytest_django.fixtures import Settings as SettingsWrapper

MANAGE = str(Path(__file__).resolve().parents[2] / "manage.py")


@pytest.fixture
def var_dir(settings: SettingsWrapper, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    settings.VAR_DIR = tmp_path
    monkeypatch.delenv("DOCKET_ADMIN_USER", raising=False)
    monkeypatch.delenv("DOCKET_ADMIN_PASSWORD", raising=False)
    return tmp_path


@pytest.mark.django_db
def test_ensure_login_generates_a_password_once_and_keeps_it(var_dir: Path) -> None:
    out = io.StringIO()
    call_command("ensure_login", stdout=out)
    kept = (var_dir / "admin-password.txt").read_text()
    password = kept.split("password: ")[1].strip()
    assert f"password: {password}" in out.getvalue()
    assert oct((var_dir / "admin-password.txt").stat().st_mode & 0o777) == "0o600"
    user = get_user_model().objects.get(username="admin")
    assert user.check_password(password) and user.is_superuser
    again = io.StringIO()
    call_command("ensure_login", stdout=again)
    assert password not in again.getvalue() and "admin-password.txt" in again.getvalue()
    assert get_user_model().objects.count() == 1


@pytest.mark.django_db
def test_ensure_login_takes_the_login_from_the_environment(
    var_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKET_ADMIN_USER", "grace")
    monkeypatch.setenv("DOCKET_ADMIN_PASSWORD", "hopper-1906-cobol")
    call_command("ensure_login", stdout=io.StringIO())
    assert get_user_model().objects.get(username="grace").check_password("hopper-1906-cobol")
    assert not (var_dir / "admin-password.txt").exists()
    monkeypatch.setenv("DOCKET_ADMIN_PASSWORD", "")
    with pytest.raises(CommandError, match="both"):
        call_command("ensure_login", stdout=io.StringIO())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
def test_serve_starts_web_and_worker_and_ctrl_c_stops_both(tmp_path: Path) -> None:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DOCKET_", "DATABASE_URL", "REDIS_URL"))
    }
    env["DOCKET_VAR_DIR"] = str(tmp_path)
    subprocess.run([sys.executable, MANAGE, "migrate", "-v", "0"], env=env, check=True, timeout=120)
    port = free_port()
    serve = subprocess.Popen(
        [sys.executable, MANAGE, "serve", "--addr", f"127.0.0.1:{port}"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        status = None
        while time.monotonic() < deadline and status is None:
            try:
                status = urllib.request.urlopen(f"http://127.0.0.1:{port}/login/", timeout=2).status  # noqa: S310
            except OSError:
                time.sleep(0.2)  # polling for the server to come up, bounded by the deadline
        assert status == 200
        # Production-like: static files served (WhiteNoise, DEBUG off), Docket's own 404, never a debug page.
        css = urllib.request.urlopen(f"http://127.0.0.1:{port}/static/dashboard/docket.css", timeout=5)  # noqa: S310
        assert css.status == 200 and b"{" in css.read()
        for missing in ("/no-such-page/", "/s/a-revoked-or-made-up-token/"):
            with pytest.raises(urllib.error.HTTPError) as not_found:
                urllib.request.urlopen(f"http://127.0.0.1:{port}{missing}", timeout=5)  # noqa: S310
            assert not_found.value.code == 404
            page = not_found.value.read().decode()
            assert "There is nothing here" in page and "URLconf" not in page and "DEBUG" not in page
        children = subprocess.run(
            ["pgrep", "-P", str(serve.pid)], capture_output=True, text=True
        ).stdout.split()
        assert len(children) == 2, "a web server and a worker"
        serve.send_signal(signal.SIGINT)
        output = serve.communicate(timeout=30)[0].decode()
        assert serve.returncode == 0
        assert "Docket stopped." in output and "Q Cluster" in output
        for pid in children:
            assert (
                not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]
            )
    finally:
        if serve.poll() is None:
            os.killpg(serve.pid, signal.SIGKILL)
