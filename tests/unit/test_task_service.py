"""TaskService on an in-memory repository: ownership, leases, progress, cancel, the stall sweep
and file retention."""

from __future__ import annotations

import base64
import itertools
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from bson import ObjectId
from hypothesis import given, settings
from hypothesis import strategies as st

from services.common.errors import (
    FailedPrecondition,
    InvalidArgument,
    LimitReached,
    NotFound,
    PermissionDenied,
)
from services.common.ids import random_id
from services.task.records import NewTask, Progress, RejectedRow, Task
from services.task.repository import SAMPLE_SIZE, _key
from services.task.service import TaskLimits, TaskService
from services.task.task_pages import Position, decode_token, encode_token
from tests.unit.fakes import Clock, FakeTasks

LEASE = 30
RETENTION = 3600
PENDING = 5
KEEP = 30  # rejected rows stored per task
PAGE_DEFAULT, PAGE_MAX = 10, 20


@dataclass
class World:
    clock: Clock = field(default_factory=Clock)
    enqueued: list[tuple[str, str]] = field(default_factory=list)  # (kind, task id)
    deleted_files: list[str] = field(default_factory=list)
    broker_down: bool = False

    def __post_init__(self) -> None:
        self.tasks = FakeTasks(self.clock)
        self.service = TaskService(self.tasks, self._enqueue, self.deleted_files.append,
                                   lease_seconds=LEASE, file_retention_seconds=RETENTION,
                                   max_attempts=3,
                                   limits=TaskLimits(pending_per_user=PENDING,
                                                     stored_rejections=KEEP,
                                                     list_default=PAGE_DEFAULT,
                                                     list_max=PAGE_MAX))

    def _enqueue(self, kind: str, task_id: str) -> None:
        if self.broker_down:
            raise ConnectionError("broker unreachable")
        self.enqueued.append((kind, task_id))

    def create(self, user_id: str = "u1", username: str = "alice", file_id: str = "f1") -> Task:
        return self.service.create(NewTask(
            user_id=user_id, username=username, kind="ingest_csv", file_id=file_id,
            file_path=f"{file_id}.csv", original_name="movies.csv", bytes_total=1000))

    def claimed(self, worker: str = "w1") -> Task:
        task = self.create()
        return self.service.claim(task.id, worker)


@pytest.fixture
def world() -> World:
    return World()


# --- create, read, ownership --------------------------------------------------------------------

def test_create_stores_a_pending_task_for_its_owner_and_enqueues_its_job(world: World) -> None:
    task = world.create(user_id="u1", username="alice")
    assert (task.status, task.user_id, task.username) == ("pending", "u1", "alice")
    assert (task.attempts, task.progress, task.rejected_sample) == (0, Progress(), ())
    assert world.enqueued == [("ingest_csv", task.id)]
    assert world.service.get(task.id, "u1") == task


@pytest.mark.parametrize("missing", ["user_id", "kind", "file_id"])
def test_create_needs_an_owner_a_kind_and_a_file(world: World, missing: str) -> None:
    fields = {"user_id": "u1", "username": "alice", "kind": "ingest_csv", "file_id": "f1",
              "file_path": "f1.csv", "original_name": "m.csv", "bytes_total": 1,
              missing: ""}
    with pytest.raises(InvalidArgument, match="user, kind and file_id are required"):
        world.service.create(NewTask(**fields))  # type: ignore[arg-type]
    assert world.service.list_tasks("u1").tasks == []
    assert world.enqueued == []


def test_a_task_whose_job_could_not_be_enqueued_stays_pending_for_the_sweep(world: World
                                                                            ) -> None:
    world.broker_down = True
    task = world.create()
    assert world.service.get(task.id, "u1").status == "pending"
    world.broker_down = False
    world.clock.advance(61)
    assert world.service.sweep(grace_seconds=60) == 1
    assert world.enqueued == [("ingest_csv", task.id)]


