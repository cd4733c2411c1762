"""ensure_var: var/, its uploads folder and the generated keys, made by the commands that start Docket."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from django.core.management import call_command
from pytest_django.fixtures import Settings as SettingsWrapper

from dashboard.management.commands.ensure_var import key_write_once

KEYS = ["secret-key", "offline-judge-api-key"]


@pytest.fixture
def var_dir(settings: SettingsWrapper, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    settings.VAR_DIR = tmp_path / "var"
    settings.FILE_UPLOAD_TEMP_DIR = tmp_path / "var" / "uploads"
    # As the settings list them when the environment gives neither key.
    settings.GENERATED_KEYS = KEYS
    monkeypatch.delenv("DOCKET_ADMIN_USER", raising=False)
    monkeypatch.delenv("DOCKET_ADMIN_PASSWORD", raising=False)
    return tmp_path / "var"


def test_ensure_var_makes_the_folders_and_each_key_once(var_dir: Path) -> None:
    out = io.StringIO()
    call_command("ensure_var", stdout=out)
    assert (var_dir / "uploads").is_dir()
    keys = {name: (var_dir / name).read_text() for name in KEYS}
    assert len(set(keys.values())) == 2 and all(len(key.strip()) >= 40 for key in keys.values())
    assert all(oct((var_dir / name).stat().st_mode & 0o777) == "0o600" for name in KEYS)
    assert out.getvalue().count("Generated") == 2
    again = io.StringIO()
    call_command("ensure_var", stdout=again)
    assert again.getvalue() == ""
    assert {name: (var_dir / name).read_text() for name in KEYS} == keys


def test_a_key_another_process_wrote_first_is_kept(tmp_path: Path) -> None:
    # Web and worker start together and both run ensure_var: the second must take the first one's key.
    path = tmp_path / "offline-judge-api-key"
    path.write_text("written-by-the-web-process\n")
    assert key_write_once(path) is False
    assert path.read_text() == "written-by-the-web-process\n"
    fresh = tmp_path / "secret-key"
    assert key_write_once(fresh) is True
    assert fresh.read_text().strip()


@pytest.mark.django_db
def test_ensure_login_makes_the_keys_before_make_run_starts_docket(var_dir: Path) -> None:
    call_command("ensure_login", stdout=io.StringIO())
    assert sorted(path.name for path in var_dir.iterdir()) == [
        "admin-password.txt",
        "offline-judge-api-key",
        "secret-key",
        "uploads",
    ]


def test_the_system_checks_warn_until_the_keys_are_kept_in_var(var_dir: Path) -> None:
    from dashboard.apps import generated_keys_check

    warnings = generated_keys_check()
    assert [warning.id for warning in warnings] == ["docket.W001"]
    assert "secret-key, offline-judge-api-key" in warnings[0].msg and "ensure_var" in str(warnings[0].hint)
    call_command("ensure_var", stdout=io.StringIO())
    assert generated_keys_check() == []
