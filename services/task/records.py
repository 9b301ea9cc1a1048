"""A task as the task service's use cases and its repository exchange it. Plain data: the
repository maps it to and from the stored documents, the servicer to and from protos."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any

ACTIVE = ("pending", "processing")
TERMINAL = ("done", "failed", "cancelled")
STATUSES = ACTIVE + TERMINAL


def now() -> datetime:
    """The time as task records hold it: UTC without a zone (what Mongo gives back)."""
    return datetime.now(UTC).replace(tzinfo=None)


@dataclass(frozen=True)
class Progress:
    """Totals a worker has committed so far; each report replaces them whole."""

    rows_read: int = 0
    rows_imported: int = 0
    rows_rejected: int = 0
    bytes_processed: int = 0
    # Rows whose movie another user owns, left unchanged; they are listed with the rejected
    # rows (with their reason), but not counted in rows_rejected.
    rows_skipped: int = 0
    # Operations: rows written to the result, rows dropped as duplicates, distinct values.
    rows_out: int = 0
    duplicates: int = 0
    distinct: int = 0


PROGRESS_FIELDS = tuple(f.name for f in fields(Progress))


@dataclass(frozen=True)
class RejectedRow:
    line: int  # 1-based line of the file where the row starts (the header is line 1)
    reason: str
    raw: str


@dataclass(frozen=True)
class TaskResult:
    """Where an operation's result is stored (a file of the upload service) and what it is."""

    file_id: str
    content_type: str
    size_bytes: int


@dataclass(frozen=True)
class NewTask:
    """What a service asks for when it creates a task."""

    user_id: str
    username: str
    kind: str
    file_id: str
    file_path: str
    original_name: str
    bytes_total: int
    # The owner was an administrator when they uploaded: the import replaces movies that other
    # users own.
    uploaded_by_admin: bool = False
    # An operation task's request (marquee.task.v1.Operation in its JSON form), which the task
    # service keeps for the worker without reading it; None for other kinds.
    operation: dict[str, Any] | None = None


@dataclass(frozen=True, kw_only=True)
class Task:
    """A task: what was asked for, and how far it has come. The defaults are a new task's."""

    id: str
    user_id: str  # the owner: access checks compare this
    # The owner's name when the task was created, for display; "" for tasks created before the
    # name was stored.
    username: str
    kind: str
    file_id: str
    file_path: str
    original_name: str
    bytes_total: int
    created_at: datetime
    updated_at: datetime
    # Orders tasks created within one millisecond (created_at's precision); None for tasks
    # stored before it existed.
    created_ns: int | None = None
    status: str = "pending"
    progress: Progress = Progress()
    rejected_sample: tuple[RejectedRow, ...] = ()  # the first rejected rows
    error: str = ""
    attempts: int = 0
    cancel_requested: bool = False
    file_deleted: bool = False  # the uploaded file was deleted after the retention period
    uploaded_by_admin: bool = False  # as in NewTask
    operation: dict[str, Any] | None = None  # as in NewTask
    result: TaskResult | None = None  # an operation that is done
    started_at: datetime | None = None
    finished_at: datetime | None = None
    lease_worker: str | None = None
    lease_expires_at: datetime | None = None
    requeued_at: datetime | None = None  # when the stall sweep last enqueued it again
