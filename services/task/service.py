"""Task use cases: create and enqueue, read with ownership, leases for workers, cancel, watch."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import Protocol

from services.common import jobs
from services.common.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from services.task.records import ACTIVE, TERMINAL, NewTask, Progress, RejectedRow, Task

log = logging.getLogger(__name__)


class Tasks(Protocol):
    """The task records the use cases work on: TaskRepository, or an in-memory fake in the unit
    tests. A method that changes a task returns it changed, or None when the task is not in the
    state the change needs."""

    def create(self, new: NewTask) -> Task: ...
    def get(self, task_id: str) -> Task | None: ...

    def list_for_user(self, user_id: str) -> list[Task]:
        """The user's tasks, newest first."""
        ...

    def claim(self, task_id: str, worker_id: str, lease_seconds: int) -> Task | None:
        """An active task whose lease is free, expired or already `worker_id`'s becomes
        processing under `worker_id`'s lease, one attempt more."""
        ...

    def report(self, task_id: str, worker_id: str, progress: Progress,
               rejected: list[RejectedRow], lease_seconds: int) -> Task | None:
        """Replaces the progress and renews the lease while `worker_id` holds it."""
        ...

    def finish(self, task_id: str, worker_id: str, status: str, progress: Progress | None,
               rejected: list[RejectedRow], error: str) -> Task | None:
        """Ends the task while `worker_id` holds the lease; `progress` None keeps the counts."""
        ...

    def request_cancel(self, task_id: str) -> Task | None:
        """Cancels a pending task; asks a processing one to stop."""
        ...

    def fail(self, task_id: str, error: str) -> Task | None:
        """Ends an active task as failed, whoever holds it."""
        ...

    def stalled(self, grace: timedelta) -> list[Task]:
        """Processing tasks whose lease expired and pending tasks untouched for `grace`, unless
        they were re-enqueued within `grace`."""
        ...

    def files_to_delete(self, retention: timedelta, limit: int = 100) -> list[Task]:
        """Tasks that ended more than `retention` ago and still have their file."""
        ...

    def mark_file_deleted(self, task_id: str) -> None: ...
    def mark_requeued(self, task_id: str) -> None: ...

    def rejections(self, task_id: str) -> Iterator[RejectedRow]:
        """Every rejected row of the task, by line."""
        ...


