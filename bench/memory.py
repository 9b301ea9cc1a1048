"""Peak resident memory and CPU time of the stack's processes, from /proc: VmHWM of every
process in each process's group (a Celery worker's pool children included), reset before a
measured run, and the group's user + system CPU seconds."""

from __future__ import annotations

import contextlib
import os
import resource
from pathlib import Path

from devstack.stack import Stack

WATCHED = ("envoy", "upload", "task", "catalog", "worker", "mongo", "redis")


def group_pids(stack: Stack, name: str) -> list[int]:
    proc = stack.procs.get(name)
    if proc is None or proc.popen is None:
        return []
    try:
        pgid = os.getpgid(proc.popen.pid)
    except ProcessLookupError:
        return []
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                if os.getpgid(int(entry.name)) == pgid:
                    pids.append(int(entry.name))
    return pids


def reset_peaks(stack: Stack, names: tuple[str, ...] = WATCHED) -> None:
    for name in names:
        for pid in group_pids(stack, name):
            with contextlib.suppress(OSError):
                Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM := current RSS


def _status_kb(pid: int, key: str) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def peaks_mb(stack: Stack, names: tuple[str, ...] = WATCHED) -> dict[str, float]:
    """The largest VmHWM among each process's group, in MB."""
    return {name: round(max((_status_kb(pid, "VmHWM") for pid in group_pids(stack, name)),
                            default=0) / 1024, 1) for name in names}


def self_peak_mb() -> float:
    return round(_status_kb(os.getpid(), "VmHWM") / 1024, 1)


_TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_s(pid: int) -> float:
    with contextlib.suppress(OSError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICKS  # utime + stime
    return 0.0


def cpu_seconds(stack: Stack, names: tuple[str, ...]) -> dict[str, float]:
    """CPU seconds used so far by each process group, and by this process ("bench")."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {**{name: sum(_cpu_s(pid) for pid in group_pids(stack, name)) for name in names},
            "bench": usage.ru_utime + usage.ru_stime}
