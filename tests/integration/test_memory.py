"""Memory stays flat as files grow: the bytes stream through Envoy, the upload service, the
worker and the catalog in bounded pieces. (The 1 GiB run is in `make bench`.)"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

from devstack.stack import Stack
from tests.integration.conftest import Api, User, generated_csv

WATCHED = ("envoy", "upload", "catalog", "worker", "worker2")


def _group_pids(stack: Stack, name: str) -> list[int]:
    popen = stack.procs[name].popen
    assert popen is not None
    pgid = os.getpgid(popen.pid)
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getpgid(int(entry.name)) == pgid:
                    pids.append(int(entry.name))
            except ProcessLookupError:
                continue
    return pids


def _reset_peaks(stack: Stack) -> None:
    for name in WATCHED:
        for pid in _group_pids(stack, name):
            Path(f"/proc/{pid}/clear_refs").write_text("5")  # resets VmHWM to the current RSS


def _peaks_mb(stack: Stack) -> dict[str, float]:
    peaks = {}
    for name in WATCHED:
        peak = 0
        for pid in _group_pids(stack, name):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]))
        peaks[name] = peak / 1024
    return peaks


def _wide_csv(rows: int, id_base: int) -> bytes:
    """TMDB movies with a 3.5 KB `notes` column (kept as an extra field, outside the search
    words): the bytes of a large file at a fraction of its rows, which the embedded database
    stores at only ~200 a second with the search indexes."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    notes = "n" * 3_500
    for number, row in enumerate(csv.reader(io.StringIO(generated_csv(rows, id_base).decode()))):
        writer.writerow([*row, "notes" if number == 0 else notes])
    return out.getvalue().encode()


def _ingest_and_measure(api: Api, stack: Stack, user: User, rows: int, base: int
                        ) -> dict[str, float]:
    data = _wide_csv(rows, base)
    _reset_peaks(stack)
    task = api.wait_task(user, api.upload_ok(user, data), timeout=600)
    assert task["status"] == "done" and task["rows_imported"] == rows
    return _peaks_mb(stack)


def test_peak_memory_does_not_grow_with_the_file(api: Api, stack: Stack) -> None:
    user = api.register()
    small = _ingest_and_measure(api, stack, user, 300, 69_000_000)      # ~1 MB
    large = _ingest_and_measure(api, stack, user, 4_000, 69_100_000)    # ~15 MB
    print(f"\npeak RSS MB, 1 MB file: {small}\npeak RSS MB, 15 MB file: {large}")
    for name in WATCHED:
        # 1.5x the small file's peak, plus 15 MB of allocator noise on small processes.
        assert large[name] <= 1.5 * small[name] + 15, (name, small[name], large[name])
