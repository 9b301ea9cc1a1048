"""Task use cases: create and enqueue, read with ownership, leases for workers, cancel, watch."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

from services.common.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from services.task.repository import ACTIVE, TaskRepository, now

log = logging.getLogger(__name__)

TERMINAL = ("done", "failed", "cancelled")
PROGRESS_FIELDS = ("rows_read", "rows_imported", "rows_rejected", "bytes_processed")


class TaskService:
    def __init__(
        self,
        repo: TaskRepository,
        enqueue: Callable[[str], None],
        delete_file: Callable[[str], None],
        *,
        lease_seconds: int,
        file_retention_seconds: int,
        max_attempts: int = 5,
    ) -> None:
        self._repo = repo
        self._enqueue = enqueue
        self._delete_file = delete_file
        self._file_retention = timedelta(seconds=file_retention_seconds)
        self.lease_seconds = lease_seconds
        self._max_attempts = max_attempts

    # --- for users -------------------------------------------------------------------------

    def get(self, task_id: str, user: str) -> dict[str, Any]:
        task = self._repo.get(task_id)
        if task is None:
            raise NotFound(f"no task with id {task_id!r}")
        if task["user"] != user:
            raise PermissionDenied("this task belongs to another user")
        return task

    def list_tasks(self, user: str) -> list[dict[str, Any]]:
        return self._repo.list_for_user(user)

    def cancel(self, task_id: str, user: str) -> dict[str, Any]:
        task = self.get(task_id, user)
        if task["status"] in TERMINAL:
            raise FailedPrecondition(f"task already ended: {task['status']}")
        updated = self._repo.request_cancel(task_id)
        log.info("cancel requested", extra={"task_id": task_id})
        return updated or self.get(task_id, user)

    def watch(self, task_id: str, user: str, is_active: Callable[[], bool],
              interval: float = 0.25) -> Iterator[dict[str, Any]]:
        """Yields the task now and whenever it changes, until it ends or the caller leaves."""
        last = None
        while is_active():
            task = self.get(task_id, user)
            if task["updated_at"] != last:
                last = task["updated_at"]
                yield task
            if task["status"] in TERMINAL:
                return
            time.sleep(interval)

    def rejections(self, task_id: str, user: str) -> Iterator[dict[str, Any]]:
        self.get(task_id, user)
        return self._repo.rejections(task_id)

    # --- for services ----------------------------------------------------------------------

    def create(self, *, user: str, kind: str, file_id: str, file_path: str,
               original_name: str, bytes_total: int) -> dict[str, Any]:
        if not (user and kind and file_id):
            raise InvalidArgument("user, kind and file_id are required")
        task = self._repo.create({
            "user": user, "kind": kind, "file_id": file_id, "file_path": file_path,
            "original_name": original_name, "bytes_total": bytes_total,
        })
        task_id = str(task["_id"])
        try:
            self._enqueue(task_id)
        except Exception:
            # The task stays pending; the stall sweep enqueues it again once the broker is back.
            log.exception("enqueue failed; the sweep will retry", extra={"task_id": task_id})
        log.info("task created", extra={"task_id": task_id, "user": user, "file_id": file_id})
        return task

    def claim(self, task_id: str, worker_id: str) -> dict[str, Any]:
        task = self._repo.claim(task_id, worker_id, self.lease_seconds)
        if task is not None:
            log.info("task claimed", extra={"task_id": task_id, "worker": worker_id,
                                            "attempt": task["attempts"]})
            return task
        existing = self._repo.get(task_id)
        if existing is None:
            raise NotFound(f"no task with id {task_id!r}")
        if existing["status"] in TERMINAL:
            raise FailedPrecondition(f"task already ended: {existing['status']}")
        raise FailedPrecondition(f"task is held by worker {existing.get('lease_worker')} "
                                 f"until {existing.get('lease_expires_at')}")

    def report(self, task_id: str, worker_id: str, progress: dict[str, int],
               rejected: list[dict[str, Any]]) -> dict[str, Any]:
        task = self._repo.report(task_id, worker_id, progress, rejected, self.lease_seconds)
        if task is None:
            raise FailedPrecondition("lease lost: the task ended or another worker took it")
        return task

    def finish(self, task_id: str, worker_id: str, status: str, progress: dict[str, int] | None,
               rejected: list[dict[str, Any]], error: str) -> dict[str, Any]:
        """Ends the task; `progress` None keeps the counts already recorded."""
        if status not in TERMINAL:
            raise InvalidArgument(f"status must be one of {', '.join(TERMINAL)}")
        task = self._repo.finish(task_id, worker_id, status, progress, rejected, error)
        if task is None:
            raise FailedPrecondition("lease lost: the task ended or another worker took it")
        log.info("task finished", extra={"task_id": task_id, "status": status,
                                         **task["progress"], "error": error})
        return task

    def sweep(self, grace_seconds: float) -> int:
        """Re-enqueues tasks that lost their worker or their message (at most once per grace
        period each); fails them after too many attempts. Returns how many it acted on."""
        stalled = self._repo.stalled(now() - timedelta(seconds=grace_seconds))
        for task in stalled:
            task_id = str(task["_id"])
            if task["attempts"] >= self._max_attempts:
                self._repo.fail(task_id, f"gave up after {task['attempts']} attempts: the worker "
                                         "stopped each time; check the worker logs")
                log.warning("task failed by sweep", extra={"task_id": task_id})
                continue
            self._repo.mark_requeued(task_id)
            self._enqueue(task_id)
            log.warning("task re-enqueued by sweep", extra={"task_id": task_id,
                                                            "status": task["status"]})
        return len(stalled)


    def purge_files(self) -> int:
        """Deletes the uploaded files of tasks that ended more than the retention period ago
        (the task records stay). Returns how many it deleted."""
        expired = self._repo.files_to_delete(now() - self._file_retention)
        for task in expired:
            self._delete_file(task["file_id"])
            self._repo.mark_file_deleted(str(task["_id"]))
            log.info("file deleted after retention", extra={"task_id": str(task["_id"]),
                                                            "file_id": task["file_id"]})
        return len(expired)


def view(task: dict[str, Any]) -> dict[str, Any]:
    """The task as users see it: progress fields plus percent, rate and time left."""
    progress = {f: int(task.get("progress", {}).get(f, 0)) for f in PROGRESS_FIELDS}
    total = int(task.get("bytes_total") or 0)
    percent = 100.0 if task["status"] == "done" else (
        min(100.0, 100.0 * progress["bytes_processed"] / total) if total else 0.0)
    rate = eta = 0.0
    started = task.get("started_at")
    end = task.get("finished_at") or task.get("updated_at")
    if started and end and end > started:
        elapsed = (end - started).total_seconds()
        rate = progress["rows_read"] / elapsed
        if task["status"] in ACTIVE and progress["bytes_processed"]:
            bytes_rate = progress["bytes_processed"] / elapsed
            eta = max(0.0, (total - progress["bytes_processed"]) / bytes_rate)
    return {**task, **progress, "task_id": str(task["_id"]), "percent": round(percent, 2),
            "rows_per_second": round(rate, 1), "eta_seconds": round(eta, 1)}