class TaskService:
    def __init__(
        self,
        repo: Tasks,
        enqueue: Callable[[str, str], None],
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

    def get(self, task_id: str, user_id: str) -> Task:
        task = self._repo.get(task_id)
        if task is None:
            raise NotFound(f"no task with id {task_id!r}")
        if task.user_id != user_id:
            raise PermissionDenied("this task belongs to another user")
        return task

    def list_tasks(self, user_id: str) -> list[Task]:
        return self._repo.list_for_user(user_id)

    def cancel(self, task_id: str, user_id: str) -> Task:
        task = self.get(task_id, user_id)
        if task.status in TERMINAL:
            raise FailedPrecondition(f"task already ended: {task.status}")
        updated = self._repo.request_cancel(task_id)
        log.info("cancel requested", extra={"task_id": task_id})
        return updated or self.get(task_id, user_id)

    def watch(self, task_id: str, user_id: str, is_active: Callable[[], bool],
              interval: float = 0.25) -> Iterator[Task]:
        """Yields the task now and whenever it changes, until it ends or the caller leaves."""
        last = None
        while is_active():
            task = self.get(task_id, user_id)
            if task.updated_at != last:
                last = task.updated_at
                yield task
            if task.status in TERMINAL:
                return
            time.sleep(interval)

    def rejections(self, task_id: str, user_id: str) -> Iterator[RejectedRow]:
        self.get(task_id, user_id)
        return self._repo.rejections(task_id)

    # --- for services ----------------------------------------------------------------------

    def create(self, new: NewTask) -> Task:
        if not (new.user_id and new.kind and new.file_id):
            raise InvalidArgument("user, kind and file_id are required")
        jobs.job_name(new.kind)  # refuses a kind no job runs: such a task would wait forever
        task = self._repo.create(new)
        try:
            self._enqueue(task.kind, task.id)
        except Exception:
            # The task stays pending; the stall sweep enqueues it again once the broker is back.
            log.exception("enqueue failed; the sweep will retry", extra={"task_id": task.id})
        log.info("task created", extra={"task_id": task.id, "user": task.user_id,
                                        "file_id": task.file_id})
        return task

    def claim(self, task_id: str, worker_id: str) -> Task:
        task = self._repo.claim(task_id, worker_id, self.lease_seconds)
        if task is not None:
            log.info("task claimed", extra={"task_id": task_id, "worker": worker_id,
                                            "attempt": task.attempts})
            return task
        existing = self._repo.get(task_id)
        if existing is None:
            raise NotFound(f"no task with id {task_id!r}")
        if existing.status in TERMINAL:
            raise FailedPrecondition(f"task already ended: {existing.status}")
        raise FailedPrecondition(f"task is held by worker {existing.lease_worker} "
                                 f"until {existing.lease_expires_at}")

    def report(self, task_id: str, worker_id: str, progress: Progress,
               rejected: list[RejectedRow]) -> Task:
        task = self._repo.report(task_id, worker_id, progress, rejected, self.lease_seconds)
        if task is None:
            raise FailedPrecondition("lease lost: the task ended or another worker took it")
        return task

    def finish(self, task_id: str, worker_id: str, status: str, progress: Progress | None,
               rejected: list[RejectedRow], error: str) -> Task:
        """Ends the task; `progress` None keeps the counts already recorded."""
        if status not in TERMINAL:
            raise InvalidArgument(f"status must be one of {', '.join(TERMINAL)}")
        task = self._repo.finish(task_id, worker_id, status, progress, rejected, error)
        if task is None:
            raise FailedPrecondition("lease lost: the task ended or another worker took it")
        log.info("task finished", extra={"task_id": task_id, "status": status,
                                         **asdict(task.progress), "error": error})
        return task

    def sweep(self, grace_seconds: float) -> int:
        """Re-enqueues tasks that lost their worker or their message (at most once per grace
        period each); fails them after too many attempts. Returns how many it acted on."""
        stalled = self._repo.stalled(timedelta(seconds=grace_seconds))
        for task in stalled:
            if task.attempts >= self._max_attempts:
                self._repo.fail(task.id, f"gave up after {task.attempts} attempts: the worker "
                                         "stopped each time; check the worker logs")
                log.warning("task failed by sweep", extra={"task_id": task.id})
                continue
            self._repo.mark_requeued(task.id)
            self._enqueue(task.kind, task.id)
            log.warning("task re-enqueued by sweep", extra={"task_id": task.id,
                                                            "status": task.status})
        return len(stalled)

    def purge_files(self) -> int:
        """Deletes the uploaded files of tasks that ended more than the retention period ago
        (the task records stay). Returns how many it deleted."""
        expired = self._repo.files_to_delete(self._file_retention)
        for task in expired:
            self._delete_file(task.file_id)
            self._repo.mark_file_deleted(task.id)
            log.info("file deleted after retention", extra={"task_id": task.id,
                                                            "file_id": task.file_id})
        return len(expired)


@dataclass(frozen=True)
class Pace:
    """How far a task has come and how fast, as users see it."""

    percent: float
    rows_per_second: float
    eta_seconds: float


def pace(task: Task) -> Pace:
    """Percent of the file's bytes processed (100 once done), rows per second over the run,
    and the seconds left at the run's byte rate while the task is active."""
    progress, total = task.progress, task.bytes_total
    percent = 100.0 if task.status == "done" else (
        min(100.0, 100.0 * progress.bytes_processed / total) if total else 0.0)
    rate = eta = 0.0
    started = task.started_at
    end = task.finished_at or task.updated_at
    if started and end > started:
        elapsed = (end - started).total_seconds()
        rate = progress.rows_read / elapsed
        if task.status in ACTIVE and progress.bytes_processed:
            bytes_rate = progress.bytes_processed / elapsed
            eta = max(0.0, (total - progress.bytes_processed) / bytes_rate)
    return Pace(percent=round(percent, 2), rows_per_second=round(rate, 1),
                eta_seconds=round(eta, 1))
