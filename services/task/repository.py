"""The task collections: task records with their leases, and every rejected row."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from bson import ObjectId
from bson.errors import InvalidId
from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.database import Database
from pymongo.errors import BulkWriteError

ACTIVE = ("pending", "processing")
SAMPLE_SIZE = 20


def now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _oid(task_id: str) -> ObjectId | None:
    try:
        return ObjectId(task_id)
    except (InvalidId, TypeError):
        return None


class TaskRepository:
    def __init__(self, db: Database) -> None:
        self._tasks = db["task_tasks"]
        self._rejections = db["task_rejections"]

    def ensure_indexes(self) -> None:
        self._tasks.create_index([("user", ASCENDING), ("created_at", DESCENDING)], name="by_user")
        self._tasks.create_index([("status", ASCENDING), ("lease_expires_at", ASCENDING)],
                                 name="by_status_lease")
        self._tasks.create_index([("file_deleted", ASCENDING), ("finished_at", ASCENDING)],
                                 name="by_file_retention")
        # One row per (task, line): a replayed batch cannot record a rejection twice.
        self._rejections.create_index([("task_id", ASCENDING), ("line", ASCENDING)],
                                      unique=True, name="task_line_unique")

    def create(self, fields: dict[str, Any]) -> dict[str, Any]:
        doc = {
            **fields,
            "status": "pending",
            "progress": {},
            "rejected_sample": [],
            "error": "",
            "attempts": 0,
            "cancel_requested": False,
            "file_deleted": False,
            "created_at": now(),
            "updated_at": now(),
        }
        doc["_id"] = self._tasks.insert_one(doc).inserted_id
        return doc

    def get(self, task_id: str) -> dict[str, Any] | None:
        oid = _oid(task_id)
        return None if oid is None else self._tasks.find_one({"_id": oid})

    def list_for_user(self, user: str) -> list[dict[str, Any]]:
        return list(self._tasks.find({"user": user}).sort([("created_at", DESCENDING),
                                                           ("_id", DESCENDING)]))

    def claim(self, task_id: str, worker_id: str, lease_seconds: int) -> dict[str, Any] | None:
        """Takes the lease when the task is active and nobody else holds a live one."""
        t = now()
        return self._tasks.find_one_and_update(
            {
                "_id": _oid(task_id),
                "status": {"$in": list(ACTIVE)},
                "$or": [
                    {"lease_worker": {"$in": [None, worker_id]}},
                    {"lease_expires_at": {"$lt": t}},
                ],
            },
            {
                "$set": {
                    "status": "processing",
                    "lease_worker": worker_id,
                    "lease_expires_at": t + timedelta(seconds=lease_seconds),
                    "updated_at": t,
                },
                "$inc": {"attempts": 1},
                "$min": {"started_at": t},
            },
            return_document=ReturnDocument.AFTER,
        )

    def report(
        self,
        task_id: str,
        worker_id: str,
        progress: dict[str, int],
        rejected: list[dict[str, Any]],
        lease_seconds: int,
    ) -> dict[str, Any] | None:
        """Records progress while `worker_id` holds the lease, and renews it. None: lease lost."""
        self._add_rejections(task_id, rejected)
        t = now()
        update: dict[str, Any] = {
            "$set": {
                "progress": progress,
                "updated_at": t,
                "lease_expires_at": t + timedelta(seconds=lease_seconds),
            }
        }
        if rejected:
            update["$push"] = {"rejected_sample": {"$each": rejected, "$slice": SAMPLE_SIZE}}
        return self._tasks.find_one_and_update(
            {"_id": _oid(task_id), "status": "processing", "lease_worker": worker_id},
            update,
            return_document=ReturnDocument.AFTER,
        )

    def finish(
        self,
        task_id: str,
        worker_id: str,
        status: str,
        progress: dict[str, int] | None,
        rejected: list[dict[str, Any]],
        error: str,
    ) -> dict[str, Any] | None:
        self._add_rejections(task_id, rejected)
        t = now()
        ended = {"status": status, "error": error, "updated_at": t, "finished_at": t}
        update: dict[str, Any] = {
            "$set": ended if progress is None else {**ended, "progress": progress},
            "$unset": {"lease_worker": "", "lease_expires_at": ""},
        }
        if rejected:
            update["$push"] = {"rejected_sample": {"$each": rejected, "$slice": SAMPLE_SIZE}}
        return self._tasks.find_one_and_update(
            {"_id": _oid(task_id), "status": "processing", "lease_worker": worker_id},
            update,
            return_document=ReturnDocument.AFTER,
        )

    def request_cancel(self, task_id: str) -> dict[str, Any] | None:
        """A pending task is cancelled at once; a processing one is asked to stop."""
        t = now()
        cancelled = self._tasks.find_one_and_update(
            {"_id": _oid(task_id), "status": "pending"},
            {"$set": {"status": "cancelled", "cancel_requested": True, "updated_at": t,
                      "finished_at": t}},
            return_document=ReturnDocument.AFTER,
        )
        return cancelled or self._tasks.find_one_and_update(
            {"_id": _oid(task_id), "status": "processing"},
            {"$set": {"cancel_requested": True, "updated_at": t}},
            return_document=ReturnDocument.AFTER,
        )

    def fail(self, task_id: str, error: str) -> dict[str, Any] | None:
        """Ends an active task as failed, whoever holds it (used when no worker can finish it)."""
        t = now()
        return self._tasks.find_one_and_update(
            {"_id": _oid(task_id), "status": {"$in": list(ACTIVE)}},
            {"$set": {"status": "failed", "error": error, "updated_at": t, "finished_at": t},
             "$unset": {"lease_worker": "", "lease_expires_at": ""}},
            return_document=ReturnDocument.AFTER,
        )

    def stalled(self, grace_before: datetime) -> list[dict[str, Any]]:
        """Processing tasks whose lease expired, and pending tasks nobody claimed in time, that
        were not re-enqueued within the grace period."""
        t = now()
        return list(self._tasks.find({"$and": [
            {"$or": [{"status": "processing", "lease_expires_at": {"$lt": t}},
                     {"status": "pending", "updated_at": {"$lt": grace_before}}]},
            {"$or": [{"requeued_at": None}, {"requeued_at": {"$lt": grace_before}}]},
        ]}))

    def files_to_delete(self, finished_before: datetime, limit: int = 100) -> list[dict[str, Any]]:
        """Ended tasks whose file has outlived the retention period."""
        return list(self._tasks.find(
            {"file_deleted": False, "finished_at": {"$lt": finished_before}},
            {"file_id": 1}).limit(limit))

    def mark_file_deleted(self, task_id: str) -> None:
        self._tasks.update_one({"_id": _oid(task_id)},
                               {"$set": {"file_deleted": True, "updated_at": now()}})

    def mark_requeued(self, task_id: str) -> None:
        self._tasks.update_one({"_id": _oid(task_id)}, {"$set": {"requeued_at": now()}})

    def rejections(self, task_id: str) -> Iterator[dict[str, Any]]:
        return self._rejections.find({"task_id": task_id}, {"_id": 0}).sort("line", ASCENDING)

    def _add_rejections(self, task_id: str, rejected: list[dict[str, Any]]) -> None:
        if not rejected:
            return
        try:
            self._rejections.insert_many([{**r, "task_id": task_id} for r in rejected],
                                         ordered=False)
        except BulkWriteError as exc:
            # Rows already recorded by an earlier attempt of the same batch are fine.
            if any(e.get("code") != 11000 for e in exc.details.get("writeErrors", [])):
                raise