def test_only_the_owner_may_read_a_task_whatever_the_name_on_it(world: World) -> None:
    task = world.create(user_id="u1", username="alice")
    with pytest.raises(PermissionDenied):
        world.service.get(task.id, "u2")
    with pytest.raises(PermissionDenied):
        world.service.get(task.id, "alice")  # the username is for display, not for access
    with pytest.raises(PermissionDenied):
        world.service.rejections(task.id, "u2")
    with pytest.raises(NotFound, match="no task with id 'nope'"):
        world.service.get("nope", "u1")


def test_list_shows_the_callers_tasks_newest_first(world: World) -> None:
    first = world.create(user_id="u1", file_id="a")
    world.clock.advance(1)
    world.create(user_id="u2", file_id="b")
    world.clock.advance(1)
    second = world.create(user_id="u1", file_id="c")
    assert [t.id for t in world.service.list_tasks("u1").tasks] == [second.id, first.id]
    assert world.service.list_tasks("u3").tasks == []


def test_tasks_created_in_the_same_instant_still_list_newest_first(world: World) -> None:
    created = [world.create(user_id="u1", file_id=f"f{n}") for n in range(5)]
    assert [t.id for t in world.service.list_tasks("u1").tasks] == \
        [t.id for t in reversed(created)]


def test_task_ids_are_random_not_counted(world: World) -> None:
    ids = [world.create(user_id=f"u{n}", file_id=f"f{n}").id for n in range(20)]
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    assert len(set(ids)) == len(ids)
    assert all(abs(int(a, 16) - int(b, 16)) > 2**64 for a, b in itertools.pairwise(ids))


def test_ids_of_tasks_stored_before_random_ids_still_find_them() -> None:
    old = "6632a1f0c2a4b5d6e7f80912"  # an ObjectId's 24 hex digits
    assert _key(old) == ObjectId(old)
    new = random_id()
    assert _key(new) == new
    for garbage in ("", "nope", "x" * 5000, "6632a1f0c2a4b5d6e7f8091z"):
        assert _key(garbage) == garbage  # looked up as it is, found nowhere: 404


# --- leases -------------------------------------------------------------------------------------

def test_claim_makes_the_task_processing_under_the_workers_lease(world: World) -> None:
    task = world.claimed("w1")
    assert (task.status, task.lease_worker, task.attempts) == ("processing", "w1", 1)
    assert task.started_at == world.clock.now
    assert task.lease_expires_at is not None
    assert (task.lease_expires_at - world.clock.now).total_seconds() == LEASE


def test_a_live_lease_keeps_other_workers_out_but_not_its_holder(world: World) -> None:
    task = world.claimed("w1")
    world.clock.advance(LEASE - 1)
    with pytest.raises(FailedPrecondition, match="held by worker w1"):
        world.service.claim(task.id, "w2")
    again = world.service.claim(task.id, "w1")  # a redelivery to the same worker resumes
    assert (again.lease_worker, again.attempts) == ("w1", 2)


def test_an_expired_lease_passes_to_the_next_worker_who_keeps_the_first_start(world: World
                                                                              ) -> None:
    task = world.claimed("w1")
    started = task.started_at
    world.clock.advance(LEASE + 1)
    taken = world.service.claim(task.id, "w2")
    assert (taken.lease_worker, taken.attempts, taken.started_at) == ("w2", 2, started)
    with pytest.raises(FailedPrecondition, match="lease lost"):
        world.service.report(task.id, "w1", Progress(rows_read=1), [])


def test_an_ended_or_unknown_task_cannot_be_claimed(world: World) -> None:
    task = world.claimed("w1")
    world.service.finish(task.id, "w1", "done", None, [], "")
    with pytest.raises(FailedPrecondition, match="task already ended: done"):
        world.service.claim(task.id, "w1")
    with pytest.raises(NotFound):
        world.service.claim("nope", "w1")


