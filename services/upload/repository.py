"""The files collection: one record per stored upload."""

from __future__ import annotations

from typing import Any

from pymongo import ASCENDING
from pymongo.database import Database

from services.upload.records import UploadedFile


def _file(doc: dict[str, Any] | None) -> UploadedFile | None:
    if doc is None:
        return None
    return UploadedFile(
        id=doc["_id"], owner=doc["owner"], original_name=doc["original_name"],
        file_path=doc["file_path"], size_bytes=doc["size_bytes"], sha256=doc["sha256"],
        created_at=doc["created_at"], deleted=doc["deleted"],
    )


class FileRepository:
    def __init__(self, db: Database) -> None:
        self._files = db["upload_files"]

    def ensure_indexes(self) -> None:
        self._files.create_index([("owner", ASCENDING), ("created_at", ASCENDING)],
                                 name="by_owner")

    def add(self, file: UploadedFile) -> None:
        self._files.insert_one({
            "_id": file.id, "owner": file.owner, "original_name": file.original_name,
            "file_path": file.file_path, "size_bytes": file.size_bytes, "sha256": file.sha256,
            "created_at": file.created_at, "deleted": file.deleted,
        })

    def get(self, file_id: str) -> UploadedFile | None:
        return _file(self._files.find_one({"_id": file_id}))

    def mark_deleted(self, file_id: str) -> UploadedFile | None:
        self._files.update_one({"_id": file_id}, {"$set": {"deleted": True}})
        return self.get(file_id)
