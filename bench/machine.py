"""What machine the numbers come from."""

from __future__ import annotations

import os
import platform
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _mem_total_mb() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return 0.0


def describe() -> dict[str, Any]:
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "mem_mb": _mem_total_mb(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


class InterferenceWatch:
    """Notes, every few seconds, whether a test suite (a `pytest` process not started by this
    run) is running: on a 2-core machine its work would show in every number."""

    def __init__(self, interval: float = 5.0) -> None:
        self.seen: list[dict[str, Any]] = []
        self._interval = interval
        self._start = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="interference")

    def __enter__(self) -> InterferenceWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @staticmethod
    def _others() -> list[int]:
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if any(part.endswith(b"pytest") or part == b"pytest" for part in cmdline[:3]):
                pids.append(int(entry.name))
        return pids

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            pids = self._others()
            if not pids:
                continue
            now = round(time.monotonic() - self._start)
            if self.seen and now - self.seen[-1]["until_s"] <= 2 * self._interval:
                self.seen[-1]["until_s"] = now
            else:
                self.seen.append({"from_s": now, "until_s": now, "pids": pids[:5]})