def test_reports_replace_the_progress_and_renew_the_lease(world: World) -> None:
    task = world.claimed("w1")
    world.clock.advance(LEASE - 5)
    reported = world.service.report(task.id, "w1", Progress(10, 9, 1, 500),
                                    [RejectedRow(3, "title is empty", ",,")])
    assert reported.progress == Progress(rows_read=10, rows_imported=9, rows_rejected=1,
                                         bytes_processed=500)
    assert reported.lease_expires_at is not None
    assert (reported.lease_expires_at - world.clock.now).total_seconds() == LEASE
    world.clock.advance(LEASE - 5)  # past the first lease, within the renewed one
    with pytest.raises(FailedPrecondition, match="held by worker w1"):
        world.service.claim(task.id, "w2")


def test_rejections_keep_every_row_once_and_the_task_a_sample(world: World) -> None:
    task = world.claimed("w1")
    rows = [RejectedRow(line, f"bad {line}", "x") for line in range(2, 2 + SAMPLE_SIZE + 5)]
    world.service.report(task.id, "w1", Progress(rows_read=30), rows[15:])
    world.service.report(task.id, "w1", Progress(rows_read=30), rows[:15])
    world.service.report(task.id, "w1", Progress(rows_read=30), rows[:3])  # a replayed batch
    shown = world.service.get(task.id, "u1")
    assert len(shown.rejected_sample) == SAMPLE_SIZE
    assert list(world.service.rejections(task.id, "u1").rows) == rows


def test_finish_ends_the_task_releases_the_lease_and_may_keep_the_counts(world: World) -> None:
    task = world.claimed("w1")
    world.service.report(task.id, "w1", Progress(rows_read=7, bytes_processed=70), [])
    with pytest.raises(InvalidArgument, match="status must be one of done, failed, cancelled"):
        world.service.finish(task.id, "w1", "processing", None, [], "")
    ended = world.service.finish(task.id, "w1", "failed", None, [], "the catalog refused it")
    assert (ended.status, ended.error, ended.lease_worker) == ("failed", "the catalog refused it",
                                                               None)
    assert ended.progress == Progress(rows_read=7, bytes_processed=70)
    assert ended.finished_at == world.clock.now
    with pytest.raises(FailedPrecondition, match="lease lost"):
        world.service.finish(task.id, "w1", "done", Progress(), [], "")


# --- cancel and watch ---------------------------------------------------------------------------

def test_cancelling_a_pending_task_ends_it_at_once(world: World) -> None:
    task = world.create()
    cancelled = world.service.cancel(task.id, "u1")
    assert (cancelled.status, cancelled.cancel_requested) == ("cancelled", True)
    with pytest.raises(FailedPrecondition, match="task already ended: cancelled"):
        world.service.cancel(task.id, "u1")
    with pytest.raises(FailedPrecondition, match="task already ended"):
        world.service.claim(task.id, "w1")


def test_cancelling_a_processing_task_asks_its_worker_to_stop(world: World) -> None:
    task = world.claimed("w1")
    with pytest.raises(PermissionDenied):
        world.service.cancel(task.id, "u2")
    asked = world.service.cancel(task.id, "u1")
    assert (asked.status, asked.cancel_requested) == ("processing", True)
    # The worker learns it from its next report, and ends the task itself.
    assert world.service.report(task.id, "w1", Progress(rows_read=5), []).cancel_requested
    ended = world.service.finish(task.id, "w1", "cancelled", None, [], "")
    assert (ended.status, ended.progress.rows_read) == ("cancelled", 5)


def _polls(n: int) -> Callable[[], bool]:
    calls = iter(range(n))
    return lambda: next(calls, None) is not None


def test_watch_yields_each_change_and_ends_with_the_task(world: World) -> None:
    task = world.claimed("w1")
    updates = world.service.watch(task.id, "u1", _polls(100), interval=0)
    assert next(updates).progress == Progress()
    world.clock.advance(1)
    world.service.report(task.id, "w1", Progress(rows_read=3), [])
    assert next(updates).progress.rows_read == 3
    world.clock.advance(1)
    world.service.finish(task.id, "w1", "done", Progress(rows_read=4), [], "")
    assert next(updates).status == "done"
    assert next(updates, None) is None


