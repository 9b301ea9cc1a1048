"""In-memory stand-ins for the repositories (and the upload storage and the Redis client) that
the use cases run on in the unit tests. Each keeps what the real one keeps and follows the same
rules (the Protocols beside the use cases), so a test can check behaviour, not calls."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from services.auth.repository import UserExists
from services.catalog.records import Movie
from services.catalog.repository import movie_document, movie_from_document
from services.common.errors import PermissionDenied
from services.common.ids import random_id
from services.common.tokens import Caller
from services.task.records import ACTIVE, NewTask, Progress, RejectedRow, Task
from services.task.repository import SAMPLE_SIZE
from services.task.task_pages import Position, position_of
from services.upload.records import UploadedFile
from services.upload.storage import Writer


class Clock:
    """The time the fakes stamp records with; tests move it instead of sleeping."""

    def __init__(self, start: datetime = datetime(2024, 5, 1, 12, 0, 0)) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def _object_ids() -> Iterator[str]:
    """Ids shaped like Mongo's, increasing like them."""
    return (f"{n:024x}" for n in itertools.count(1))


# --- auth ---------------------------------------------------------------------------------------

class FakeUsers:
    def __init__(self) -> None:
        self._users: dict[str, dict[str, Any]] = {}  # by username, lower case
        self._ids = _object_ids()

    def add(self, *, username: str, email: str, name: str, password_hash: bytes) -> str:
        if username.lower() in self._users:
            raise UserExists("username")
        if any(u["email"].lower() == email.lower() for u in self._users.values()):
            raise UserExists("email")
        user_id = next(self._ids)
        self._users[username.lower()] = {"_id": user_id, "username": username, "email": email,
                                         "name": name, "password_hash": password_hash}
        return user_id

    def by_username(self, username: str) -> dict[str, Any] | None:
        return self._users.get(username.lower())

    def by_id(self, user_id: str) -> dict[str, Any] | None:
        return next((u for u in self._users.values() if u["_id"] == user_id), None)


class FakeFailedLogins:
    """Failure records by key, forgotten as LoginFailureRepository forgets them."""

    def __init__(self) -> None:
        self.records: dict[str, dict[str, float]] = {}

    def locked_until(self, key: str) -> float | None:
        return self.records.get(key, {}).get("locked_until")

    def add_failure(self, key: str, now: float, forget_at: float) -> int:
        record = self.records.get(key)
        if record is None or record["forget_at"] < now:
            record = self.records[key] = {"failures": 0, "forget_at": forget_at}
        record["failures"] += 1
        record["forget_at"] = max(record["forget_at"], forget_at)
        return int(record["failures"])

    def lock(self, key: str, until: float, forget_at: float) -> None:
        record = self.records.get(key)
        if record is None:  # cleared meanwhile by a login that got in
            return
        record["locked_until"] = max(record.get("locked_until", until), until)
        record["forget_at"] = max(record["forget_at"], forget_at)

    def clear(self, key: str) -> None:
        self.records.pop(key, None)


# --- task ---------------------------------------------------------------------------------------

def _newest_first(position: Position) -> tuple[datetime, bool, int, str]:
    """A sort key for the repository's order, descending: created_at, then created_ns (none
    lowest, as Mongo sorts null), then the id."""
    return (position.created_at, position.created_ns is not None, position.created_ns or 0,
            position.task_id)


