"""The upload service's collections: one record per stored upload, and the slots that bound
each user's uploads in progress (services/upload/upload_slots.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from services.common.keyset import read_page
from services.upload.file_pages import Position
from services.upload.records import RESULT, UPLOAD, CsvHeader, UploadedFile

# Newest first; files of one millisecond in a fixed (random id) order.
NEWEST_FIRST = [("created_at", DESCENDING), ("_id", DESCENDING)]


def _file(doc: dict[str, Any] | None) -> UploadedFile | None:
    if doc is None:
        return None
    header = doc.get("header") or {}
    return UploadedFile(
        id=doc["_id"], owner=doc["owner"], original_name=doc["original_name"],
        file_path=doc["file_path"], size_bytes=doc["size_bytes"], sha256=doc["sha256"],
        created_at=doc["created_at"], deleted=doc["deleted"], kind=doc.get("kind", UPLOAD),
        task_id=doc.get("task_id", ""),
        header=CsvHeader(encoding=header.get("encoding", ""),
                         delimiter=header.get("delimiter", ""),
                         columns=tuple(header.get("columns", ())),
                         error=header.get("error", "")),
    )


def _listed(owner: str) -> dict[str, Any]:
    """The owner's uploads (not results)."""
    return {"owner": owner, "kind": {"$ne": RESULT}}


def _after(position: Position | None) -> list[dict[str, Any]]:
    """The branches of "after `position` in NEWEST_FIRST" (services/common/keyset.py)."""
    if position is None:
        return []
    return [{"created_at": position.created_at, "_id": {"$lt": position.file_id}},
            {"created_at": {"$lt": position.created_at}}]


class FileRepository:
    def __init__(self, db: Database) -> None:
        self._files = db["upload_files"]

    def ensure_indexes(self) -> None:
        self._files.create_index([("owner", ASCENDING), ("created_at", ASCENDING)],
                                 name="by_owner")
        # An operation's task finds the result an earlier attempt stored.
        self._files.create_index([("task_id", ASCENDING)], name="by_task")

    def add(self, file: UploadedFile) -> None:
        self._files.insert_one({
            "_id": file.id, "owner": file.owner, "original_name": file.original_name,
            "file_path": file.file_path, "size_bytes": file.size_bytes, "sha256": file.sha256,
            "created_at": file.created_at, "deleted": file.deleted, "kind": file.kind,
            "task_id": file.task_id, "header": {
                "encoding": file.header.encoding, "delimiter": file.header.delimiter,
                "columns": list(file.header.columns), "error": file.header.error},
        })

    def get(self, file_id: str) -> UploadedFile | None:
        return _file(self._files.find_one({"_id": file_id}))

    def set_task(self, file_id: str, task_id: str) -> None:
        self._files.update_one({"_id": file_id}, {"$set": {"task_id": task_id}})

    def list_for_owner(self, owner: str, *, limit: int, skip: int = 0,
                       after: Position | None = None) -> list[UploadedFile]:
        found = read_page(self._files, _listed(owner), NEWEST_FIRST, limit=limit, skip=skip,
                          after=_after(after))
        return [f for f in map(_file, found) if f is not None]

    def results_of(self, task_id: str) -> list[UploadedFile]:
        """The stored (not deleted) results of an operation's task: more than one only when a
        worker stored one and then lost the task."""
        found = self._files.find({"task_id": task_id, "kind": RESULT, "deleted": False})
        return [f for f in map(_file, found) if f is not None]

    def mark_deleted(self, file_id: str) -> UploadedFile | None:
        self._files.update_one({"_id": file_id}, {"$set": {"deleted": True}})
        return self.get(file_id)

    def stored_bytes(self, owner: str) -> int:
        """The size of the user's files that are still stored."""
        totals = self._files.aggregate([
            {"$match": {"owner": owner, "deleted": False}},
            {"$group": {"_id": None, "bytes": {"$sum": "$size_bytes"}}},
        ])
        return int(next(totals, {"bytes": 0})["bytes"])


class UploadSlotRepository:
    """`upload_slots`: one record per slot a user's upload holds, `_id` "<owner>:<n>". A
    record whose lease ended (its upload service died) stays until an upload takes it over, so
    there are never more records than users times slots."""

    def __init__(self, db: Database) -> None:
        self._slots = db["upload_slots"]

    def ensure_indexes(self) -> None:
        self._slots.create_index([("lease", ASCENDING)], name="by_lease")

    def try_take(self, slot_id: str, owner: str, lease: str, until: datetime,
                 now: datetime) -> bool:
        held = {"owner": owner, "lease": lease, "expires_at": until}
        try:
            self._slots.insert_one({"_id": slot_id, **held})
            return True
        except DuplicateKeyError:  # the slot exists: free only if its lease has ended
            taken = self._slots.update_one({"_id": slot_id, "expires_at": {"$lte": now}},
                                           {"$set": held})
            return taken.modified_count == 1

    def count_held(self, slot_ids: list[str], now: datetime) -> int:
        return self._slots.count_documents({"_id": {"$in": slot_ids},
                                            "expires_at": {"$gt": now}})

    def renew(self, leases: list[str], until: datetime) -> None:
        self._slots.update_many({"lease": {"$in": leases}}, {"$set": {"expires_at": until}})

    def release(self, lease: str) -> None:
        self._slots.delete_one({"lease": lease})
