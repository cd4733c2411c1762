"""Start the web server and one task worker together; Ctrl-C stops both.

This is what `make run` ends with. The offline judge is part of the web process, so with no Scorable
key configured the worker talks to it over HTTP at 127.0.0.1, exactly as it would talk to Scorable.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Run the Docket web server and a qcluster worker until Ctrl-C."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--addr", default=f"127.0.0.1:{settings.DOCKET_PORT}")

    def handle(self, *args: Any, **options: Any) -> None:
        # Before either process starts, so that both read the same keys.
        call_command("ensure_var", stdout=self.stdout)
        python = sys.executable
        manage = str(settings.BASE_DIR / "manage.py")
        commands = {
            "web": [python, manage, "runserver", options["addr"], "--noreload", "--skip-checks"],
            "worker": [python, manage, "qcluster"],
        }
        judge = "the offline judge" if settings.JUDGE_API_SOURCE == "offline" else settings.JUDGE_API_URL
        self.stdout.write(f"Docket: http://{options['addr']}/  (judge API: {judge}; Ctrl-C stops)")
        processes = {name: subprocess.Popen(command) for name, command in commands.items()}
        stopping = False

        def stop(*_: Any) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        try:
            while not stopping:
                for name, process in processes.items():
                    if process.poll() is not None:
                        self.stderr.write(
                            f"The {name} process stopped (exit {process.returncode}); stopping Docket."
                        )
                        stopping = True
                time.sleep(0.5)
        finally:
            # TERM, not INT: a process started in the background may ignore INT.
            for process in processes.values():
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 15
            for process in processes.values():
                try:
                    process.wait(timeout=max(deadline - time.monotonic(), 0.1))
                except subprocess.TimeoutExpired:
                    process.kill()
        self.stdout.write("Docket stopped.")
