"""TaskService on an in-memory repository: ownership, leases, progress, cancel, the stall sweep
and file retention."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from bson import ObjectId

from services.common.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from services.common.ids import random_id
from services.task.records import NewTask, Progress, RejectedRow, Task
from services.task.repository import SAMPLE_SIZE, _key
from services.task.service import TaskService
from tests.unit.fakes import Clock, FakeTasks

LEASE = 30
RETENTION = 3600


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
                                   max_attempts=3)

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
    assert world.service.list_tasks("u1") == []
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
        list(world.service.rejections(task.id, "u2"))
    with pytest.raises(NotFound, match="no task with id 'nope'"):
        world.service.get("nope", "u1")


def test_list_shows_the_callers_tasks_newest_first(world: World) -> None:
    first = world.create(user_id="u1", file_id="a")
    world.clock.advance(1)
    world.create(user_id="u2", file_id="b")
    world.clock.advance(1)
    second = world.create(user_id="u1", file_id="c")
    assert [t.id for t in world.service.list_tasks("u1")] == [second.id, first.id]
    assert world.service.list_tasks("u3") == []


def test_tasks_created_in_the_same_instant_still_list_newest_first(world: World) -> None:
    created = [world.create(user_id="u1", file_id=f"f{n}") for n in range(5)]
    assert [t.id for t in world.service.list_tasks("u1")] == [t.id for t in reversed(created)]


def test_task_ids_are_random_not_counted(world: World) -> None:
    ids = [world.create(file_id=f"f{n}").id for n in range(20)]
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
    assert list(world.service.rejections(task.id, "u1")) == rows


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
