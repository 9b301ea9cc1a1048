"""Progress people can watch: WatchTask over REST and gRPC, cancellation, the errors export."""

from __future__ import annotations

import json
import time
from typing import Any

from devstack.stack import Stack
from tests.integration.conftest import Api, catalog_count, generated_csv


def test_watch_streams_progress_as_ndjson_until_the_end(api: Api) -> None:
    user = api.register()
    task_id = api.upload_ok(user, generated_csv(3000, 61_000_000))
    events: list[dict[str, Any]] = []
    with api.http.get(api.url(f"/task/{task_id}/watch"), headers=user.headers, stream=True,
                      timeout=120) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if line:
                events.append(json.loads(line))
    assert events[-1]["status"] == "done"
    assert events[-1]["rows_imported"] == 3000 and events[-1]["percent"] == 100.0
    imported = [e["rows_imported"] for e in events]
    assert imported == sorted(imported), "progress never goes backwards"
    assert len({e["rows_imported"] for e in events}) >= 2, "intermediate progress was pushed"
    processing = [e for e in events if e["status"] == "processing" and e["rows_read"]]
    assert all(e["bytes_total"] and 0 < e["percent"] <= 100 for e in processing)


def test_watch_someone_elses_task_is_403(api: Api) -> None:
    owner, other = api.register(), api.register()
    task_id = api.upload_ok(owner, generated_csv(10, 61_100_000))
    r = api.get(f"/task/{task_id}/watch", headers=other.headers)
    assert r.status_code == 403


def test_cancel_stops_quickly_and_counts_what_was_imported(api: Api, stack: Stack) -> None:
    user = api.register()
    base, rows = 62_000_000, 40_000
    task_id = api.upload_ok(user, generated_csv(rows, base))
    deadline = time.monotonic() + 120
    while api.get(f"/task/{task_id}", headers=user.headers).json()["rows_imported"] < 2000:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    asked = time.monotonic()
    r = api.post(f"/task/{task_id}/cancel", headers=user.headers, json={})
    assert r.status_code == 200 and r.json()["cancel_requested"] is True
    task = api.wait_task(user, task_id)
    stopped_after = time.monotonic() - asked
    assert task["status"] == "cancelled"
    # The batches already sent (up to PIPELINE_DEPTH + 1) are committed and counted, not
    # dropped: on the embedded database, with the search indexes, a few seconds of work at the
    # test stack's 250 rows a batch.
    assert stopped_after < 10, f"took {stopped_after:.1f}s to stop"
    assert 2000 <= task["rows_imported"] < rows
    assert catalog_count(stack, base, base + rows) == task["rows_imported"]
    again = api.post(f"/task/{task_id}/cancel", headers=user.headers, json={})
    assert again.status_code == 400 and "cancelled" in again.json()["message"]
