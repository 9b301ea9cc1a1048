"""Many users uploading at once, two worker processes sharing the queue."""

from __future__ import annotations

import csv
import io
import random
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from devstack.stack import Stack
from tests.integration.conftest import Api, User, catalog_count, generated_csv, log_lines

BASE = 68_000_000
POOL = 600  # distinct movies the 24 files draw from, overlapping each other
ROWS = 120  # movies in each file


def _file(seed: int) -> tuple[bytes, set[int], int]:
    """A file of ROWS movies from the shared pool; odd seeds add dirty rows too. Returns the
    bytes, the movie ids and how many rows are dirty."""
    rng = random.Random(seed)
    picked = sorted(rng.sample(range(POOL), ROWS))
    source = list(csv.reader(io.StringIO(generated_csv(POOL, BASE).decode())))
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(source[0])
    dirty = 0
    for i in picked:
        writer.writerow(source[1 + i])
        if seed % 2 and i % 50 == 0:
            writer.writerow([str(BASE + i), "Broken", "Drama", "en", "x", "1", "not a date",
                             "5", "1"])
            dirty += 1
    return out.getvalue().encode(), {BASE + i for i in picked}, dirty


def test_eight_users_three_files_each_at_once(api: Api, stack: Stack) -> None:
    users = [api.register(f"crowd{n}") for n in range(8)]
    files = [_file(seed) for seed in range(24)]

    def upload(n: int) -> tuple[User, str]:
        user = users[n % 8]
        return user, api.upload_ok(user, files[n][0], f"part{n}.csv")

    with ThreadPoolExecutor(24) as pool:
        uploaded = list(pool.map(upload, range(24)))
    tasks: list[dict[str, Any]] = [api.wait_task(user, task_id, timeout=400)
                                   for user, task_id in uploaded]
    for n, task in enumerate(tasks):
        assert task["status"] == "done", task
        # A movie another user imported first is theirs: its rows are skipped, not imported.
        assert (task["rows_imported"] + task["rows_skipped"], task["rows_rejected"]) == \
            (ROWS, files[n][2])
    for user in users:
        mine = {t["task_id"] for t in api.get("/tasks", headers=user.headers).json()}
        assert mine == {task_id for u, task_id in uploaded if u is user}
    distinct = set().union(*(ids for _, ids, _ in files))
    assert catalog_count(stack, BASE, BASE + POOL) == len(distinct)
    # Both worker processes took part.
    ended = {task_id: name for name in ("worker", "worker2")
             for entry in log_lines(stack, name) if entry["msg"] == "ingestion ended"
             for task_id in [entry["task_id"]]}
    assert {ended[task_id] for _, task_id in uploaded} == {"worker", "worker2"}
