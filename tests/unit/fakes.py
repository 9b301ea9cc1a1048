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
from services.auth.sessions import RefreshToken, Session
from services.auth.user_pages import UserListQuery
from services.catalog.records import Importer, ImportResult, Movie, Provenance
from services.catalog.repository import VOTE_FIELDS, movie_from_document, stored_document
from services.common.errors import NotFound, PermissionDenied, Unavailable
from services.common.ids import random_id
from services.common.tokens import ADMIN_ROLE, USER_ROLE, Caller
from services.ratings.rating_pages import Position as RatingPosition
from services.ratings.records import DOWNVOTE, UPVOTE, Delta, Rating, VoteCounts
from services.recommendations.records import Run
from services.task.records import ACTIVE, NewTask, Progress, RejectedRow, Task, TaskResult
from services.task.repository import SAMPLE_SIZE
from services.task.task_pages import Position, position_of
from services.upload.file_pages import Position as FilePosition
from services.upload.records import RESULT, UploadedFile
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

    def add(self, *, username: str, email: str, name: str, password_hash: bytes,
            role: str = USER_ROLE) -> str:
        if username.lower() in self._users:
            raise UserExists("username")
        if any(u["email"].lower() == email.lower() for u in self._users.values()):
            raise UserExists("email")
        user_id = next(self._ids)
        self._users[username.lower()] = {
            "_id": user_id, "username": username, "username_key": username.lower(),
            "email": email, "name": name, "password_hash": password_hash, "role": role,
            "disabled": False, "created_at": datetime(2024, 5, 1, 12, 0, 0)}
        return user_id

    def add_legacy(self, username: str) -> str:
        """A user stored before roles existed: no `role`, no `disabled`."""
        user_id = self.add(username=username, email=f"{username}@example.com", name=username,
                           password_hash=b"")
        del self._users[username.lower()]["role"], self._users[username.lower()]["disabled"]
        return user_id

    def by_username(self, username: str) -> dict[str, Any] | None:
        return self._users.get(username.lower())

    def by_id(self, user_id: str) -> dict[str, Any] | None:
        return next((u for u in self._users.values() if u["_id"] == user_id), None)

    def make_admin(self, username: str, password_hash: bytes) -> bool:
        user = self.by_username(username)
        if user is None:
            return False
        user.update(password_hash=password_hash, role=ADMIN_ROLE, disabled=False)
        return True

    def update(self, user_id: str, changes: dict[str, Any]) -> dict[str, Any] | None:
        user = self.by_id(user_id)
        if user is None:
            return None
        before = dict(user)
        user.update(changes)
        return before

    def count_enabled_admins(self) -> int:
        return sum(u.get("role") == ADMIN_ROLE and not u.get("disabled")
                   for u in self._users.values())

    def _matching(self, search: str) -> list[dict[str, Any]]:
        return sorted((u for u in self._users.values()
                       if search in u["username_key"] or search in u["email"].lower()),
                      key=lambda u: str(u["username_key"]))

    def page(self, query: UserListQuery) -> list[dict[str, Any]]:
        found = [u for u in self._matching(query.search)
                 if query.after is None or u["username_key"] > query.after]
        return found[query.skip : query.skip + query.limit]

    def count(self, search: str) -> int:
        return len(self._matching(search))


