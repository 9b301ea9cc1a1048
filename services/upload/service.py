"""Upload use cases: stream bytes to storage under the size limit and the user's quotas, record
the file, start its task."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Protocol

from services.common.errors import InvalidArgument, NotFound, TooLarge, Unavailable
from services.common.ids import random_id
from services.upload.csv_header import read_header
from services.upload.file_pages import Position
from services.upload.hashing import BackgroundSha256
from services.upload.records import RESULT, UploadedFile
from services.upload.storage import Storage
from services.worker.csv_source import CsvLimits
from services.worker.operation_spec import OperationSpec

log = logging.getLogger(__name__)

UPLOADED = "File uploaded successfully. Please wait while it processes."


@dataclass(frozen=True)
class StoredUpload:
    task_id: str
    file_id: str
    size_bytes: int
    sha256: str


class Files(Protocol):
    """The file records: FileRepository, or an in-memory fake in the unit tests."""

    def add(self, file: UploadedFile) -> None: ...
    def get(self, file_id: str) -> UploadedFile | None: ...
    def mark_deleted(self, file_id: str) -> UploadedFile | None: ...
    def set_task(self, file_id: str, task_id: str) -> None: ...

    def list_for_owner(self, owner: str, *, limit: int, skip: int = 0,
                       after: Position | None = None) -> list[UploadedFile]:
        """The owner's uploads (not results), newest first (created_at, then id)."""
        ...

    def results_of(self, task_id: str) -> list[UploadedFile]:
        """The stored results of an operation's task."""
        ...

    def stored_bytes(self, owner: str) -> int:
        """The size of the user's files not deleted."""
        ...


class Tasks(Protocol):
    """The task service: TaskClient over gRPC, or a fake in the unit tests."""

    def check_quota(self, owner: str, incoming: int) -> None:
        """LimitReached when the user may not have `incoming` tasks more than now;
        Unavailable when the task service cannot tell."""
        ...

    def create(self, file: UploadedFile, username: str, by_admin: bool) -> str:
        """The id of the file's new ingestion task, showing the owner's `username`, and
        importing as an administrator does when `by_admin`; LimitReached when the user has as
        many tasks as they may; Unavailable when the task service failed."""
        ...

    def create_operation(self, file: UploadedFile, spec: OperationSpec, username: str) -> str:
        """The id of a new task running `spec` on the file; refused as `create` is."""
        ...


class Slots(Protocol):
    """The user's uploads in progress: UploadSlots."""

    def hold(self, owner: str) -> AbstractContextManager[int]:
        """Holds one of the user's slots while the block runs and gives how many uploads they
        have in progress, this one included; LimitReached if they have no slot free."""
        ...


@dataclass(frozen=True)
class StorageQuota:
    """How many bytes one user's stored files may take (UPLOAD_MAX_STORED_BYTES_PER_USER).
    Files go FILE_RETENTION_SECONDS after their task ended, which the refusal tells."""

    bytes_per_user: int
    retention_seconds: int

    def refusal(self, stored: int) -> TooLarge:
        room = max(0, self.bytes_per_user - stored)
        return TooLarge(
            f"this upload would pass your storage quota: your stored files take {stored} of the "
            f"{self.bytes_per_user} bytes one user may keep, so an upload may have {room} bytes "
            f"now; files are deleted {_duration(self.retention_seconds)} after their task ended "
            "(DELETE /files/{file_id} deletes one now)")


def _duration(seconds: int) -> str:
    """`seconds` in the largest unit that counts it whole: "7 days", "90 seconds"."""
    for unit, length in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        if seconds >= length and seconds % length == 0:
            count = seconds // length
            return f"{count} {unit}" if count == 1 else f"{count} {unit}s"
    return "0 seconds"


def display_name(client_name: str) -> str:
    """The client's file name for display only: last path component, no control characters."""
    name = re.split(r"[/\\]", client_name)[-1]
    name = "".join(ch for ch in name if ch.isprintable()).strip()
    return name[:255] or "upload.csv"


