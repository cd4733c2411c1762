"""The container's entrypoint, and the way to run a team server without containers.

`manage.py start [web|worker|migrate]` (or DOCKET_ROLE) prepares what the role needs and then
replaces itself (exec) with the long-running process, so signals from Docker, systemd or a shell
reach gunicorn or qcluster directly and nothing sits in between. Every role first makes DOCKET_VAR_DIR
and the keys Docket generates (`manage.py ensure_var`), then:

- web: waits for the database, migrates under a lock, makes sure someone can log in, collects
  static files if they were not collected at build time (production only), then execs gunicorn.
- worker: waits for the database and for migrations to be applied by someone else, then execs
  qcluster. Workers never migrate: starting ten of them must not mean ten migrations.
- migrate: waits for the database, migrates under the lock, exits (a one-shot job).

The lock makes containers that start together migrate one after the other (the later ones find
nothing to do): a PostgreSQL session advisory lock, released by the server if the holder dies, or
an exclusive file lock under DOCKET_VAR_DIR for SQLite, released by the kernel likewise.
"""

from __future__ import annotations

import fcntl
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import DEFAULT_DB_ALIAS, OperationalError, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.migrations.executor import MigrationExecutor

ROLES = ("web", "worker", "migrate")
# Any fixed 64-bit number that no other code on the same database uses for an advisory lock.
MIGRATE_LOCK_KEY = 0x646F636B65746D67  # "docketmg"
POLL_SECONDS = 1.0
GUNICORN_CONFIG = Path(settings.BASE_DIR) / "deploy" / "gunicorn_config.py"


class Command(BaseCommand):
    help = (
        "Start a Docket role (web, worker or migrate; default $DOCKET_ROLE, else web) the way containers do."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("role", nargs="?", default=os.environ.get("DOCKET_ROLE", "") or "web")
        parser.add_argument(
            "--timeout",
            type=float,
            default=float(os.environ.get("DOCKET_START_TIMEOUT") or 300),
            help="Seconds to wait for the database, the migration lock, or another container's migrations.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        role = options["role"]
        if role not in ROLES:
            raise CommandError(f"Unknown role {role!r}: DOCKET_ROLE must be one of {', '.join(ROLES)}.")
        deadline = time.monotonic() + options["timeout"]
        # First: SQLite's database and the migration lock live in var/, and the process this one becomes
        # reads the keys that web and workers share.
        call_command("ensure_var", stdout=self.stdout)
        connection = connections[DEFAULT_DB_ALIAS]
        self.log(f"role {role}; database {connection.vendor}, broker {settings.DOCKET_BROKER}")
        self.wait_for_database(connection, deadline)

        if role == "worker":
            self.wait_for_migrations(connection, deadline)
            self.exec([sys.executable, str(Path(settings.BASE_DIR) / "manage.py"), "qcluster"])

        with self.migration_lock(connection, deadline):
            call_command("migrate", interactive=False, verbosity=1)
            if role == "web":
                call_command("ensure_login")
                self.collect_static_if_missing()
        if role == "migrate":
            self.log("migrations applied; done")
            return
        self.exec(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "--config",
                str(GUNICORN_CONFIG),
                "dashboard.wsgi:application",
            ]
        )

    # --- Steps -------------------------------------------------------------------------------------

    def wait_for_database(self, connection: BaseDatabaseWrapper, deadline: float) -> None:
        """A database container may still be starting; a server may be restarting."""
        said = False
        while True:
            try:
                connection.ensure_connection()
                return
            except OperationalError as exc:
                connection.close()
                if time.monotonic() >= deadline:
                    raise CommandError(f"The database did not answer in time: {type(exc).__name__}") from exc
                if not said:
                    self.log("waiting for the database...")
                    said = True
                time.sleep(POLL_SECONDS)

    def wait_for_migrations(self, connection: BaseDatabaseWrapper, deadline: float) -> None:
        """What `migrate --check` checks, in a loop: a worker on an old schema would fail its tasks."""
        said = False
        while True:
            try:
                # A fresh executor each time: it reads the applied migrations when it is made.
                executor = MigrationExecutor(connection)
                pending = len(executor.migration_plan(executor.loader.graph.leaf_nodes()))
            except OperationalError:
                # The database went away between checks (a restart): try again until the deadline.
                connection.close()
                pending = -1
            if pending == 0:
                if said:
                    self.log("migrations are applied")
                return
            if time.monotonic() >= deadline:
                raise CommandError(
                    "Migrations are still unapplied: start a web or migrate role, which migrate."
                )
            if not said:
                self.log("waiting for migrations to be applied by a web or migrate role...")
                said = True
            time.sleep(POLL_SECONDS)

    @contextmanager
    def migration_lock(self, connection: BaseDatabaseWrapper, deadline: float) -> Iterator[None]:
        if connection.vendor == "postgresql":
            with self.advisory_lock(deadline):
                yield
        else:
            with self.file_lock(Path(settings.VAR_DIR) / "migrate.lock", deadline):
                yield

    @contextmanager
    def advisory_lock(self, deadline: float) -> Iterator[None]:
        # Its own connection: migrate may close or reset the default one; the lock must outlive that.
        holder = connections.create_connection(DEFAULT_DB_ALIAS)
        try:
            said = False
            while True:
                with holder.cursor() as cursor:
                    cursor.execute("SELECT pg_try_advisory_lock(%s)", [MIGRATE_LOCK_KEY])
                    if cursor.fetchone()[0]:
                        break
                self.wait_for_lock(deadline, said)
                said = True
            try:
                yield
            finally:
                with holder.cursor() as cursor:
                    cursor.execute("SELECT pg_advisory_unlock(%s)", [MIGRATE_LOCK_KEY])
        finally:
            holder.close()

    @contextmanager
    def file_lock(self, path: Path, deadline: float) -> Iterator[None]:
        with path.open("a") as handle:
            said = False
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    self.wait_for_lock(deadline, said)
                    said = True
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def wait_for_lock(self, deadline: float, said: bool) -> None:
        if time.monotonic() >= deadline:
            raise CommandError("Another process held the migration lock for too long.")
        if not said:
            self.log("another process is migrating; waiting for it...")
        time.sleep(POLL_SECONDS)

    def collect_static_if_missing(self) -> None:
        """The image collects at build time; a server started from a checkout does it here, once."""
        if not settings.PRODUCTION:
            return  # outside production WhiteNoise serves static/ as it is
        if (Path(settings.STATIC_ROOT) / "staticfiles.json").exists():
            return
        self.log(f"collecting static files into {settings.STATIC_ROOT}")
        call_command("collectstatic", interactive=False, verbosity=0)

    def exec(self, argv: list[str]) -> NoReturn:
        self.log("exec " + " ".join(argv[1:]))
        # The new program inherits no Python objects: close connections and flush buffered output now.
        connections.close_all()
        sys.stdout.flush()
        sys.stderr.flush()
        os.execv(argv[0], argv)

    def log(self, message: str) -> None:
        self.stdout.write(f"docket start: {message}")
        self.stdout.flush()
