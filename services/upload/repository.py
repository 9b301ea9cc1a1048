"""The files collection: one record per stored upload."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pymongo import ASCENDING
from pymongo.database import Database


class FileRepository:
    def __init__(self, db: Database) -> None:
        self._files = db["upload_files"]

    def ensure_indexes(self) -> None:
        self._files.create_index([("owner", ASCENDING), ("created_at", ASCENDING)],
                                 name="by_owner")

    def add(self, record: dict[str, Any]) -> None:
        self._files.insert_one({**record, "created_at": datetime.now(UTC).replace(tzinfo=None),
                                "deleted": False})

    def get(self, file_id: str) -> dict[str, Any] | None:
        return self._files.find_one({"_id": file_id})

    def mark_deleted(self, file_id: str) -> dict[str, Any] | None:
        self._files.update_one({"_id": file_id}, {"$set": {"deleted": True}})
        return self.get(file_id)