class UploadService:
    def __init__(self, files: Files, storage: Storage, tasks: Tasks, max_bytes: int, *,
                 slots: Slots, quota: StorageQuota, csv_limits: CsvLimits) -> None:
        self._files = files
        self._storage = storage
        self._tasks = tasks
        self.max_bytes = max_bytes
        self._slots = slots
        self._quota = quota
        self._csv_limits = csv_limits

    def upload(self, owner: str, filename: str, chunks: Iterable[bytes], *,
               username: str = "", by_admin: bool = False) -> StoredUpload:
        """Stores the bytes for the user `owner` (an id; `username` is the name shown on the
        task and on the movies it imports, empty when the token carries none; `by_admin` when
        the owner is an administrator, whose import replaces movies other users own), records
        the file and starts its task.

        The user's quotas are checked before a byte is read: uploads in progress and tasks not
        ended (LimitReached, 429), then room in storage (TooLarge, 413). The upload's slot is
        held until its task exists, so that the pending-task check of the user's other uploads
        counts it."""
        with self._slots.hold(owner) as uploading:
            self._tasks.check_quota(owner, incoming=uploading)
            file = self._store(owner, filename, chunks, self._room(owner))
            file = replace(file, header=read_header(
                lambda: self._storage.read(file.file_path), self._csv_limits))
            self._files.add(file)
            self._keep_within_quota(file)
            task_id = self._start_task(file, username, by_admin)
            self._files.set_task(file.id, task_id)
        log.info("file stored", extra={"file_id": file.id, "task_id": task_id, "owner": owner,
                                       "bytes": file.size_bytes})
        return StoredUpload(task_id, file.id, file.size_bytes, file.sha256)

    def _room(self, owner: str) -> int:
        """How many bytes the user's next file may have within the storage quota."""
        stored = self._files.stored_bytes(owner)
        if stored >= self._quota.bytes_per_user:
            raise self._quota.refusal(stored)
        return self._quota.bytes_per_user - stored

    def store_result(self, task_id: str, owner: str, name: str, chunks: Iterable[bytes]
                     ) -> UploadedFile:
        """Stores an operation's result for the task's owner, within their storage quota
        (TooLarge otherwise, nothing kept). A result an earlier attempt of the task stored is
        deleted first: a task has one result."""
        if not (task_id and owner):
            raise InvalidArgument("task_id and owner are required")
        for earlier in self._files.results_of(task_id):
            self.delete(earlier.id)
        # Not held to MAX_UPLOAD_BYTES: a result may outgrow its file (UTF-8 from cp1252, a
        # JSON entry per distinct value), and the quota bounds it.
        file = replace(self._store(owner, name, chunks, self._room(owner), upload=False),
                       kind=RESULT, task_id=task_id)
        self._files.add(file)
        self._keep_within_quota(file)
        return file

    def _store(self, owner: str, filename: str, chunks: Iterable[bytes], room: int, *,
               upload: bool = True) -> UploadedFile:
        """Streams the bytes to storage, refusing them mid-stream once they pass the size
        limit or the user's `room`; nothing is kept of a refused or failed upload."""
        file_id = random_id()
        file_path = f"{file_id}.csv"
        size = 0
        writer = self._storage.writer(file_path)
        try:
            with BackgroundSha256() as sha:
                for chunk in chunks:
                    size += len(chunk)
                    if upload and size > self.max_bytes:
                        raise TooLarge(f"file is larger than the limit of {self.max_bytes} bytes")
                    if size > room:
                        raise self._quota.refusal(self._quota.bytes_per_user - room)
                    sha.update(chunk)
                    writer.write(chunk)
                if size == 0 and upload:
                    raise InvalidArgument("file is empty: upload a CSV with a header row")
                sha256 = sha.hexdigest()
            writer.commit()
        except BaseException:
            writer.abort()
            log.info("upload aborted", extra={"file_id": file_id, "bytes": size})
            raise
        return UploadedFile(
            id=file_id, owner=owner, original_name=display_name(filename), file_path=file_path,
            size_bytes=size, sha256=sha256, created_at=datetime.now(UTC).replace(tzinfo=None),
        )

    def _keep_within_quota(self, file: UploadedFile) -> None:
        """Counts again once the file is recorded: the user's other uploads may have ended
        while this one streamed. Of two that pass the quota together, each sees the other's
        record, so neither is kept rather than both."""
        stored = self._files.stored_bytes(file.owner)
        if stored > self._quota.bytes_per_user:
            self.delete(file.id)
            raise self._quota.refusal(stored - file.size_bytes)

    def _start_task(self, file: UploadedFile, username: str, by_admin: bool) -> str:
        try:
            return self._tasks.create(file, username, by_admin)
        except Unavailable as exc:
            self.delete(file.id)
            log.warning("task creation failed", extra={"file_id": file.id, "error": str(exc)})
            raise Unavailable("the upload was stored but its task could not be created, so it "
                              "was discarded: try again") from exc
        except BaseException:  # over the limit, or a bug: no file is kept without its task
            self.delete(file.id)
            raise

    def get(self, file_id: str) -> UploadedFile:
        file = self._files.get(file_id)
        if file is None:
            raise NotFound(f"no file with id {file_id!r}")
        return file

    def read(self, file_id: str, offset: int) -> Iterator[bytes]:
        file = self.get(file_id)
        if file.deleted:
            raise NotFound(f"file {file_id} was deleted")
        if not 0 <= offset <= file.size_bytes:
            raise InvalidArgument(f"offset must be between 0 and {file.size_bytes}")
        return self._storage.read(file.file_path, offset)

    def delete(self, file_id: str) -> UploadedFile:
        file = self.get(file_id)
        self._storage.delete(file.file_path)
        return self._files.mark_deleted(file_id) or file
