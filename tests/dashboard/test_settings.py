"""How Docket runs: DEBUG off unless asked for, and production mode's required settings and clean `check --deploy`."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from django.conf import settings
from django.test import Client

MANAGE = str(Path(settings.BASE_DIR) / "manage.py")


def run_manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # The browser tests' DJANGO_ALLOW_ASYNC_UNSAFE must not leak into a deployment check.
    base = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DOCKET_", "DATABASE_URL", "REDIS_URL", "DJANGO_ALLOW_ASYNC_UNSAFE"))
    }
    return subprocess.run(
        [sys.executable, MANAGE, *args], env={**base, **env}, capture_output=True, text=True, timeout=120
    )


def test_check_deploy_reports_nothing_in_production_mode(tmp_path: Path) -> None:
    result = run_manage(
        "check",
        "--deploy",
        "--fail-level",
        "DEBUG",
        env={
            "DOCKET_PRODUCTION": "1",
            "DOCKET_VAR_DIR": str(tmp_path),
            "SECRET_KEY": "x8#kq2!v-4Lr9wT0zP@3mN6bY1cJ7hF5dS2aQ8eU4iO0pK9lZ6gX3",
            "ALLOWED_HOSTS": "docket.example.com",
        },
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout


def test_production_mode_refuses_to_start_without_a_secret_key(tmp_path: Path) -> None:
    result = run_manage(
        "check",
        env={
            "DOCKET_PRODUCTION": "1",
            "DOCKET_VAR_DIR": str(tmp_path),
            "ALLOWED_HOSTS": "docket.example.com",
        },
    )
    assert result.returncode != 0
    assert "SECRET_KEY must be set when DOCKET_PRODUCTION=1." in result.stderr


def test_production_mode_refuses_to_start_without_allowed_hosts(tmp_path: Path) -> None:
    result = run_manage(
        "check",
        env={
            "DOCKET_PRODUCTION": "1",
            "DOCKET_VAR_DIR": str(tmp_path),
            "SECRET_KEY": "k" * 30 + "abcdefghijklmnopqrstuvwxyz",
        },
    )
    assert result.returncode != 0
    assert "ALLOWED_HOSTS must be set" in result.stderr


SHOW_MODE = (
    "from django.conf import settings as s; "
    "print(s.DEBUG, s.PRODUCTION, sorted(s.ALLOWED_HOSTS), s.WHITENOISE_USE_FINDERS, s.SESSION_COOKIE_SECURE)"
)


def test_make_run_defaults_to_debug_off_with_a_kept_secret_key_on_localhost(tmp_path: Path) -> None:
    first = run_manage("shell", "--no-imports", "-c", SHOW_MODE, env={"DOCKET_VAR_DIR": str(tmp_path)})
    assert first.returncode == 0, first.stderr
    assert first.stdout.split() == [
        "False",
        "False",
        "['127.0.0.1',",
        "'[::1]',",
        "'localhost',",
        "'testserver']",
        "True",
        "False",
    ]
    key = (tmp_path / "secret-key").read_text()
    run_manage("check", env={"DOCKET_VAR_DIR": str(tmp_path)})
    assert (tmp_path / "secret-key").read_text() == key, (
        "the generated key is kept, so sessions survive a restart"
    )


def test_debug_pages_only_when_asked_for(tmp_path: Path) -> None:
    result = run_manage(
        "shell", "--no-imports", "-c", SHOW_MODE, env={"DOCKET_DEBUG": "1", "DOCKET_VAR_DIR": str(tmp_path)}
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[:2] == ["True", "False"]


def test_debug_and_production_together_are_refused(tmp_path: Path) -> None:
    result = run_manage(
        "check",
        env={
            "DOCKET_DEBUG": "1",
            "DOCKET_PRODUCTION": "1",
            "DOCKET_VAR_DIR": str(tmp_path),
            "SECRET_KEY": "k" * 50,
            "ALLOWED_HOSTS": "docket.example.com",
        },
    )
    assert result.returncode != 0
    assert "cannot be combined with DOCKET_PRODUCTION=1" in result.stderr


def test_the_old_docket_debug_0_still_means_production(tmp_path: Path) -> None:
    result = run_manage("check", env={"DOCKET_DEBUG": "0", "DOCKET_VAR_DIR": str(tmp_path)})
    assert result.returncode != 0
    assert "SECRET_KEY must be set when DOCKET_PRODUCTION=1." in result.stderr


def test_development_defaults_use_sqlite_in_wal_with_immediate_transactions() -> None:
    database = settings.DATABASES["default"]
    if database["ENGINE"] != "django.db.backends.sqlite3":
        return  # the PostgreSQL configuration is checked by its own suite
    assert database["OPTIONS"]["transaction_mode"] == "IMMEDIATE"
    assert "journal_mode=WAL" in database["OPTIONS"]["init_command"]


def test_task_retry_exceeds_the_task_timeout() -> None:
    assert settings.Q_CLUSTER["retry"] > settings.Q_CLUSTER["timeout"]  # type: ignore[operator]


def test_the_scorable_url_is_taken_with_or_without_v1(tmp_path: Path) -> None:
    for spelling in ("https://api.scorable.ai/v1", "https://api.scorable.ai/v1/", "https://api.scorable.ai/"):
        result = run_manage(
            "shell",
            "--no-imports",
            "-c",
            "from django.conf import settings; print(settings.JUDGE_API_URL)",
            env={"DOCKET_VAR_DIR": str(tmp_path), "SCORABLE_API_URL": spelling, "SCORABLE_API_KEY": "k"},
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "https://api.scorable.ai", spelling


PRODUCTION_ENV = {
    "DOCKET_PRODUCTION": "1",
    "SECRET_KEY": "x8#kq2!v-4Lr9wT0zP@3mN6bY1cJ7hF5dS2aQ8eU4iO0pK9lZ6gX3",
    "ALLOWED_HOSTS": "docket.example.com,127.0.0.1",
}
ASK_OVER_HTTP = (
    "from django.test import Client; c = Client(); "
    "print(*(c.get(p, HTTP_HOST='127.0.0.1').status_code for p in ('/judge-api/v1/judges/', '/login/')))"
)


def test_production_mode_serves_the_judge_api_over_plain_http_and_redirects_the_rest(tmp_path: Path) -> None:
    # Docket's own worker calls http://127.0.0.1:<port>/judge-api: a 301 to https broke every run.
    result = run_manage(
        "shell", "--no-imports", "-c", ASK_OVER_HTTP, env={**PRODUCTION_ENV, "DOCKET_VAR_DIR": str(tmp_path)}
    )
    assert result.returncode == 0, result.stderr
    # 401: the judge API answered (and wants its key); the login page redirects to https.
    assert result.stdout.split() == ["401", "301"]


def test_every_page_carries_a_strict_content_security_policy(client: Client) -> None:
    policy = client.get("/login/")["Content-Security-Policy"]
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
    assert directives["script-src"] == "'self'"
    assert directives["style-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'"
    assert directives["object-src"] == "'none'"
    assert "unsafe-eval" not in policy
    # htmx is told not to add its own style element or to evaluate strings.
    assert '"includeIndicatorStyles": false' in client.get("/login/").content.decode()


INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)|<style|\son[a-z]+=|\bhx-on|javascript:", re.IGNORECASE)


def test_no_template_holds_inline_script_or_a_style_element() -> None:
    found = [
        f"{path.relative_to(settings.BASE_DIR)}: {match.group(0).strip()}"
        for path in sorted((Path(settings.BASE_DIR) / "templates").rglob("*.html"))
        for match in INLINE_SCRIPT.finditer(path.read_text())
    ]
    assert found == []
