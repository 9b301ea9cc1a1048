"""The administrators' list of every user's tasks (GET /admin/tasks) on an in-memory repository:
the filters by owner and status, paging as in a user's own list, and the bounds on its input."""

from __future__ import annotations

import re

import pytest

from marquee.task.v1 import task_pb2
from services.common.errors import InvalidArgument
from services.task.records import NewTask, Task
from services.task.server import TaskServicer
from services.task.service import TaskLimits, TaskService
from services.task.stream_slots import StreamSlots
from tests.unit.fakes import Clock, FakeTasks

USERS = {"u1": "alice", "u2": "bob", "u3": "carol"}


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def service(clock: Clock) -> TaskService:
    return TaskService(FakeTasks(clock), lambda kind, task_id: None, lambda file_id: None,
                       lease_seconds=30, file_retention_seconds=3600,
                       limits=TaskLimits(pending_per_user=50, list_default=4, list_max=10))


@pytest.fixture
def tasks(service: TaskService, clock: Clock) -> list[Task]:
    """Four tasks of each user, turn by turn, newest first; every other one done."""
    created = []
    for n in range(12):
        clock.advance(1)
        user_id = f"u{n % 3 + 1}"
        task = service.create(NewTask(user_id=user_id, username=USERS[user_id],
                                      kind="ingest_csv", file_id=f"f{n}", file_path=f"f{n}.csv",
                                      original_name="movies.csv", bytes_total=10))
        if n % 2:
            service.claim(task.id, "w1")
            service.finish(task.id, "w1", "done", None, [], "")
        created.append(service.get(task.id, user_id))
    return list(reversed(created))


def _ids(found: list[Task]) -> list[str]:
    return [t.id for t in found]


def _walk(service: TaskService, user_id: str = "", status: str = "") -> list[str]:
    seen: list[str] = []
    token = ""
    while True:
        page = service.list_all_tasks(user_id=user_id, status=status, page_size=3,
                                      page_token=token)
        seen += _ids(page.tasks)
        if not page.next_page_token:
            return seen
        token = page.next_page_token


def test_every_users_tasks_newest_first_a_page_at_a_time(service: TaskService,
                                                         tasks: list[Task]) -> None:
    first = service.list_all_tasks()
    assert _ids(first.tasks) == _ids(tasks[:4]) and first.next_page_token
    assert _ids(service.list_all_tasks(page=2, limit=5).tasks) == _ids(tasks[5:10])
    assert _walk(service) == _ids(tasks)


@pytest.mark.parametrize("filters", [{"user_id": "u2"}, {"status": "done"},
                                     {"status": "pending"}, {"user_id": "u1", "status": "done"},
                                     {"user_id": "nobody"}])
def test_filters_by_owner_and_status(service: TaskService, tasks: list[Task],
                                     filters: dict[str, str]) -> None:
    want = [t.id for t in tasks if filters.get("user_id", t.user_id) == t.user_id
            and filters.get("status", t.status) == t.status]
    assert _walk(service, **filters) == want


def test_a_status_is_read_as_the_user_wrote_it_in_any_case(service: TaskService,
                                                          tasks: list[Task]) -> None:
    assert _walk(service, status=" DONE ") == [t.id for t in tasks if t.status == "done"]


@pytest.mark.parametrize(("filters", "message"), [
    ({"status": "finished"}, "status must be one of pending, processing, done, failed, "
                             "cancelled (got 'finished')"),
    ({"status": "x" * 10_000}, "status must be one of"),
    ({"user_id": "u" * 65}, "user_id must have at most 64 characters"),
])
def test_filters_out_of_bounds_are_refused_by_name(service: TaskService,
                                                   filters: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidArgument, match=re.escape(message)) as refused:
        service.list_all_tasks(**filters)  # type: ignore[arg-type]
    assert len(str(refused.value)) < 200  # a long value is not echoed back


def test_each_task_shows_its_owners_id_and_name(service: TaskService, tasks: list[Task]) -> None:
    servicer = TaskServicer(service, StreamSlots(per_user=1, total=1), lambda file_id: iter(()))
    answer = servicer.ListAllTasks(task_pb2.ListAllTasksRequest(user_id="u3"), None)  # type: ignore[arg-type]
    assert {(t.user_id, t.user) for t in answer.tasks} == {("u3", "carol")}
    assert answer.next_page_token == ""