def test_watch_stops_when_the_caller_leaves_and_checks_ownership(world: World) -> None:
    task = world.claimed("w1")
    assert len(list(world.service.watch(task.id, "u1", _polls(5), interval=0))) == 1
    with pytest.raises(PermissionDenied):
        next(world.service.watch(task.id, "u2", _polls(5), interval=0))


# --- the stall sweep and retention --------------------------------------------------------------

def test_sweep_re_enqueues_lost_tasks_once_per_grace_period(world: World) -> None:
    processing = world.claimed("w1")
    pending = world.create(file_id="f2")
    world.enqueued.clear()
    world.clock.advance(LEASE + 1)
    assert world.service.sweep(grace_seconds=10) == 2
    assert sorted(world.enqueued) == sorted([("ingest_csv", processing.id),
                                             ("ingest_csv", pending.id)])
    assert world.service.sweep(grace_seconds=10) == 0  # just re-enqueued: give them time
    world.clock.advance(11)
    assert world.service.sweep(grace_seconds=10) == 2


def test_sweep_leaves_live_and_ended_tasks_alone(world: World) -> None:
    live = world.claimed("w1")
    ended = world.create(file_id="f2")
    world.service.cancel(ended.id, "u1")
    world.enqueued.clear()
    world.clock.advance(LEASE - 1)
    assert world.service.sweep(grace_seconds=1) == 0
    assert world.service.get(live.id, "u1").status == "processing"
    assert world.enqueued == []


def test_sweep_fails_a_task_that_used_up_its_attempts(world: World) -> None:
    task = world.create()
    for _ in range(3):
        world.service.claim(task.id, "w1")
        world.clock.advance(LEASE + 1)
    world.enqueued.clear()
    assert world.service.sweep(grace_seconds=10) == 1
    failed = world.service.get(task.id, "u1")
    assert failed.status == "failed"
    assert failed.error.startswith("gave up after 3 attempts")
    assert world.enqueued == []


def test_files_are_deleted_once_their_task_ended_longer_ago_than_the_retention(world: World
                                                                              ) -> None:
    old = world.create(file_id="old")
    world.service.cancel(old.id, "u1")
    world.clock.advance(RETENTION - 10)
    recent = world.create(file_id="recent")
    world.service.cancel(recent.id, "u1")
    world.create(file_id="active")
    world.clock.advance(11)
    assert world.service.purge_files() == 1
    assert world.deleted_files == ["old"]
    assert world.service.get(old.id, "u1").file_deleted  # the record stays, marked
    assert world.service.purge_files() == 0
    world.clock.advance(RETENTION)
    assert world.service.purge_files() == 1
    assert world.deleted_files == ["old", "recent"]


# --- quotas: tasks not ended per user -----------------------------------------------------------

def test_a_user_may_have_only_so_many_tasks_not_ended(world: World) -> None:
    tasks = [world.create(user_id="u1", file_id=f"f{n}") for n in range(PENDING)]
    with pytest.raises(LimitReached) as refused:
        world.create(user_id="u1", file_id="one-more")
    assert str(refused.value) == (
        f"too many tasks at once: you have {PENDING} tasks pending or processing, and one user "
        f"may have {PENDING}; wait for one to end (GET /tasks shows them) and upload again")
    world.create(user_id="u3")
    with pytest.raises(LimitReached, match="you have 1 task pending or processing and "
                                           f"{PENDING - 1} more uploads in progress"):
        world.service.check_quota("u3", incoming=PENDING)
    assert len(world.service.list_tasks("u1").tasks) == PENDING
    world.create(user_id="u2")  # others are not held up
    # Processing tasks count; ended ones do not.
    world.service.claim(tasks[0].id, "w1")
    with pytest.raises(LimitReached):
        world.create(user_id="u1", file_id="one-more")
    world.service.finish(tasks[0].id, "w1", "done", None, [], "")
    world.service.cancel(tasks[1].id, "u1")
    world.create(user_id="u1", file_id="f-next")
    world.create(user_id="u1", file_id="f-last")


