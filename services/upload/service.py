"""Upload use cases: stream bytes to storage under a limit, record the file, start its task."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from services.common.errors import InvalidArgument, NotFound, TooLarge, Unavailable
from services.common.ids import random_id
from services.upload.hashing import BackgroundSha256
from services.upload.records import UploadedFile
from services.upload.storage import Storage

log = logging.getLogger(__name__)

UPLOADED = "File uploaded successfully. Please wait while it processes."


@dataclass(frozen=True)
class StoredUpload:
    task_id: str
    file_id: str
    size_bytes: int
    sha256: str


# Asks the task service to ingest a stored file; returns the task id. It gets the file's record
# as a dict (the fields of UploadedFile) and `username`, the owner's name.
# Asks the task service for the file's ingestion task (the owner's username shown on it).
CreateTask = Callable[[UploadedFile, str], str]


class Files(Protocol):
    """The file records: FileRepository, or an in-memory fake in the unit tests."""

    def add(self, file: UploadedFile) -> None: ...
    def get(self, file_id: str) -> UploadedFile | None: ...
    def mark_deleted(self, file_id: str) -> UploadedFile | None: ...


def display_name(client_name: str) -> str:
    """The client's file name for display only: last path component, no control characters."""
    name = re.split(r"[/\\]", client_name)[-1]
    name = "".join(ch for ch in name if ch.isprintable()).strip()
    return name[:255] or "upload.csv"


class UploadService:
    def __init__(self, files: Files, storage: Storage, create_task: CreateTask,
                 max_bytes: int) -> None:
        self._files = files
        self._storage = storage
        self._create_task = create_task
        self.max_bytes = max_bytes

    def upload(self, owner: str, filename: str, chunks: Iterable[bytes], *,
               username: str = "") -> StoredUpload:
        """Stores the bytes for the user `owner` (an id; `username` is the name shown on the
        task, empty when the token carries none), records the file and starts its task."""
        file_id = random_id()
        file_path = f"{file_id}.csv"
        size = 0
        writer = self._storage.writer(file_path)
        try:
            with BackgroundSha256() as sha:
                for chunk in chunks:
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise TooLarge(f"file is larger than the limit of {self.max_bytes} bytes")
                    sha.update(chunk)
                    writer.write(chunk)
                if size == 0:
                    raise InvalidArgument("file is empty: upload a CSV with a header row")
                sha256 = sha.hexdigest()
            writer.commit()
        except BaseException:
            writer.abort()
            log.info("upload aborted", extra={"file_id": file_id, "bytes": size})
            raise
        file = UploadedFile(
            id=file_id, owner=owner, original_name=display_name(filename), file_path=file_path,
            size_bytes=size, sha256=sha256, created_at=datetime.now(UTC).replace(tzinfo=None),
        )
        self._files.add(file)
        try:
            task_id = self._create_task(file, username)
        except Exception as exc:
            self.delete(file_id)
            log.exception("task creation failed", extra={"file_id": file_id})
            raise Unavailable("the upload was stored but its task could not be created, so it "
                              "was discarded: try again") from exc
        log.info("file stored", extra={"file_id": file_id, "task_id": task_id, "owner": owner,
                                       "bytes": size})
        return StoredUpload(task_id, file_id, size, sha256)

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
