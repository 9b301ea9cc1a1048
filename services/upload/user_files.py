"""The files surface: a user lists, reads, downloads and deletes their own uploads, and starts
operations on them. Another user's file is NOT_FOUND (not PERMISSION_DENIED), so that a file id
tells nothing about whether it exists; a deleted one is Gone (REST 410)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass

from services.common.errors import (
    FailedPrecondition,
    Gone,
    NotFound,
)
from services.upload.file_pages import Position, encode_token, list_query
from services.upload.records import RESULT, UploadedFile
from services.upload.service import Files, Tasks, UploadService
from services.worker.operation_spec import OperationSpec, plan

log = logging.getLogger(__name__)

STARTED = "Operation started. Follow its task for progress and its result."


@dataclass(frozen=True)
class FilePage:
    files: list[UploadedFile]
    next_page_token: str  # "" on the last page


@dataclass(frozen=True)
class PageLimits:
    default: int = 50
    max: int = 100


class UserFiles:
    def __init__(self, files: Files, uploads: UploadService, tasks: Tasks,
                 limits: PageLimits = PageLimits()) -> None:
        self._files = files
        self._uploads = uploads
        self._tasks = tasks
        self._limits = limits

    def list(self, owner: str, *, page: int | None = None, limit: int | None = None,
             page_size: int = 0, page_token: str = "") -> FilePage:
        """A page of the owner's uploads, newest first (see file_pages for the paging)."""
        query = list_query(page=page, limit=limit, page_size=page_size, page_token=page_token,
                           default_limit=self._limits.default, max_limit=self._limits.max)
        found = self._files.list_for_owner(owner, limit=query.limit + 1, skip=query.skip,
                                           after=query.after)
        if len(found) <= query.limit:
            return FilePage(found, "")
        last = found[query.limit - 1]
        return FilePage(found[: query.limit], encode_token(Position(last.created_at, last.id)))

    def describe(self, owner: str, file_id: str) -> UploadedFile:
        """The owner's upload, deleted or not; NotFound for anything else."""
        file = self._files.get(file_id)
        if file is None or file.owner != owner or file.kind == RESULT:
            raise NotFound(f"no file with id {file_id[:64]!r}")
        return file

    def _stored(self, owner: str, file_id: str) -> UploadedFile:
        file = self.describe(owner, file_id)
        if file.deleted:
            raise Gone(f"file {file_id} was deleted (by you, or {file.original_name!r} passed "
                       "its retention period): upload it again")
        return file

    def download(self, owner: str, file_id: str) -> tuple[UploadedFile, Iterator[bytes]]:
        file = self._stored(owner, file_id)
        return file, self._uploads.read(file.id, 0)

    def remove(self, owner: str, file_id: str) -> UploadedFile:
        """Deletes the bytes; the record stays, deleted. Deleting a deleted file is a no-op, so
        a retried DELETE gets the same answer."""
        file = self.describe(owner, file_id)
        if file.deleted:
            return file
        log.info("file deleted by its owner", extra={"file_id": file_id, "owner": owner})
        return self._uploads.delete(file.id)

    def start_operation(self, owner: str, username: str, file_id: str, spec: OperationSpec
                        ) -> str:
        """Checks the operation against the file's header and starts its task; the task id."""
        file = self._stored(owner, file_id)
        if file.header.error:
            raise FailedPrecondition(f"no operation can run on this file, whose header could "
                                     f"not be read: {file.header.error}")
        plan(spec, file.header.columns)
        return self._tasks.create_operation(file, spec, username)