def test_the_check_before_an_upload_counts_the_users_other_uploads_in_progress(world: World
                                                                               ) -> None:
    for n in range(PENDING - 2):
        world.create(user_id="u1", file_id=f"f{n}")
    assert world.service.check_quota("u1", incoming=2) == PENDING - 2
    with pytest.raises(LimitReached, match=f"you have {PENDING - 2} tasks pending or processing "
                                           "and 2 more uploads in progress"):
        world.service.check_quota("u1", incoming=3)
    assert world.service.check_quota("u2", incoming=PENDING) == 0
    with pytest.raises(InvalidArgument):
        world.service.check_quota("u1", incoming=0)


# --- quotas: rejected rows stored per task ------------------------------------------------------

def _rows(lines: range) -> list[RejectedRow]:
    return [RejectedRow(line, f"bad {line}", "x") for line in lines]


def test_a_task_stores_its_first_rejected_rows_and_counts_them_all(world: World) -> None:
    task = world.claimed("w1")
    world.service.report(task.id, "w1", Progress(rows_read=20, rows_rejected=20),
                         _rows(range(2, 22)))
    world.service.report(task.id, "w1", Progress(rows_read=40, rows_rejected=40),
                         _rows(range(22, 42)))
    world.service.finish(task.id, "w1", "done", Progress(rows_read=1000, rows_rejected=1000),
                         _rows(range(42, 1002)), "")
    export = world.service.rejections(task.id, "u1")
    assert [r.line for r in export.rows] == list(range(2, 2 + KEEP))
    assert (export.not_stored, export.stored_at_most) == (1000 - KEEP, KEEP)
    assert world.service.get(task.id, "u1").progress.rows_rejected == 1000  # exact


def test_a_replayed_batch_does_not_take_the_room_of_rows_never_stored(world: World) -> None:
    """A worker died after storing part of its rows: the next attempt sends them again with the
    rest, and the rest are stored up to the cap."""
    task = world.claimed("w1")
    world.service.report(task.id, "w1", Progress(rows_read=10, rows_rejected=10),
                         _rows(range(2, 12)))
    world.clock.advance(LEASE + 1)
    again = world.service.claim(task.id, "w2")
    world.service.report(again.id, "w2", Progress(rows_read=60, rows_rejected=60),
                         _rows(range(2, 62)))
    export = world.service.rejections(task.id, "u1")
    assert [r.line for r in export.rows] == list(range(2, 2 + KEEP))
    assert export.not_stored == 60 - KEEP


def test_an_export_of_a_task_with_every_row_stored_misses_none(world: World) -> None:
    task = world.claimed("w1")
    world.service.finish(task.id, "w1", "done", Progress(rows_read=5, rows_rejected=2),
                         _rows(range(3, 5)), "")
    assert world.service.rejections(task.id, "u1").not_stored == 0


# --- pages of the task list ---------------------------------------------------------------------

def _ids(page: list[Task]) -> list[str]:
    return [t.id for t in page]


@pytest.fixture
def many(world: World) -> list[str]:
    """PAGE_MAX + 5 tasks of u1 (some in one instant), newest first."""
    created = []
    for n in range(PAGE_MAX + 5):
        if n % 3 == 0:
            world.clock.advance(1)
        created.append(world.create(user_id="u1", file_id=f"f{n}").id)
        world.tasks.fail(created[-1], "ended, to stay under the pending-task quota")
    return list(reversed(created))


