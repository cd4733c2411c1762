"""CPU time of a process tree, read from /proc (Linux), for bench/pipeline.py --zero-latency.

A process's utime+stime counts only itself; cutime+cstime count the children it has reaped (and what
they had reaped). Summing all four over the live tree therefore includes workers that exited and were
waited for, such as a qcluster worker recycled during the run. Only a child orphaned before it exits
(re-parented outside the tree) would be missed: the qcluster sentinel reaps its own workers.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Stat:
    pid: int
    ppid: int
    own_ticks: int  # utime + stime
    reaped_ticks: int  # cutime + cstime


def read_stat(pid: int) -> Stat | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name is in parentheses and may hold spaces: the fields start after the last ")".
    fields = text[text.rindex(")") + 2 :].split()
    # fields[0] is field 3 of proc(5): state, ppid, ..., utime (14), stime, cutime, cstime (17).
    return Stat(
        pid=pid,
        ppid=int(fields[1]),
        own_ticks=int(fields[11]) + int(fields[12]),
        reaped_ticks=int(fields[13]) + int(fields[14]),
    )


def tree_cpu_ms(root: int) -> tuple[float, int]:
    """CPU milliseconds of `root` and all its descendants, live or reaped; and how many are live."""
    stats = [stat for pid in _pids() if (stat := read_stat(pid)) is not None]
    children: dict[int, list[Stat]] = {}
    for stat in stats:
        children.setdefault(stat.ppid, []).append(stat)
    top = next((stat for stat in stats if stat.pid == root), None)
    if top is None:
        raise ProcessLookupError(root)
    ticks = 0
    live = 0
    pending = [top]
    while pending:
        stat = pending.pop()
        ticks += stat.own_ticks + stat.reaped_ticks
        live += 1
        pending.extend(children.get(stat.pid, ()))
    return ticks * 1000 / TICKS_PER_SECOND, live


def _pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]
