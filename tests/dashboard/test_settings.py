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


# This test run's own configuration, kept out of the processes these tests start. The browser tests'
# DJANGO_ALLOW_ASYNC_UNSAFE must not leak into a deployment check.
CLEARED = (
    "DOCKET_",
    "DATABASE_URL",
    "REDIS_URL",
    "DJANGO_ALLOW_ASYNC_UNSAFE",
    "SECRET_KEY",
    "SCORABLE_",
    "OFFLINE_JUDGE_",
)


def run_manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {key: value for key, value in os.environ.items() if not key.startswith(CLEARED)}
    return subprocess.run(
        [sys.executable, MANAGE, *args], env={**base, **env}, capture_output=True, text=True, timeout=120
    )


def test_check_deploy_reports_nothing_in_production_mode(tmp_path: Path) -> None:
    env = {
        "DOCKET_PRODUCTION": "1",
        "DOCKET_VAR_DIR": str(tmp_path),
        "SECRET_KEY": "x8#kq2!v-4Lr9wT0zP@3mN6bY1cJ7hF5dS2aQ8eU4iO0pK9lZ6gX3",
        "ALLOWED_HOSTS": "docket.example.com",
    }
    # As the container's start does before any role: the offline judge's key is kept in var/.
    assert run_manage("ensure_var", env=env).returncode == 0
    result = run_manage("check", "--deploy", "--fail-level", "DEBUG", env=env)
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
    env = {"DOCKET_VAR_DIR": str(tmp_path)}
    assert run_manage("ensure_var", env=env).returncode == 0  # what `make run` does before it starts Docket
    first = run_manage("shell", "--no-imports", "-c", SHOW_MODE + "; print(s.SECRET_KEY)", env=env)
    assert first.returncode == 0, first.stderr
    *mode, secret_key = first.stdout.split()
    assert mode == [
        "False",
        "False",
        "['127.0.0.1',",
        "'[::1]',",
        "'localhost',",
        "'testserver']",
        "True",
        "False",
    ]
    # Kept in var/ (tests/dashboard/test_ensure_var.py: never replaced), so sessions survive a restart.
    assert secret_key == (tmp_path / "secret-key").read_text().strip()


IMPORT_SETTINGS = "import dashboard.settings as s; print(s.SECRET_KEY != '', s.OFFLINE_JUDGE_API_KEY != '')"


def import_settings(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {key: value for key, value in os.environ.items() if not key.startswith(CLEARED)}
    return subprocess.run(
        [sys.executable, "-c", IMPORT_SETTINGS],
        cwd=settings.BASE_DIR,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_importing_the_settings_writes_nothing(tmp_path: Path) -> None:
    # mypy's Django plugin, pytest and every worker import the settings: none of them may make files.
    missing = tmp_path / "var"
    result = import_settings({"DOCKET_VAR_DIR": str(missing)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "True"], "keys of its own until ensure_var has made them"
    assert not missing.exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert import_settings({"DOCKET_VAR_DIR": str(empty)}).returncode == 0
    assert list(empty.iterdir()) == []


def test_a_command_on_a_fresh_checkout_makes_folders_but_no_key(tmp_path: Path) -> None:
    var_dir = tmp_path / "var"
    result = run_manage("check", env={"DOCKET_VAR_DIR": str(var_dir)})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    # The SQLite database goes in var/; Django's checks want the uploads folder to exist.
    assert sorted(path.name for path in var_dir.iterdir()) == ["uploads"]


def test_no_offline_judge_key_is_generated_when_scorable_is_the_judge(tmp_path: Path) -> None:
    scorable = {"DOCKET_VAR_DIR": str(tmp_path), "SCORABLE_API_KEY": "sk-test"}
    assert run_manage("ensure_var", env=scorable).returncode == 0
    assert sorted(path.name for path in tmp_path.iterdir()) == ["secret-key", "uploads"]
    assert import_settings(scorable).stdout.split() == ["True", "False"], "the offline judge is not served"
    served = import_settings({**scorable, "OFFLINE_JUDGE_ENABLED": "1"})
    assert served.stdout.split() == ["True", "True"], "served anyway when asked for, so it needs its key"


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