class FakeTasks:
    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._tasks: dict[str, Task] = {}  # in the order they were created
        self._rejections: dict[str, dict[int, RejectedRow]] = {}
        self._created_ns = itertools.count(1)  # counts up, as time.time_ns() does

    def _save(self, task: Task) -> Task:
        self._tasks[task.id] = task
        return task

    def _held(self, task_id: str, worker_id: str) -> Task | None:
        task = self._tasks.get(task_id)
        if task is None or task.status != "processing" or task.lease_worker != worker_id:
            return None
        return task

    def _add_rejections(self, task_id: str, rejected: list[RejectedRow], keep: int) -> None:
        rows = self._rejections.setdefault(task_id, {})
        # One row per line (a replayed batch adds nothing), the lowest lines while there is room.
        for row in sorted(rejected, key=lambda r: r.line):
            if row.line not in rows and len(rows) < keep:
                rows[row.line] = row

    def create(self, new: NewTask) -> Task:
        t = self._clock()
        return self._save(Task(id=random_id(), created_at=t, updated_at=t,
                               created_ns=next(self._created_ns), **asdict(new)))

    def get(self, task_id: str) -> Task | None:
        return self._tasks.get(task_id)

    def list_for_user(self, user_id: str, *, limit: int, skip: int = 0,
                      after: Position | None = None) -> list[Task]:
        mine = [t for t in self._tasks.values() if t.user_id == user_id and (
            after is None or _newest_first(position_of(t)) < _newest_first(after))]
        mine.sort(key=lambda t: _newest_first(position_of(t)), reverse=True)
        return mine[skip : skip + limit]

    def count_active(self, user_id: str) -> int:
        return sum(t.user_id == user_id and t.status in ACTIVE for t in self._tasks.values())

    def claim(self, task_id: str, worker_id: str, lease_seconds: int) -> Task | None:
        task, t = self._tasks.get(task_id), self._clock()
        if task is None or task.status not in ACTIVE:
            return None
        expired = task.lease_expires_at is not None and task.lease_expires_at < t
        if task.lease_worker not in (None, worker_id) and not expired:
            return None
        return self._save(replace(
            task, status="processing", lease_worker=worker_id,
            lease_expires_at=t + timedelta(seconds=lease_seconds), updated_at=t,
            attempts=task.attempts + 1, started_at=min(task.started_at or t, t)))

    def report(self, task_id: str, worker_id: str, progress: Progress,
               rejected: list[RejectedRow], lease_seconds: int,
               keep_rejections: int) -> Task | None:
        self._add_rejections(task_id, rejected, keep_rejections)
        task, t = self._held(task_id, worker_id), self._clock()
        if task is None:
            return None
        return self._save(replace(
            task, progress=progress, updated_at=t,
            lease_expires_at=t + timedelta(seconds=lease_seconds),
            rejected_sample=(*task.rejected_sample, *rejected)[:SAMPLE_SIZE]))

    def finish(self, task_id: str, worker_id: str, status: str, progress: Progress | None,
               rejected: list[RejectedRow], error: str, keep_rejections: int) -> Task | None:
        self._add_rejections(task_id, rejected, keep_rejections)
        task, t = self._held(task_id, worker_id), self._clock()
        if task is None:
            return None
        return self._save(replace(
            task, status=status, error=error, updated_at=t, finished_at=t,
            progress=task.progress if progress is None else progress,
            lease_worker=None, lease_expires_at=None,
            rejected_sample=(*task.rejected_sample, *rejected)[:SAMPLE_SIZE]))

    def request_cancel(self, task_id: str) -> Task | None:
        task, t = self._tasks.get(task_id), self._clock()
        if task is not None and task.status == "pending":
            return self._save(replace(task, status="cancelled", cancel_requested=True,
                                      updated_at=t, finished_at=t))
        if task is not None and task.status == "processing":
            return self._save(replace(task, cancel_requested=True, updated_at=t))
        return None

    def fail(self, task_id: str, error: str) -> Task | None:
        task, t = self._tasks.get(task_id), self._clock()
        if task is None or task.status not in ACTIVE:
            return None
        return self._save(replace(task, status="failed", error=error, updated_at=t,
                                  finished_at=t, lease_worker=None, lease_expires_at=None))

    def stalled(self, grace: timedelta) -> list[Task]:
        t = self._clock()
        before = t - grace

        def lost(task: Task) -> bool:
            if task.status == "processing":
                return task.lease_expires_at is not None and task.lease_expires_at < t
            return task.status == "pending" and task.updated_at < before

        return [task for task in self._tasks.values()
                if lost(task) and (task.requeued_at is None or task.requeued_at < before)]

    def files_to_delete(self, retention: timedelta, limit: int = 100) -> list[Task]:
        before = self._clock() - retention
        return [task for task in self._tasks.values() if not task.file_deleted
                and task.finished_at is not None and task.finished_at < before][:limit]

    def mark_file_deleted(self, task_id: str) -> None:
        self._save(replace(self._tasks[task_id], file_deleted=True, updated_at=self._clock()))

    def mark_requeued(self, task_id: str) -> None:
        self._save(replace(self._tasks[task_id], requeued_at=self._clock()))

    def rejections(self, task_id: str) -> Iterator[RejectedRow]:
        rows = self._rejections.get(task_id, {})
        return iter([rows[line] for line in sorted(rows)])

    def count_rejections(self, task_id: str) -> int:
        return len(self._rejections.get(task_id, {}))


# --- upload -------------------------------------------------------------------------------------

class FakeFiles:
    def __init__(self) -> None:
        self.files: dict[str, UploadedFile] = {}

    def add(self, file: UploadedFile) -> None:
        self.files[file.id] = file

    def get(self, file_id: str) -> UploadedFile | None:
        return self.files.get(file_id)

    def mark_deleted(self, file_id: str) -> UploadedFile | None:
        if file_id in self.files:
            self.files[file_id] = replace(self.files[file_id], deleted=True)
        return self.files.get(file_id)

    def stored_bytes(self, owner: str) -> int:
        return sum(f.size_bytes for f in self.files.values()
                   if f.owner == owner and not f.deleted)


@dataclass
class _Slot:
    owner: str
    lease: str
    expires_at: datetime


