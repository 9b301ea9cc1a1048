"""Issue 10, items 2 and 6, replayed against the real stack while a second user works
(tests/integration/bystander.py): CSVs whose header line is 1.5 MB, and a CSV with a 5 MB data
line of tiny fields. Before the bounds (CSV_MAX_HEADER_CHARS, CSV_MAX_COLUMNS, CSV_MAX_ROW_CHARS)
the first kept a worker busy for minutes and the second took it to 650 MB. Now each hostile task
ends within seconds with a reason that names the bound, the other user is unharmed, and the
worker processes stay under 200 MB."""

from __future__ import annotations

import csv
import io
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devstack.stack import Stack
from tests.integration.bystander import Bystander
from tests.integration.conftest import Api, User

WORKERS = ("worker", "worker2")
MAX_WORKER_MB = 200
ENDS_WITHIN_SECONDS = 5.0
HEADER = "id,title,genre,original_language,overview,release_date,vote_average,vote_count\n"


def _worker_pids(stack: Stack) -> list[int]:
    """Each worker's Celery process and its pool: the process group it was started in."""
    groups = set()
    for name in WORKERS:
        popen = stack.procs[name].popen
        assert popen is not None
        groups.add(os.getpgid(popen.pid))
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getpgid(int(entry.name)) in groups:
                    pids.append(int(entry.name))
            except ProcessLookupError:
                continue
    return pids


def _peak_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


@pytest.fixture
def workers_stay_small(stack: Stack) -> Iterator[None]:
    for pid in _worker_pids(stack):
        Path(f"/proc/{pid}/clear_refs").write_text("5")  # peak := the current RSS
    yield
    peaks = {pid: _peak_mb(pid) for pid in _worker_pids(stack)}
    print(f"\nworker processes' peak RSS, MB: {sorted(round(mb) for mb in peaks.values())}")
    assert peaks and max(peaks.values()) < MAX_WORKER_MB, peaks


def _ends_soon(api: Api, user: User, data: bytes) -> dict[str, Any]:
    """Uploads the file and waits for its task, which must end within seconds."""
    task_id = api.upload_ok(user, data, "hostile.csv")
    started = time.monotonic()
    task = api.wait_task(user, task_id, timeout=60)
    seconds = time.monotonic() - started
    print(f"\n{len(data):,} bytes: {task['status']} after {seconds:.2f}s: "
          f"{task['error'] or task['rejected_sample']}"[:300])
    assert seconds < ENDS_WITHIN_SECONDS, (seconds, task)
    return task


def _long_header(size: int) -> bytes:
    """A header line of distinct column names (the worst case for the old alias mapping)."""
    names = ["title"]
    length = 5
    while length < size:
        names.append(f"c{len(names)}")
        length += len(names[-1]) + 1
    return (",".join(names) + "\n").encode()


@pytest.mark.usefixtures("workers_stay_small")
def test_header_lines_of_1_5_mb_fail_their_tasks_at_once(api: Api) -> None:
    attacker = api.register("attacker")
    header = _long_header(1_500_000) + b"Heat\n"
    with Bystander(api) as bystander:
        # As many as the workers have slots: before, each held one for minutes.
        tasks = [_ends_soon(api, attacker, header) for _ in range(4)]
    bystander.assert_unharmed()
    for task in tasks:
        assert task["status"] == "failed", task
        assert "header (line 1) is longer than 65,536 characters" in task["error"]
        assert "CSV_MAX_HEADER_CHARS" in task["error"]


@pytest.mark.usefixtures("workers_stay_small")
def test_a_header_of_too_many_columns_fails_before_its_names_are_mapped(api: Api) -> None:
    attacker = api.register("attacker")
    with Bystander(api) as bystander:
        task = _ends_soon(api, attacker, _long_header(60_000) + b"Heat\n")
    bystander.assert_unharmed()
    assert task["status"] == "failed", task
    assert "more than the limit of 256 (CSV_MAX_COLUMNS)" in task["error"]


@pytest.mark.usefixtures("workers_stay_small")
def test_a_5_mb_line_of_tiny_fields_is_rejected_as_a_row_and_the_rest_imported(
        api: Api) -> None:
    attacker = api.register("attacker")
    first, last = (f"abuse-worker-{uuid.uuid4().hex}" for _ in range(2))
    data = (f"{HEADER}{first},Before,Drama,en,x,2001-01-01,7.0,10\n".encode()
            + b"ab," * 1_700_000 + b"ab\n"
            + f"{last},After,Drama,en,y,2001-01-02,7.0,10\n".encode())
    with Bystander(api) as bystander:
        task = _ends_soon(api, attacker, data)
    bystander.assert_unharmed()
    assert task["status"] == "done", task
    assert (task["rows_read"], task["rows_imported"], task["rows_rejected"]) == (3, 2, 1)
    (rejected,) = task["rejected_sample"]
    assert rejected["line"] == 3
    assert "longer than 1,048,576 characters" in rejected["reason"]
    assert "CSV_MAX_ROW_CHARS" in rejected["reason"]
    r = api.get(f"/task/{task['task_id']}/errors", headers=attacker.headers)
    assert r.status_code == 200, r.text
    (exported,) = csv.DictReader(io.StringIO(r.text))
    assert exported["raw"].startswith("ab,ab,") and len(exported["raw"]) <= 2000
    for movie_id, title in ((first, "Before"), (last, "After")):
        r = api.get(f"/movies/{movie_id}", headers=attacker.headers)
        assert r.status_code == 200 and r.json()["title"] == title, r.text