class FakeSessionStore:
    """Sessions and refresh tokens as SessionRepository keeps them (its TTL deletion aside)."""

    def __init__(self) -> None:
        self.sessions: dict[str, Session] = {}
        self.tokens: dict[str, RefreshToken] = {}

    def start(self, session_id: str, user_id: str, now: float, ends_at: float) -> None:
        self.sessions[session_id] = Session(session_id, user_id, ends_at, ended=False)

    def get(self, session_id: str) -> Session | None:
        return self.sessions.get(session_id)

    def end(self, session_id: str, now: float, reason: str) -> bool:
        session = self.sessions.get(session_id)
        if session is None or session.ended:
            return False
        self.sessions[session_id] = replace(session, ended=True)
        return True

    def end_all(self, user_id: str, now: float, reason: str) -> int:
        return sum(self.end(s.id, now, reason) for s in list(self.sessions.values())
                   if s.user_id == user_id)

    def add_token(self, token_hash: str, session_id: str, user_id: str, expires_at: float,
                  keep_until: float) -> None:
        self.tokens[token_hash] = RefreshToken(token_hash, session_id, user_id, expires_at,
                                               used=False)

    def token(self, token_hash: str) -> RefreshToken | None:
        return self.tokens.get(token_hash)

    def use_token(self, token_hash: str, now: float) -> bool:
        token = self.tokens.get(token_hash)
        if token is None or token.used:
            return False
        self.tokens[token_hash] = replace(token, used=True)
        return True


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

    def list_all(self, *, user_id: str, status: str, limit: int, skip: int = 0,
                 after: Position | None = None) -> list[Task]:
        found = [t for t in self._tasks.values()
                 if user_id in ("", t.user_id) and status in ("", t.status) and (
                     after is None or _newest_first(position_of(t)) < _newest_first(after))]
        found.sort(key=lambda t: _newest_first(position_of(t)), reverse=True)
        return found[skip : skip + limit]

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
               rejected: list[RejectedRow], error: str, keep_rejections: int,
               result: TaskResult | None = None) -> Task | None:
        self._add_rejections(task_id, rejected, keep_rejections)
        task, t = self._held(task_id, worker_id), self._clock()
        if task is None:
            return None
        return self._save(replace(
            task, status=status, error=error, updated_at=t, finished_at=t, result=result,
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

    def file_in_use(self, file_id: str) -> bool:
        return any(t.file_id == file_id and t.status in ACTIVE for t in self._tasks.values())

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

    def set_task(self, file_id: str, task_id: str) -> None:
        self.files[file_id] = replace(self.files[file_id], task_id=task_id)

    def list_for_owner(self, owner: str, *, limit: int, skip: int = 0,
                       after: FilePosition | None = None) -> list[UploadedFile]:
        def order(f: UploadedFile) -> tuple[datetime, str]:
            return (f.created_at, f.id)

        mine = [f for f in self.files.values() if f.owner == owner and f.kind != RESULT and (
            after is None or order(f) < (after.created_at, after.file_id))]
        mine.sort(key=order, reverse=True)
        return mine[skip : skip + limit]

    def results_of(self, task_id: str) -> list[UploadedFile]:
        return [f for f in self.files.values()
                if f.task_id == task_id and f.kind == RESULT and not f.deleted]


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

def _equals(value: Any, operand: Any) -> bool:
    """Mongo's equality: an array matches a value it holds."""
    return value == operand or (isinstance(value, list) and operand in value)


def _matches(doc: dict[str, Any], query: dict[str, Any]) -> bool:
    """The part of Mongo's query language the catalog uses: equality (None also matches a
    missing field; an array matches each of its elements), $gt, $lt (never true for null),
    $ne, $all (on arrays) and $nor."""
    for field, condition in query.items():
        if field == "$nor":
            if any(_matches(doc, clause) for clause in condition):
                return False
            continue
        value = doc.get(field)
        if not isinstance(condition, dict):
            if not _equals(value, condition):
                return False
            continue
        for op, operand in condition.items():
            if op == "$ne":
                ok = not _equals(value, operand)
            elif op in ("$gt", "$lt"):
                ok = value is not None and (value > operand if op == "$gt" else value < operand)
            elif op == "$all":
                ok = isinstance(value, list) and bool(operand) and all(o in value
                                                                       for o in operand)
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

    def __init__(self, clock: Clock | None = None) -> None:
        self._docs: dict[str, dict[str, Any]] = {}
        self._clock = clock or Clock()

    def import_many(self, movies: list[Movie], importer: Importer) -> ImportResult:
        inserted = replaced = 0
        skipped: dict[str, str] = {}
        for movie in movies:
            stored = self._docs.get(movie.id)
            owner = stored.get("imported_by_id") if stored else None
            if stored is not None and owner not in (None, importer.user_id) \
                    and not importer.is_admin:
                skipped[movie.id] = stored.get("imported_by") or ""
                continue
            # An administrator's replace keeps the owner; anyone else's import makes it theirs.
            kept = stored if stored is not None and owner is not None else None
            provenance = Provenance(
                imported_by_id=kept["imported_by_id"] if kept else importer.user_id,
                imported_by=kept["imported_by"] if kept else importer.username,
                updated_at=self._clock(), updated_by=importer.username)
            # As the repository's $set: fields kept beside the movie (its votes) stay, and a
            # movie without counts gets zeros ($inc by 0).
            beside = {k: v for k, v in (stored or {}).items() if k != "extra"}
            doc = {**beside, **stored_document(replace(movie, provenance=provenance))}
            for name in VOTE_FIELDS:
                doc.setdefault(name, 0)
            self._docs[movie.id] = doc
            replaced += stored is not None
            inserted += stored is None
        return ImportResult(inserted, replaced, skipped)

    def delete(self, movie_id: str) -> bool:
        return self._docs.pop(movie_id, None) is not None

    def put_document(self, doc: dict[str, Any]) -> None:
        """Stores a document as it is, for tests of what older versions stored."""
        self._docs[doc["_id"]] = doc

    def find_page(self, query: dict[str, Any], sort: list[tuple[str, int]], skip: int,
                  limit: int, then: dict[str, Any] | None = None) -> list[Movie]:
        docs = self._found(query, then)
        for field, direction in reversed(sort):  # stable sorts, last key first
            docs.sort(key=_mongo_order(field), reverse=direction < 0)
        return [movie_from_document(d) for d in docs[skip : skip + limit]]

    def _found(self, query: dict[str, Any], then: dict[str, Any] | None
               ) -> list[dict[str, Any]]:
        return [d for d in self._docs.values() if _matches(d, query) and _matches(d, then or {})]

    def count(self, query: dict[str, Any], then: dict[str, Any] | None = None) -> int:
        return len(self._found(query, then))

    def vote_counts(self, movie_ids: list[str]) -> dict[str, tuple[int, int]]:
        return {i: (self._docs[i].get("upvotes") or 0, self._docs[i].get("downvotes") or 0)
                for i in movie_ids if i in self._docs}

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


# --- ratings ------------------------------------------------------------------------------------

class FakeRatings:
    """Ratings by id; one per (user, movie), and conditional changes, as RatingRepository."""

    def __init__(self) -> None:
        self.ratings: dict[str, Rating] = {}

    def insert(self, rating: Rating) -> bool:
        if rating.id in self.ratings or self.find(rating.user_id, rating.movie_id):
            return False
        self.ratings[rating.id] = rating
        return True

    def get(self, rating_id: str) -> Rating | None:
        return self.ratings.get(rating_id)

    def find(self, user_id: str, movie_id: str) -> Rating | None:
        return next((r for r in self.ratings.values()
                     if r.user_id == user_id and r.movie_id == movie_id), None)

    def _mine(self, user_id: str, movie_id: str) -> list[Rating]:
        return [r for r in self.ratings.values()
                if r.user_id == user_id and movie_id in ("", r.movie_id)]

    def list_for_user(self, user_id: str, *, movie_id: str, limit: int, skip: int = 0,
                      after: RatingPosition | None = None) -> list[Rating]:
        mine = [r for r in self._mine(user_id, movie_id)
                if after is None or (r.created_ns, r.id) < (after.created_ns, after.rating_id)]
        mine.sort(key=lambda r: (r.created_ns, r.id), reverse=True)
        return mine[skip : skip + limit]

    def count_for_user(self, user_id: str, *, movie_id: str) -> int:
        return len(self._mine(user_id, movie_id))

    def recently_changed(self, user_id: str, limit: int) -> list[Rating]:
        mine = sorted(self._mine(user_id, ""), key=lambda r: (r.updated_at, r.id), reverse=True)
        return mine[:limit]

    def _as_stored(self, rating: Rating) -> bool:
        stored = self.ratings.get(rating.id)
        return stored is not None and (stored.rating_type, stored.updated_at) == \
            (rating.rating_type, rating.updated_at)

    def change_type(self, rating: Rating, new_type: str, at: datetime) -> Rating | None:
        if not self._as_stored(rating):
            return None
        changed = self.ratings[rating.id] = replace(self.ratings[rating.id],
                                                    rating_type=new_type, updated_at=at)
        return changed

    def delete(self, rating_id: str, user_id: str) -> Rating | None:
        rating = self.ratings.get(rating_id)
        if rating is None or rating.user_id != user_id:
            return None
        return self.ratings.pop(rating_id)

    def remove(self, rating: Rating) -> bool:
        return self._as_stored(rating) and self.ratings.pop(rating.id) is not None

    def delete_for_movie(self, movie_id: str) -> int:
        gone = [r.id for r in self.ratings.values() if r.movie_id == movie_id]
        for rating_id in gone:
            del self.ratings[rating_id]
        return len(gone)

    def tally(self, movie_id: str) -> tuple[int, int]:
        types = [r.rating_type for r in self.ratings.values() if r.movie_id == movie_id]
        return types.count(UPVOTE), types.count(DOWNVOTE)

    def latest_change(self, movie_id: str) -> datetime | None:
        return max((r.updated_at for r in self.ratings.values() if r.movie_id == movie_id),
                   default=None)

    def changed_since(self, cursor: tuple[datetime, str], until: datetime, limit: int
                      ) -> list[tuple[datetime, str, str]]:
        changed = sorted((r.updated_at, r.id, r.movie_id) for r in self.ratings.values()
                         if cursor < (r.updated_at, r.id) and r.updated_at < until)
        return changed[:limit]


class FakeCounts:
    """Counts by movie id, each change one version more, as CountRepository."""

    def __init__(self) -> None:
        self.counts: dict[str, VoteCounts] = {}

    def apply(self, movie_id: str, delta: Delta, at: datetime) -> VoteCounts:
        old = self.counts.get(movie_id, VoteCounts(movie_id=movie_id))
        upvotes, downvotes = old.upvotes + delta.upvotes, old.downvotes + delta.downvotes
        # The repository's second step when a count went below zero: held at zero, one more
        # version.
        extra = int(upvotes < 0 or downvotes < 0)
        new = self.counts[movie_id] = replace(
            old, upvotes=max(upvotes, 0), downvotes=max(downvotes, 0),
            version=old.version + 1 + extra, updated_at=at)
        return new

    def get(self, movie_id: str) -> VoteCounts | None:
        return self.counts.get(movie_id)

    def mark_synced(self, movie_id: str, version: int) -> None:
        counts = self.counts.get(movie_id)
        if counts is not None and counts.version == version:
            self.counts[movie_id] = replace(counts, synced_version=version)

    def unsynced(self, limit: int) -> list[VoteCounts]:
        return [c for c in self.counts.values() if c.synced_version < c.version][:limit]

    def after(self, movie_id: str, limit: int) -> list[VoteCounts]:
        return [self.counts[m] for m in sorted(self.counts) if m > movie_id][:limit]

    def correct(self, movie_id: str, version: int, upvotes: int, downvotes: int,
                at: datetime) -> VoteCounts | None:
        old = self.counts.get(movie_id, VoteCounts(movie_id=movie_id))
        if old.version != version:
            return None
        new = self.counts[movie_id] = replace(old, upvotes=upvotes, downvotes=downvotes,
                                              version=version + 1, updated_at=at)
        return new

    def delete(self, movie_id: str) -> None:
        self.counts.pop(movie_id, None)


class FakeCatalog:
    """The catalog as the ratings service sees it: which movies exist, and the counts it shows
    (those of the highest version it was told)."""

    def __init__(self, movie_ids: list[str]) -> None:
        self.shown: dict[str, VoteCounts | None] = dict.fromkeys(movie_ids)
        self.down = False  # every call fails
        self.counts_fail = False  # set_counts fails (the catalog went away after the check)
        # The next this many set_counts apply the counts, then fail as a deadline does when
        # the catalog is merely slow.
        self.answers_late = 0
        self.checks = 0

    def existing(self, movie_ids: list[str]) -> set[str]:
        self.checks += 1
        if self.down:
            raise Unavailable("the catalog cannot be reached (UNAVAILABLE)")
        return {m for m in movie_ids if m in self.shown}

    def set_counts(self, counts: VoteCounts) -> None:
        if self.down or self.counts_fail:
            raise Unavailable("the catalog cannot be reached (DEADLINE_EXCEEDED)")
        if counts.movie_id not in self.shown:
            raise NotFound(f"no movie with id {counts.movie_id!r}")
        held = self.shown[counts.movie_id]
        if held is None or held.version < counts.version:
            self.shown[counts.movie_id] = counts
        if self.answers_late:
            self.answers_late -= 1
            raise Unavailable("the catalog cannot be reached (DEADLINE_EXCEEDED)")

    def votes(self, movie_id: str) -> tuple[int, int]:
        held = self.shown[movie_id]
        return (0, 0) if held is None else (held.upvotes, held.downvotes)


# --- recommendations ---------------------------------------------------------------------------

class FakePreferences:
    def __init__(self) -> None:
        self.stored: dict[str, tuple[dict[str, Any], int]] = {}

    def get(self, user_id: str) -> tuple[dict[str, Any], int]:
        return self.stored.get(user_id, ({}, 0))

    def save(self, user_id: str, preferences: dict[str, Any]) -> int:
        version = self.get(user_id)[1] + 1
        self.stored[user_id] = (dict(preferences), version)
        return version


class FakeRuns:
    def __init__(self) -> None:
        self.runs: dict[str, Run] = {}

    def insert(self, run: Run) -> None:
        self.runs[run.id] = run

    def get(self, run_id: str) -> Run | None:
        return self.runs.get(run_id)

    def by_task(self, task_id: str) -> Run | None:
        return next((r for r in self.runs.values() if r.task_id == task_id), None)

    def set_task(self, run_id: str, task_id: str) -> None:
        self.runs[run_id] = replace(self.runs[run_id], task_id=task_id)

    def delete(self, run_id: str) -> None:
        self.runs.pop(run_id, None)

    def start(self, run_id: str) -> Run | None:
        run = self.runs.get(run_id)
        if run is not None and run.status == "queued":
            run = self.runs[run_id] = replace(run, status="processing")
        return run

    def finish(self, run_id: str, recommendations: list[dict[str, Any]], error: str) -> None:
        run = self.runs[run_id]
        if run.status != "completed":
            self.runs[run_id] = replace(run, status="failed" if error else "completed",
                                        recommendations=recommendations, error=error)


class FakeResults:
    """ResultCache's contract: results by key, and claims set only when absent."""

    def __init__(self) -> None:
        self.results: dict[str, list[dict[str, Any]]] = {}
        self.claims: dict[str, str] = {}

    def get(self, key: str) -> list[dict[str, Any]] | None:
        return self.results.get(key)

    def put(self, key: str, recommendations: list[dict[str, Any]]) -> None:
        self.results[key] = recommendations

    def claim(self, key: str, run_id: str) -> bool:
        return self.claims.setdefault(key, run_id) == run_id

    def claimant(self, key: str) -> str | None:
        return self.claims.get(key)

    def release(self, key: str, run_id: str) -> None:
        if self.claims.get(key) == run_id:
            del self.claims[key]


class FakePeers:
    """The versions of the user's votes and of the catalog, and the tasks created."""

    def __init__(self) -> None:
        self.votes: dict[str, str] = {}
        self.catalog = 0
        self.tasks: list[tuple[str, str]] = []  # (task id, run id)

    def votes_version(self, user_id: str) -> str:
        return self.votes.get(user_id, "0:-")

    def catalog_version(self) -> int:
        return self.catalog

    def create_task(self, user_id: str, username: str, run_id: str) -> str:
        task_id = f"task{len(self.tasks) + 1}"
        self.tasks.append((task_id, run_id))
        return task_id
