"""Task use cases: create and enqueue (within the user's quota), read with ownership, pages of
the list, leases for workers, cancel, watch, the errors export."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import Protocol

from services.common import jobs
from services.common.errors import (
    FailedPrecondition,
    Gone,
    InvalidArgument,
    LimitReached,
    NotFound,
    PermissionDenied,
)
from services.task.records import (
    ACTIVE,
    STATUSES,
    TERMINAL,
    NewTask,
    Progress,
    RejectedRow,
    Task,
    TaskResult,
)
from services.task.task_pages import (
    Position,
    TaskListQuery,
    encode_token,
    list_query,
    position_of,
)

log = logging.getLogger(__name__)

# User ids are the auth service's (24 hex digits); a longer filter is refused unread.
MAX_USER_ID_CHARS = 64


class Tasks(Protocol):
    """The task records the use cases work on: TaskRepository, or an in-memory fake in the unit
    tests. A method that changes a task returns it changed, or None when the task is not in the
    state the change needs."""

    def create(self, new: NewTask) -> Task: ...
    def get(self, task_id: str) -> Task | None: ...

    def list_for_user(self, user_id: str, *, limit: int, skip: int = 0,
                      after: Position | None = None) -> list[Task]:
        """Up to `limit` of the user's tasks, newest first (on created_at, created_ns, id),
        after skipping `skip` of them, or those that come after `after`."""
        ...

    def list_all(self, *, user_id: str, status: str, limit: int, skip: int = 0,
                 after: Position | None = None) -> list[Task]:
        """As list_for_user, over every user's tasks, or only `user_id`'s when it is not empty,
        and only those in `status` when it is not empty."""
        ...

    def count_active(self, user_id: str) -> int:
        """The user's pending and processing tasks."""
        ...

    def claim(self, task_id: str, worker_id: str, lease_seconds: int) -> Task | None:
        """An active task whose lease is free, expired or already `worker_id`'s becomes
        processing under `worker_id`'s lease, one attempt more."""
        ...

    def report(self, task_id: str, worker_id: str, progress: Progress,
               rejected: list[RejectedRow], lease_seconds: int,
               keep_rejections: int) -> Task | None:
        """Replaces the progress and renews the lease while `worker_id` holds it. Of the
        rejected rows, those not stored yet are stored while the task has fewer than
        `keep_rejections`, the lowest lines first."""
        ...

    def finish(self, task_id: str, worker_id: str, status: str, progress: Progress | None,
               rejected: list[RejectedRow], error: str, keep_rejections: int,
               result: TaskResult | None = None) -> Task | None:
        """Ends the task while `worker_id` holds the lease; `progress` None keeps the counts.
        Rejected rows are stored as `report` stores them; `result` is an operation's."""
        ...

    def file_in_use(self, file_id: str) -> bool:
        """Whether a task on the file is pending or processing."""
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
        """Every stored rejected row of the task, by line."""
        ...

    def count_rejections(self, task_id: str) -> int:
        """How many rejected rows of the task are stored."""
        ...


@dataclass(frozen=True)
class TaskLimits:
    """What one user, or one task, may take (the TASK_MAX_* and TASK_LIST_* settings)."""

    pending_per_user: int = 10
    stored_rejections: int = 10_000
    list_default: int = 50
    list_max: int = 100

    def __post_init__(self) -> None:
        if self.pending_per_user < 1 or self.stored_rejections < 0:
            raise SystemExit("TASK_MAX_PENDING_PER_USER must be at least 1 and "
                             "TASK_MAX_STORED_REJECTIONS at least 0")
        if not 1 <= self.list_default <= self.list_max:
            raise SystemExit(f"TASK_LIST_DEFAULT_LIMIT ({self.list_default}) must be from 1 to "
                             f"TASK_LIST_MAX_LIMIT ({self.list_max})")


@dataclass(frozen=True)
class TaskPage:
    tasks: list[Task]
    next_page_token: str  # "" on the last page