class FakeSlotStore:
    """Upload slots by id, held under leases that end with the clock, as in
    UploadSlotRepository. Several UploadSlots over one store are several upload replicas."""

    def __init__(self) -> None:
        self.slots: dict[str, _Slot] = {}

    def try_take(self, slot_id: str, owner: str, lease: str, until: datetime,
                 now: datetime) -> bool:
        held = self.slots.get(slot_id)
        if held is not None and held.expires_at > now:
            return False
        self.slots[slot_id] = _Slot(owner, lease, until)
        return True

    def count_held(self, slot_ids: list[str], now: datetime) -> int:
        return sum(i in self.slots and self.slots[i].expires_at > now for i in slot_ids)

    def renew(self, leases: list[str], until: datetime) -> None:
        for slot in self.slots.values():
            if slot.lease in leases:
                slot.expires_at = until

    def release(self, lease: str) -> None:
        self.slots = {i: s for i, s in self.slots.items() if s.lease != lease}


class FakeStorage:
    """Files by name; a writer's bytes appear only when it commits, as with the real ones."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.open_writers = 0

    def writer(self, name: str) -> Writer:
        return _FakeWriter(self, name)

    def read(self, name: str, offset: int = 0) -> Iterator[bytes]:
        yield self.files[name][offset:]

    def delete(self, name: str) -> None:
        self.files.pop(name, None)

    def sweep_orphans(self, grace_seconds: float) -> int:
        return 0


class _FakeWriter:
    def __init__(self, storage: FakeStorage, name: str) -> None:
        self._storage = storage
        self._name = name
        self._data = bytearray()
        storage.open_writers += 1

    def write(self, data: bytes) -> None:
        self._data += data

    def commit(self) -> None:
        self._storage.files[self._name] = bytes(self._data)
        self._storage.open_writers -= 1

    def abort(self) -> None:
        self._storage.open_writers -= 1


# --- catalog ------------------------------------------------------------------------------------

def _matches(doc: dict[str, Any], query: dict[str, Any]) -> bool:
    """The part of Mongo's query language the catalog uses: equality (None also matches a
    missing field), and $gt, $lt (never true for null) and $ne."""
    for field, condition in query.items():
        value = doc.get(field)
        if not isinstance(condition, dict):
            if value != condition:
                return False
            continue
        for op, operand in condition.items():
            if op == "$ne":
                ok = value != operand
            elif op in ("$gt", "$lt"):
                ok = value is not None and (value > operand if op == "$gt" else value < operand)
            else:
                raise NotImplementedError(f"the fake does not know {op}")
            if not ok:
                return False
    return True


def _mongo_order(field: str) -> Callable[[dict[str, Any]], tuple[bool, Any]]:
    """A sort key for one field in Mongo's order: null (or missing) before any value."""
    return lambda doc: (doc.get(field) is not None, doc.get(field))


class FakeMovies:
    """Movies kept in their stored form, queried and sorted the way Mongo does it (null lowest),
    so the catalog's own filters, keyset clauses and pages run unchanged."""

    def __init__(self) -> None:
        self._docs: dict[str, dict[str, Any]] = {}

    def upsert_many(self, movies: list[Movie]) -> tuple[int, int]:
        inserted = replaced = 0
        for movie in movies:
            if movie.id in self._docs:
                replaced += 1
            else:
                inserted += 1
            self._docs[movie.id] = movie_document(movie)
        return inserted, replaced

    def find_page(self, query: dict[str, Any], sort: list[tuple[str, int]], skip: int,
                  limit: int) -> list[Movie]:
        docs = [d for d in self._docs.values() if _matches(d, query)]
        for field, direction in reversed(sort):  # stable sorts, last key first
            docs.sort(key=_mongo_order(field), reverse=direction < 0)
        return [movie_from_document(d) for d in docs[skip : skip + limit]]

    def count(self, query: dict[str, Any]) -> int:
        return sum(_matches(d, query) for d in self._docs.values())

    def get(self, movie_id: str) -> Movie | None:
        doc = self._docs.get(movie_id)
        return None if doc is None else movie_from_document(doc)

    def existing(self, movie_ids: list[str]) -> list[str]:
        return [m for m in movie_ids if m in self._docs]

    def stored(self, movie_id: str) -> dict[str, Any]:
        """The stored document, for tests to look at."""
        return self._docs[movie_id]

    def set_vote_counts(self, movie_id: str, upvotes: int, downvotes: int, version: int
                        ) -> bool | None:
        doc = self._docs.get(movie_id)
        if doc is None:
            return None
        if doc.get("votes_version", 0) >= version:
            return False
        doc.update(upvotes=upvotes, downvotes=downvotes, score=upvotes - downvotes,
                   votes_version=version)
        return True


class FakeRedis:
    """The three Redis commands the catalog's query cache uses."""

    def __init__(self) -> None:
        self.values: dict[str, bytes] = {}

    def get(self, key: str) -> bytes | None:
        return self.values.get(key)

    def set(self, key: str, value: bytes, ex: int) -> None:
        self.values[key] = value

    def incr(self, key: str) -> int:
        self.values[key] = str(int(self.values.get(key, b"0")) + 1).encode()
        return int(self.values[key])


def no_admins(caller: Caller) -> None:
    """An AccessInterceptor's admin check for servers whose tests call no admin method."""
    raise PermissionDenied(f"{caller.username} is not an administrator here")
