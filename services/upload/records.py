"""A stored upload as the upload service's use cases and its repository exchange it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


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
