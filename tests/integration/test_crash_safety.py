"""At-least-once delivery with an exactly-once effect: workers and services die mid-work, jobs
are delivered twice, and every task still ends with exact counts and no duplicate movies."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from pymongo import MongoClient

from devstack.stack import Stack
from services.common import jobs
from tests.integration.conftest import (
    ORPHAN_GRACE_SECONDS,
    STORAGES,
    Api,
    User,
    catalog_count,
    generated_csv,
    log_lines,
)


def _wait_for(api: Api, user: User, task_id: str, rows_imported: int) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while True:
        task = api.get(f"/task/{task_id}", headers=user.headers).json()
        if task["rows_imported"] >= rows_imported or (task["status"] != "processing" and \
                task["status"] != "pending"):
            return dict(task)
        assert time.monotonic() < deadline, task
        time.sleep(0.1)


def test_worker_killed_mid_file_resumes_from_its_checkpoint(api: Api, stack: Stack) -> None:
    user = api.register()
    base, rows = 64_000_000, 7_000
    task_id = api.upload_ok(user, generated_csv(rows, base))
    before = _wait_for(api, user, task_id, 2000)
    assert before["status"] == "processing", before
    for worker in ("worker", "worker2"):  # whichever holds the task dies
        stack.kill(worker, signal.SIGKILL)
    task = api.wait_task(user, task_id, timeout=240)
    assert task["status"] == "done", task
    assert (task["rows_read"], task["rows_imported"], task["rows_rejected"]) == (rows, rows, 0)
    assert task["attempts"] >= 2
    assert catalog_count(stack, base, base + rows) == rows
    starts = [e for name in ("worker", "worker2") for e in log_lines(stack, name)
              if e.get("task_id") == task_id and e["msg"] == "ingestion started"]
    assert max(e["resume_after_rows"] for e in starts) >= 2000, starts
    stack_log = (stack.log_to / "stack.log").read_text() if stack.log_to else ""
    assert "worker exited" in stack_log and "restarting" in stack_log
    stack.wait_ready("worker")
    stack.wait_ready("worker2")


def test_a_redelivered_job_does_not_run_twice_at_once(api: Api, stack: Stack) -> None:
    """Celery's Redis transport may deliver a long job again while it still runs: the second
    delivery finds the live lease on the task and steps aside."""
    stack.wait_ready("worker")
    user = api.register()
    base, rows = 65_000_000, 4_000
    task_id = api.upload_ok(user, generated_csv(rows, base))
    _wait_for(api, user, task_id, 1000)
    jobs.celery_app(stack.settings).send_task(jobs.job_name(jobs.INGEST_CSV), args=[task_id])
    task = api.wait_task(user, task_id)
    assert task["status"] == "done" and task["attempts"] == 1
    assert (task["rows_read"], task["rows_imported"]) == (rows, rows)
    assert catalog_count(stack, base, base + rows) == rows
    deadline = time.monotonic() + 30
    while not any(e.get("task_id") == task_id and e["msg"] == "task skipped"
                  for name in ("worker", "worker2") for e in log_lines(stack, name)):
        assert time.monotonic() < deadline, "the second delivery was never seen"
        time.sleep(0.5)


def test_catalog_restart_mid_file_is_retried_and_counts_stay_exact(api: Api,
                                                                   stack: Stack) -> None:
    stack.wait_ready("worker")
    user = api.register()
    base, rows = 66_000_000, 5_000
    task_id = api.upload_ok(user, generated_csv(rows, base))
    _wait_for(api, user, task_id, 1500)
    stack.kill("catalog", signal.SIGKILL)
    task = api.wait_task(user, task_id, timeout=240)
    assert task["status"] == "done", task
    assert (task["rows_read"], task["rows_imported"]) == (rows, rows)
    assert catalog_count(stack, base, base + rows) == rows
    stack.wait_ready("catalog")


def _leftovers(stack: Stack) -> list[str]:
    """What interrupted uploads left in storage: .part files, or GridFS chunks of no file."""
    if stack.settings.upload_storage == "local":
        return [p.name for p in stack.settings.upload_dir.glob("*.part")]
    client: MongoClient = MongoClient(stack.env["MONGO_URI"])
    try:
        db = client[stack.settings.mongo_db]
        complete = set(db["upload_blobs.files"].distinct("_id"))
        return [n for n in db["upload_blobs.chunks"].distinct("files_id") if n not in complete]
    finally:
        client.close()


@pytest.mark.parametrize("stack", STORAGES, indirect=True)
def test_upload_service_dies_mid_upload(api: Api, stack: Stack) -> None:
    """The client gets an error, no task is created, and what the upload had stored is deleted
    by the upload service's sweep once its grace has passed (not at once: another replica's
    upload could still be writing)."""
    user = api.register()
    boundary = "b0undary"

    def body() -> Iterator[bytes]:
        yield (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
               f"filename=\"slow.csv\"\r\n\r\n").encode()
        yield generated_csv(2000, 67_000_000)
        for i in range(100):
            if i == 40:  # > 2 MiB stored: GridFS has written whole chunks
                stack.kill("upload", signal.SIGKILL)
            time.sleep(0.05)
            yield b"x" * 65536
        yield f"\r\n--{boundary}--\r\n".encode()

    try:
        r = requests.post(api.url("/files/upload"), data=body(), timeout=60, headers={
            **user.headers, "Content-Type": f"multipart/form-data; boundary={boundary}"})
        assert r.status_code >= 500, r.text
    except requests.ConnectionError:
        pass  # the gateway may reset the stream instead of answering
    stack.wait_ready("upload")
    assert api.get("/tasks", headers=user.headers).json() == []
    assert _leftovers(stack), "the interrupted upload stored nothing: the test proves nothing"
    deadline = time.monotonic() + ORPHAN_GRACE_SECONDS + 20
    while _leftovers(stack):
        assert time.monotonic() < deadline, f"left behind: {_leftovers(stack)}"
        time.sleep(0.5)
    assert any(line.get("msg") == "deleted what interrupted uploads left"
               for line in log_lines(stack, "upload"))
    # And uploads work again.
    task_id = api.upload_ok(user, generated_csv(10, 67_100_000))
    assert api.wait_task(user, task_id)["status"] == "done"


def _ends(api: Api, user: User, task_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 240
    while True:  # the gateway may answer 503 while the services reconnect
        r = api.get(f"/task/{task_id}", headers=user.headers)
        if r.status_code == 200 and r.json()["status"] not in ("pending", "processing"):
            return dict(r.json())
        assert time.monotonic() < deadline, r.text
        time.sleep(0.5)


def test_database_restart_mid_file(api: Api, stack: Stack) -> None:
    """pymongo rides out a quick restart (server selection waits, retryable writes)."""
    user = api.register()
    base, rows = 66_100_000, 6_000
    task_id = api.upload_ok(user, generated_csv(rows, base))
    _wait_for(api, user, task_id, 2000)
    stack.kill("mongo", signal.SIGKILL)
    stack.wait_ready("mongo")
    task = _ends(api, user, task_id)
    assert task["status"] == "done", task
    assert (task["rows_read"], task["rows_imported"]) == (rows, rows)
    assert catalog_count(stack, base, base + rows) == rows


def test_database_outage_longer_than_timeouts_is_retried_with_backoff(api: Api,
                                                                      stack: Stack) -> None:
    """Past pymongo's 10 s server selection the services answer UNAVAILABLE, and the worker
    retries from its checkpoint with backoff."""
    user = api.register()
    base, rows = 66_200_000, 6_000
    task_id = api.upload_ok(user, generated_csv(rows, base))
    _wait_for(api, user, task_id, 2000)
    stack.hold_down("mongo")
    try:
        time.sleep(14)
    finally:
        stack.bring_up("mongo")
    task = _ends(api, user, task_id)
    assert task["status"] == "done", task
    assert (task["rows_read"], task["rows_imported"]) == (rows, rows)
    assert catalog_count(stack, base, base + rows) == rows
    warnings = [e for name in ("worker", "worker2") for e in log_lines(stack, name)
                if e.get("task_id") == task_id and e["msg"].startswith("transient error")]
    assert warnings, "the outage was retried"