@dataclass(frozen=True)
class RejectionsExport:
    """A task's stored rejected rows, and how many more it counted than were stored."""

    rows: Iterator[RejectedRow]
    not_stored: int
    stored_at_most: int


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
        limits: TaskLimits = TaskLimits(),
    ) -> None:
        self._repo = repo
        self._enqueue = enqueue
        self._delete_file = delete_file
        self._file_retention = timedelta(seconds=file_retention_seconds)
        self.lease_seconds = lease_seconds
        self._max_attempts = max_attempts
        self.limits = limits

    # --- for users -------------------------------------------------------------------------

    def get(self, task_id: str, user_id: str) -> Task:
        task = self._repo.get(task_id)
        if task is None:
            raise NotFound(f"no task with id {task_id!r}")
        if task.user_id != user_id:
            raise PermissionDenied("this task belongs to another user")
        return task

    def list_tasks(self, user_id: str, *, page: int | None = None, limit: int | None = None,
                   page_size: int = 0, page_token: str = "") -> TaskPage:
        """A page of the user's tasks, newest first (see task_pages for the parameters)."""
        query = self._list_query(page, limit, page_size, page_token)
        return _page(self._repo.list_for_user(user_id, limit=query.limit + 1, skip=query.skip,
                                              after=query.after), query.limit)

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

    def rejections(self, task_id: str, user_id: str) -> RejectionsExport:
        task = self.get(task_id, user_id)
        # While the task runs, rows may be stored a moment before the count that includes them.
        # Skipped rows are stored with the rejected ones, each with its reason.
        listed = task.progress.rows_rejected + task.progress.rows_skipped
        not_stored = max(0, listed - self._repo.count_rejections(task_id))
        return RejectionsExport(self._repo.rejections(task_id), not_stored,
                                self.limits.stored_rejections)

    def result(self, task_id: str, user_id: str) -> tuple[Task, TaskResult]:
        """The user's operation task and where its result is, once it is done."""
        task = self.get(task_id, user_id)
        if task.operation is None:
            raise FailedPrecondition(f"a task of kind {task.kind} has no result: results are "
                                     "those of operations (POST /files/{file_id}/operations)")
        if task.status in ACTIVE:
            raise FailedPrecondition(f"the task is {task.status}: its result is ready once it "
                                     "is done (GET /task/{task_id} or its watch tells when)")
        if task.result is None:
            raise FailedPrecondition(f"the task ended {task.status}, so it has no result"
                                     + (f": {task.error}" if task.error else ""))
        if task.file_deleted:
            raise Gone(f"the result of task {task.id} was deleted "
                       f"{_count(int(self._file_retention.total_seconds()), 'second')} after "
                       "the task ended (FILE_RETENTION_SECONDS): run the operation again")
        return task, task.result

    # --- for administrators ----------------------------------------------------------------

    def list_all_tasks(self, *, user_id: str = "", status: str = "", page: int | None = None,
                       limit: int | None = None, page_size: int = 0, page_token: str = ""
                       ) -> TaskPage:
        """A page of every user's tasks, newest first, or of one user's (`user_id`), or of
        those in one status; the paging is list_tasks'."""
        if len(user_id) > MAX_USER_ID_CHARS:
            raise InvalidArgument(f"user_id must have at most {MAX_USER_ID_CHARS} characters")
        status = status.strip().lower()
        if status and status not in STATUSES:
            raise InvalidArgument(f"status must be one of {', '.join(STATUSES)} "
                                  f"(got {status[:20]!r})")
        query = self._list_query(page, limit, page_size, page_token)
        return _page(self._repo.list_all(user_id=user_id, status=status, limit=query.limit + 1,
                                         skip=query.skip, after=query.after), query.limit)

    def _list_query(self, page: int | None, limit: int | None, page_size: int,
                    page_token: str) -> TaskListQuery:
        return list_query(page=page, limit=limit, page_size=page_size, page_token=page_token,
                          default_limit=self.limits.list_default, max_limit=self.limits.list_max)

    # --- for services ----------------------------------------------------------------------

    def check_quota(self, user_id: str, incoming: int) -> int:
        """The user's active (pending or processing) tasks, if `incoming` more still fit under
        the per-user limit; LimitReached, saying what to do, if not."""
        if not user_id:
            raise InvalidArgument("user is required")
        if incoming < 1:
            raise InvalidArgument(f"incoming must be at least 1 (got {incoming})")
        active = self._repo.count_active(user_id)
        limit = self.limits.pending_per_user
        if active + incoming > limit:
            uploading = f" and {_count(incoming - 1, 'more upload')} in progress" \
                if incoming > 1 else ""
            raise LimitReached(
                f"too many tasks at once: you have {_count(active, 'task')} pending or "
                f"processing{uploading}, and one user may have {limit}; wait for one to end "
                "(GET /tasks shows them) and upload again")
        return active

    def create(self, new: NewTask) -> Task:
        """Stores and enqueues the task; LimitReached when the user has as many active tasks
        as they may. (Two creations for one user at the same instant may both pass; the upload
        service's check before the bytes, which counts uploads in progress, keeps that rare.)"""
        if not (new.user_id and new.kind and new.file_id):
            raise InvalidArgument("user, kind and file_id are required")
        jobs.job_name(new.kind)  # refuses a kind no job runs: such a task would wait forever
        if (new.kind in jobs.OPERATION_KINDS) != (new.operation is not None):
            raise InvalidArgument(f"an operation is required with, and only with, the kinds "
                                  f"{', '.join(jobs.OPERATION_KINDS)}")
        self.check_quota(new.user_id, incoming=1)
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
        task = self._repo.report(task_id, worker_id, progress, rejected, self.lease_seconds,
                                 self.limits.stored_rejections)
        if task is None:
            raise FailedPrecondition("lease lost: the task ended or another worker took it")
        return task

    def finish(self, task_id: str, worker_id: str, status: str, progress: Progress | None,
               rejected: list[RejectedRow], error: str, result: TaskResult | None = None
               ) -> Task:
        """Ends the task; `progress` None keeps the counts already recorded. An operation that
        is done names its `result`."""
        if status not in TERMINAL:
            raise InvalidArgument(f"status must be one of {', '.join(TERMINAL)}")
        if result is not None and status != "done":
            raise InvalidArgument("only a task that is done has a result")
        task = self._repo.finish(task_id, worker_id, status, progress, rejected, error,
                                 self.limits.stored_rejections, result)
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
        """Deletes the files of tasks that ended more than the retention period ago (the task
        records stay): an upload's file, or an operation's result. An upload's file is kept
        while an operation on it runs, and deleted at the first sweep after it ended. Returns
        how many tasks it acted on."""
        purged = 0
        for task in self._repo.files_to_delete(self._file_retention):
            if task.operation is not None:
                if task.result is not None:
                    self._delete_file(task.result.file_id)
            elif self._repo.file_in_use(task.file_id):
                continue
            else:
                self._delete_file(task.file_id)
            self._repo.mark_file_deleted(task.id)
            purged += 1
            log.info("file deleted after retention", extra={"task_id": task.id,
                                                            "file_id": task.file_id})
        return purged


def _page(tasks: list[Task], limit: int) -> TaskPage:
    """The page of `limit` tasks out of `tasks`, read one over the limit to tell whether
    another page follows."""
    if len(tasks) <= limit:
        return TaskPage(tasks, "")
    tasks = tasks[:limit]
    return TaskPage(tasks, encode_token(position_of(tasks[-1])))


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


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
