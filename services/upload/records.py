"""A stored file as the upload service's use cases and its repository exchange it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

UPLOAD = "upload"
# An operation's result: stored, retained and counted toward the quota like an upload, but not
# listed among the user's files (its task serves it).
RESULT = "result"


@dataclass(frozen=True)
class CsvHeader:
    """The file's dialect and header row as the worker's reader detects them; `error` says why
    there is none (not CSV text, a header over its bounds)."""

    encoding: str = ""
    delimiter: str = ""
    columns: tuple[str, ...] = ()
    error: str = ""


@dataclass(frozen=True)
class UploadedFile:
    id: str
    owner: str  # the uploader's user id
    original_name: str  # the client's file name, for display only
    file_path: str  # the generated name the bytes are stored under
    size_bytes: int
    sha256: str
    created_at: datetime  # UTC without a zone, as Mongo gives it back
    deleted: bool = False
    kind: str = UPLOAD
    # An upload's ingestion task, or the task whose result this is; "" until the task exists.
    task_id: str = ""
    header: CsvHeader = CsvHeader()
