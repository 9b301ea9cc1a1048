"""The task collections: task records with their leases, and every rejected row."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import asdict
from datetime import timedelta
from typing import Any

from bson import ObjectId
from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.database import Database
from pymongo.errors import BulkWriteError

from services.common.ids import random_id
from services.common.keyset import read_page
from services.task.records import (
    ACTIVE,
    PROGRESS_FIELDS,
    NewTask,
    Progress,
    RejectedRow,
    Task,
    TaskResult,
    now,
)
from services.task.task_pages import Position

SAMPLE_SIZE = 20
# Newest first. Mongo keeps dates to the millisecond and random ids carry no order, so tasks
# created within one millisecond are told apart by `created_ns`; tasks from before it have
# ObjectIds, which count up.
NEWEST_FIRST = [("created_at", DESCENDING), ("created_ns", DESCENDING), ("_id", DESCENDING)]


def _key(task_id: str) -> ObjectId | str:
    """The stored `_id` of a task id: tasks are stored under their random id (a string), tasks
    created before ids were random under an ObjectId, whose id is its 24 hex digits. A random id
    has 32 digits, so the two never meet."""
    return ObjectId(task_id) if ObjectId.is_valid(task_id) else task_id


def task_from_document(doc: dict[str, Any]) -> Task:
    """A stored task as a record. Documents written before a field existed get the field's
    default; progress counts missing from a document are 0."""
    counts = doc.get("progress") or {}
    return Task(
        id=str(doc["_id"]),
        user_id=doc["user"],  # the field's name from before usernames were stored
        username=doc.get("username", ""),
        kind=doc.get("kind", ""),
        file_id=doc.get("file_id", ""),
        file_path=doc.get("file_path", ""),
        original_name=doc.get("original_name", ""),
        bytes_total=int(doc.get("bytes_total") or 0),
        created_at=doc["created_at"],
        updated_at=doc["updated_at"],
        created_ns=doc.get("created_ns"),
        status=doc["status"],
        progress=Progress(**{f: int(counts.get(f, 0)) for f in PROGRESS_FIELDS}),
        rejected_sample=tuple(RejectedRow(r["line"], r["reason"], r["raw"])
                              for r in doc.get("rejected_sample", [])),
        error=doc.get("error", ""),
        attempts=doc.get("attempts", 0),
        cancel_requested=doc.get("cancel_requested", False),
        file_deleted=doc.get("file_deleted", False),
        uploaded_by_admin=doc.get("uploaded_by_admin", False),
        operation=doc.get("operation"),
        result=TaskResult(**doc["result"]) if doc.get("result") else None,
        started_at=doc.get("started_at"),
        finished_at=doc.get("finished_at"),
        lease_worker=doc.get("lease_worker"),
        lease_expires_at=doc.get("lease_expires_at"),
        requeued_at=doc.get("requeued_at"),
    )


def _task(doc: dict[str, Any] | None) -> Task | None:
    return None if doc is None else task_from_document(doc)


def _rows(rejected: list[RejectedRow]) -> list[dict[str, Any]]:
    return [asdict(r) for r in rejected]


def _after(position: Position | None) -> list[dict[str, Any]]:
    """The branches of "after `position` in NEWEST_FIRST" (services/common/keyset.py), where a
    missing `created_ns` (tasks from before it) sorts lowest, as Mongo sorts null."""
    if position is None:
        return []
    at, same = position.created_at, {"created_at": position.created_at}
    last = {"_id": {"$lt": _key(position.task_id)}}
    older = {"created_at": {"$lt": at}}
    if position.created_ns is None:
        return [{**same, "created_ns": None, **last}, older]
    ns = position.created_ns
    return [{**same, "created_ns": ns, **last}, {**same, "created_ns": {"$lt": ns}},
            {**same, "created_ns": None}, older]


class TaskRepository:
    def __init__(self, db: Database) -> None:
        self._tasks = db["task_tasks"]
        self._rejections = db["task_rejections"]

    def ensure_indexes(self) -> None:
        self._tasks.create_index([("user", ASCENDING), ("created_at", DESCENDING)], name="by_user")
        # The pending-task quota counts a user's active tasks on every upload.
        self._tasks.create_index([("user", ASCENDING), ("status", ASCENDING)],
                                 name="by_user_status")
        self._tasks.create_index([("status", ASCENDING), ("lease_expires_at", ASCENDING)],
                                 name="by_status_lease")
        self._tasks.create_index([("file_deleted", ASCENDING), ("finished_at", ASCENDING)],
                                 name="by_file_retention")
        # Retention keeps a file while an operation on it runs.
        self._tasks.create_index([("file_id", ASCENDING), ("status", ASCENDING)],
                                 name="by_file_status")
        # The administrators' list of every user's tasks, newest first: whole, by status, and by
        # user and status (by user alone, `by_user` serves it as it serves the user's own list).
        self._tasks.create_index(NEWEST_FIRST, name="all_newest")
        self._tasks.create_index([("status", ASCENDING), *NEWEST_FIRST], name="by_status_newest")
        self._tasks.create_index([("user", ASCENDING), ("status", ASCENDING), *NEWEST_FIRST],
                                 name="by_user_status_newest")
        # One row per (task, line): a replayed batch cannot record a rejection twice.
        self._rejections.create_index([("task_id", ASCENDING), ("line", ASCENDING)],
                                      unique=True, name="task_line_unique")

    def create(self, new: NewTask) -> Task:
        t = now()
        doc = {
            "_id": random_id(),
            "user": new.user_id,
            "username": new.username,
            "kind": new.kind,
            "file_id": new.file_id,
            "file_path": new.file_path,
            "original_name": new.original_name,
            "bytes_total": new.bytes_total,
            "uploaded_by_admin": new.uploaded_by_admin,
            "operation": new.operation,
            "status": "pending",
            "progress": {},
            "rejected_sample": [],
            "error": "",
            "attempts": 0,
            "cancel_requested": False,
            "file_deleted": False,
            "created_at": t,
            "created_ns": time.time_ns(),
            "updated_at": t,
        }
        self._tasks.insert_one(doc)
        return task_from_document(doc)

    def get(self, task_id: str) -> Task | None:
        return _task(self._tasks.find_one({"_id": _key(task_id)}))

    def list_for_user(self, user_id: str, *, limit: int, skip: int = 0,
                      after: Position | None = None) -> list[Task]:
        found = read_page(self._tasks, {"user": user_id}, NEWEST_FIRST, limit=limit, skip=skip,
                          after=_after(after))
        return [task_from_document(doc) for doc in found]

    def list_all(self, *, user_id: str, status: str, limit: int, skip: int = 0,
                 after: Position | None = None) -> list[Task]:
        query = {**({"user": user_id} if user_id else {}), **({"status": status} if status else {})}
        found = read_page(self._tasks, query, NEWEST_FIRST, limit=limit, skip=skip,
                          after=_after(after))
        return [task_from_document(doc) for doc in found]

    def count_active(self, user_id: str) -> int:
        return self._tasks.count_documents({"user": user_id, "status": {"$in": list(ACTIVE)}})

    def claim(self, task_id: str, worker_id: str, lease_seconds: int) -> Task | None:
        """Takes the lease when the task is active and nobody else holds a live one."""
        t = now()
        take = {
            "$set": {
                "status": "processing",
                "lease_worker": worker_id,
                "lease_expires_at": t + timedelta(seconds=lease_seconds),
                "updated_at": t,
            },
            "$inc": {"attempts": 1},
            "$min": {"started_at": t},
        }
        # Free (or this worker's), else expired: two conditional updates, each atomic, rather
        # than one with an $or of the two, for which the embedded database reads every task.
        for lease in ({"lease_worker": {"$in": [None, worker_id]}},
                      {"lease_expires_at": {"$lt": t}}):
            claimed = self._tasks.find_one_and_update(
                {"_id": _key(task_id), "status": {"$in": list(ACTIVE)}, **lease}, take,
                return_document=ReturnDocument.AFTER)
            if claimed is not None:
                return _task(claimed)
        return None

    def report(
        self,
        task_id: str,
        worker_id: str,
        progress: Progress,
        rejected: list[RejectedRow],
        lease_seconds: int,
        keep_rejections: int,
    ) -> Task | None:
        """Records progress while `worker_id` holds the lease, and renews it. None: lease lost."""
        self._add_rejections(task_id, rejected, keep_rejections)
        t = now()
        update: dict[str, Any] = {
            "$set": {
                "progress": asdict(progress),
                "updated_at": t,
                "lease_expires_at": t + timedelta(seconds=lease_seconds),
            }
        }
        if rejected:
            update["$push"] = {"rejected_sample": {"$each": _rows(rejected),
                                                   "$slice": SAMPLE_SIZE}}
        return _task(self._tasks.find_one_and_update(
            {"_id": _key(task_id), "status": "processing", "lease_worker": worker_id},
            update,
            return_document=ReturnDocument.AFTER,
        ))

    def finish(
        self,
        task_id: str,
        worker_id: str,
        status: str,
        progress: Progress | None,
        rejected: list[RejectedRow],
        error: str,
        keep_rejections: int,
        result: TaskResult | None = None,
    ) -> Task | None:
        self._add_rejections(task_id, rejected, keep_rejections)
        t = now()
        ended = {"status": status, "error": error, "updated_at": t, "finished_at": t,
                 "result": asdict(result) if result else None}
        update: dict[str, Any] = {
            "$set": ended if progress is None else {**ended, "progress": asdict(progress)},
            "$unset": {"lease_worker": "", "lease_expires_at": ""},
        }
        if rejected:
            update["$push"] = {"rejected_sample": {"$each": _rows(rejected),
                                                   "$slice": SAMPLE_SIZE}}
        return _task(self._tasks.find_one_and_update(
            {"_id": _key(task_id), "status": "processing", "lease_worker": worker_id},
            update,
            return_document=ReturnDocument.AFTER,
        ))

    def request_cancel(self, task_id: str) -> Task | None:
        """A pending task is cancelled at once; a processing one is asked to stop."""
        t = now()
        cancelled = self._tasks.find_one_and_update(
            {"_id": _key(task_id), "status": "pending"},
            {"$set": {"status": "cancelled", "cancel_requested": True, "updated_at": t,
                      "finished_at": t}},
            return_document=ReturnDocument.AFTER,
        )
        return _task(cancelled or self._tasks.find_one_and_update(
            {"_id": _key(task_id), "status": "processing"},
            {"$set": {"cancel_requested": True, "updated_at": t}},
            return_document=ReturnDocument.AFTER,
        ))

    def fail(self, task_id: str, error: str) -> Task | None:
        """Ends an active task as failed, whoever holds it (used when no worker can finish it)."""
        t = now()
        return _task(self._tasks.find_one_and_update(
            {"_id": _key(task_id), "status": {"$in": list(ACTIVE)}},
            {"$set": {"status": "failed", "error": error, "updated_at": t, "finished_at": t},
             "$unset": {"lease_worker": "", "lease_expires_at": ""}},
            return_document=ReturnDocument.AFTER,
        ))

    def stalled(self, grace: timedelta) -> list[Task]:
        """Processing tasks whose lease expired, and pending tasks nobody claimed in time, that
        were not re-enqueued within the grace period."""
        t = now()
        grace_before = t - grace
        # Two queries and a $not, as in claim: with an $or the embedded database reads every
        # task at each sweep.
        not_requeued = {"requeued_at": {"$not": {"$gte": grace_before}}}  # never, or before
        return [task_from_document(doc) for query in (
            {"status": "processing", "lease_expires_at": {"$lt": t}, **not_requeued},
            {"status": "pending", "updated_at": {"$lt": grace_before}, **not_requeued},
        ) for doc in self._tasks.find(query)]

    def files_to_delete(self, retention: timedelta, limit: int = 100) -> list[Task]:
        """Ended tasks whose file has outlived the retention period."""
        return [task_from_document(doc) for doc in self._tasks.find(
            {"file_deleted": False, "finished_at": {"$lt": now() - retention}}).limit(limit)]

    def file_in_use(self, file_id: str) -> bool:
        """Whether a task on the file is pending or processing."""
        return self._tasks.count_documents(
            {"file_id": file_id, "status": {"$in": list(ACTIVE)}}, limit=1) > 0

    def mark_file_deleted(self, task_id: str) -> None:
        self._tasks.update_one({"_id": _key(task_id)},
                               {"$set": {"file_deleted": True, "updated_at": now()}})

    def mark_requeued(self, task_id: str) -> None:
        self._tasks.update_one({"_id": _key(task_id)}, {"$set": {"requeued_at": now()}})

    def rejections(self, task_id: str) -> Iterator[RejectedRow]:
        for doc in self._rejections.find({"task_id": task_id}, {"_id": 0}).sort("line", ASCENDING):
            yield RejectedRow(doc["line"], doc["reason"], doc["raw"])

    def count_rejections(self, task_id: str) -> int:
        return self._rejections.count_documents({"task_id": task_id})

    def _add_rejections(self, task_id: str, rejected: list[RejectedRow], keep: int) -> None:
        """Stores the rows not stored yet, as many as the task has room for under `keep`: the
        first rows by line, since reports come in line order. Rows a replayed batch sends again
        are left out before the rest is cut to the room, or they would take the place of rows
        never stored."""
        if not rejected:
            return
        room = keep - self.count_rejections(task_id)
        if room <= 0:
            return
        lines = [r.line for r in rejected]
        stored = set(self._rejections.distinct("line", {"task_id": task_id,
                                                         "line": {"$in": lines}}))
        new = sorted((r for r in rejected if r.line not in stored), key=lambda r: r.line)[:room]
        if not new:
            return
        try:
            self._rejections.insert_many([{**r, "task_id": task_id} for r in _rows(new)],
                                         ordered=False)
        except BulkWriteError as exc:
            # Rows already recorded by an earlier attempt of the same batch are fine.
            if any(e.get("code") != 11000 for e in exc.details.get("writeErrors", [])):
                raise
