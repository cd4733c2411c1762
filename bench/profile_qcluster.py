"""`manage.py qcluster` with every task of its workers under cProfile, for bench/pipeline.py --profile.

    BENCH_PROFILE_DIR=DIR .venv/bin/python bench/profile_qcluster.py

Each worker process writes DIR/worker-<pid>.prof after every task it runs (rewritten, cumulative): a
forked worker leaves through os._exit, so nothing at exit would run. A profiler follows one thread
only, and the pump makes its judge API calls (and parses their replies) on a thread pool, so
evals.pump.perform is wrapped too, with one profiler per pool thread, merged into the same file.
The pusher, monitor and sentinel processes are not profiled; bench/pipeline.py counts their CPU.

Only in this profiled worker, the pump's slot lease is longer (below): nothing else is changed.

The profilers count each thread's CPU time (time.thread_time), not wall time: waiting for the judge's
replies or for a lock costs Docket nothing, and the wall clock would put it at the top.
"""

from __future__ import annotations

import cProfile
import os
import pstats
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django_q.signals import post_execute_in_worker, pre_execute  # noqa: E402

import evals.pump  # noqa: E402

OUT = Path(os.environ["BENCH_PROFILE_DIR"])


def cpu_profile() -> cProfile.Profile:
    return cProfile.Profile(time.thread_time)


class ProcessProfiles:
    """This process's profilers; a forked child starts its own set rather than share its parent's."""

    def __init__(self) -> None:
        self.pid = 0
        self.task = cpu_profile()
        self.threads: list[cProfile.Profile] = []
        self.local = threading.local()
        self.lock = threading.Lock()

    def current(self) -> ProcessProfiles:
        if self.pid != os.getpid():
            self.pid = os.getpid()
            self.task = cpu_profile()
            self.threads = []
            self.local = threading.local()
        return self

    def for_this_thread(self) -> cProfile.Profile:
        profile: cProfile.Profile | None = getattr(self.local, "profile", None)
        if profile is None:
            profile = cpu_profile()
            self.local.profile = profile
            with self.lock:
                self.threads.append(profile)
        return profile

    def dump(self) -> None:
        # Called on the task's thread once the task returned, when no pool thread is left running.
        stats = pstats.Stats(self.task)
        with self.lock:
            for profile in self.threads:
                stats.add(profile)
        OUT.mkdir(parents=True, exist_ok=True)
        stats.dump_stats(str(OUT / f"worker-{self.pid}.prof"))


PROFILES = ProcessProfiles()
original_perform = evals.pump.perform


def profiled_perform(api: Any, action: Any) -> Any:
    if threading.current_thread() is threading.main_thread():
        return original_perform(api, action)  # inline calls: the task's own profiler sees them
    profile = PROFILES.current().for_this_thread()
    profile.enable()
    try:
        return original_perform(api, action)
    finally:
        profile.disable()


def task_started(sender: Any, **kwargs: Any) -> None:
    PROFILES.current().task.enable()


def task_finished(sender: Any, **kwargs: Any) -> None:
    profiles = PROFILES.current()
    profiles.task.disable()
    profiles.dump()


evals.pump.perform = profiled_perform
# The profiler slows the pump several times over; with the usual 15 s lease a slow round of records
# lets the slot lapse, and `run_eval --wait` then works the run itself, outside this profile.
evals.pump.SLOT_LEASE_SECONDS = 120.0
pre_execute.connect(task_started, weak=False)
post_execute_in_worker.connect(task_finished, weak=False)

if __name__ == "__main__":
    call_command("qcluster")