def test_the_list_comes_a_page_at_a_time_newest_first(world: World, many: list[str]) -> None:
    first = world.service.list_tasks("u1")
    assert _ids(first.tasks) == many[:PAGE_DEFAULT] and first.next_page_token
    assert _ids(world.service.list_tasks("u1", page=2, limit=7).tasks) == many[7:14]
    assert _ids(world.service.list_tasks("u1", page_size=7, page=2).tasks) == many[7:14]
    assert _ids(world.service.list_tasks("u1", page=3, limit=10).tasks) == many[20:]
    assert world.service.list_tasks("u1", page=4, limit=10).tasks == []
    # AIP-158: a page_size over the maximum is read as the maximum.
    assert _ids(world.service.list_tasks("u1", page_size=1000).tasks) == many[:PAGE_MAX]


def test_page_tokens_walk_the_whole_list_once_while_tasks_are_added(world: World,
                                                                    many: list[str]) -> None:
    seen: list[str] = []
    token = ""
    while True:
        page = world.service.list_tasks("u1", page_size=4, page_token=token)
        seen += _ids(page.tasks)
        if not page.next_page_token:
            break
        token = page.next_page_token
        newer = world.create(user_id="u1", file_id=f"new{len(seen)}")  # on no later page
        world.tasks.fail(newer.id, "ended, to stay under the pending-task quota")
    assert seen == many


@pytest.mark.parametrize(("params", "message"), [
    ({"page": 0}, "page must be an integer from 1 to 1000000 (got 0)"),
    ({"limit": PAGE_MAX + 1}, f"limit must be an integer from 1 to {PAGE_MAX} (got 21)"),
    ({"limit": 0}, f"limit must be an integer from 1 to {PAGE_MAX} (got 0)"),
    ({"page_size": -1}, "page_size must not be negative (got -1)"),
    ({"limit": 5, "page_size": 6}, "limit and page_size are the same parameter"),
])
def test_page_parameters_out_of_range_are_refused_by_name(world: World, params: dict[str, int],
                                                          message: str) -> None:
    with pytest.raises(InvalidArgument, match=re.escape(message)):
        world.service.list_tasks("u1", **params)  # type: ignore[arg-type]


def _token(payload: object) -> str:
    raw = payload if isinstance(payload, str) else json.dumps(payload)
    return base64.urlsafe_b64encode(raw.encode()).decode()


@pytest.mark.parametrize("token", [
    "not base64 at all!", _token("[" * 5000), "x" * 2000, _token({"t": "2024-05-01T12:00:00"}),
    _token({"t": "2024-05-01T12:00:00+02:00", "n": 1, "id": "a"}),
    _token({"t": 17, "n": 1, "id": "a"}), _token({"t": "2024-05-01T12:00:00", "n": 2**64,
                                                  "id": "a"}),
    _token({"t": "2024-05-01T12:00:00", "n": True, "id": "a"}),
    _token({"t": "2024-05-01T12:00:00", "n": 1, "id": ["a"]}),
    _token('{"t": "2024-05-01T12:00:00", "n": 1, "id": "\\ud800"}'),
])
def test_a_page_token_not_of_ours_is_refused(world: World, token: str) -> None:
    with pytest.raises(InvalidArgument, match="page_token is not valid"):
        world.service.list_tasks("u1", page_token=token)


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
                    lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner),
                    max_leaves=20)


@settings(max_examples=300, deadline=timedelta(milliseconds=200))
@given(st.one_of(st.fixed_dictionaries({"t": JSON, "n": JSON, "id": JSON}), JSON))
def test_any_json_in_a_token_is_a_position_or_invalid_argument(payload: Any) -> None:
    try:
        position = decode_token(_token(json.dumps(payload)))
    except InvalidArgument:
        return
    assert decode_token(encode_token(position)) == position


@settings(max_examples=100, deadline=timedelta(milliseconds=200))
@given(st.datetimes(), st.none() | st.integers(0, 2**63 - 1), st.text(max_size=64))
def test_every_position_reads_back_from_its_token(when: Any, ns: int | None, task_id: str
                                                  ) -> None:
    position = Position(when, ns, task_id)
    assert decode_token(encode_token(position)) == position
