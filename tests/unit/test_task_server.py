"""TaskServicer behind the access interceptor on a real in-process gRPC server, on an in-memory
repository: the bound on open streams (watches, error exports) per user and in all, that the
other calls still get threads while the streams are held, the spreadsheet-safe export and what
it says when rows were not stored, the pages of the task list, and the pending-task check."""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass
from typing import Any

import grpc
import pytest

from marquee.task.v1 import task_pb2, task_pb2_grpc
from services.common import registry
from services.common.access import SERVICE_KEY_HEADER, AccessInterceptor, policy
from services.common.errors import Unauthenticated
from services.common.tokens import Caller
from services.task.records import NewTask, Progress, RejectedRow
from services.task.server import NOT_STORED_HEADER, TaskServicer, spreadsheet_safe
from services.task.service import TaskLimits, TaskService
from services.task.stream_slots import StreamSlots
from tests.unit.fakes import Clock, FakeTasks, no_admins

KEY = "k" * 40
PER_USER, TOTAL = 2, 3
KEEP = 10  # rejected rows stored per task
PAGE_DEFAULT = 2
OTHER_CALL_THREADS = 2  # few, so that a stream taking one would show


class _Tokens:
    """Accepts the token "<user id>"."""

    def verify(self, token: str) -> Caller:
        if not token:
            raise Unauthenticated("no token")
        return Caller(token, token)


@dataclass
class Server:
    service: TaskService
    slots: StreamSlots
    stub: task_pb2_grpc.TaskServiceStub

    def new_task(self, user: str) -> str:
        return self.service.create(NewTask(
            user_id=user, username=user, kind="ingest_csv", file_id="f", file_path="f.csv",
            original_name="m.csv", bytes_total=10)).id

    def watch(self, user: str, task_id: str) -> Any:
        """An open watch (its first message read), or the RpcError that refused it."""
        call = self.stub.WatchTask(task_pb2.WatchTaskRequest(task_id=task_id),
                                   metadata=_user(user), timeout=30)
        try:
            next(call)
        except grpc.RpcError as refused:
            return refused
        return call


def _user(user: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {user}"),)


def _eventually(condition: Callable[[], bool], seconds: float = 5) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


@pytest.fixture
def server() -> Iterator[Server]:
    limits = TaskLimits(pending_per_user=3, stored_rejections=KEEP, list_default=PAGE_DEFAULT,
                        list_max=4)
    service = TaskService(FakeTasks(Clock()), lambda kind, task_id: None, lambda file_id: None,
                          lease_seconds=30, file_retention_seconds=60, limits=limits)
    slots = StreamSlots(per_user=PER_USER, total=TOTAL)
    grpc_server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=OTHER_CALL_THREADS + slots.total),
        interceptors=[AccessInterceptor(policy(registry.spec("task").descriptors()),
                                        _Tokens(), KEY, no_admins)])  # type: ignore[arg-type]
    servicer = TaskServicer(service, slots, lambda file_id: iter(()))
    task_pb2_grpc.add_TaskServiceServicer_to_server(servicer, grpc_server)
    port = grpc_server.add_insecure_port("127.0.0.1:0")
    grpc_server.start()
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield Server(service, slots, task_pb2_grpc.TaskServiceStub(channel))
    grpc_server.stop(None)


def test_a_user_may_hold_only_so_many_streams_and_gets_them_back(server: Server) -> None:
    task = server.new_task("u1")
    held = [server.watch("u1", task) for _ in range(PER_USER)]
    assert all(isinstance(call, grpc.Future) for call in held)
    refused = server.watch("u1", task)
    assert refused.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert f"already watching or exporting {PER_USER} tasks" in refused.details()
    exports = server.stub.ExportTaskErrors(task_pb2.ExportTaskErrorsRequest(task_id=task),
                                           metadata=_user("u1"))
    with pytest.raises(grpc.RpcError) as export_refused:
        list(exports)
    assert export_refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    held[0].cancel()  # the client leaves: its slot comes back
    _eventually(lambda: server.slots.held("u1") == PER_USER - 1)
    assert isinstance(server.watch("u1", task), grpc.Future)
    for call in held[1:]:
        call.cancel()


def test_the_server_wide_bound_refuses_new_streams_but_no_other_call(server: Server) -> None:
    tasks = {user: server.new_task(user) for user in ("u1", "u2", "u3")}
    held = [server.watch("u1", tasks["u1"]) for _ in range(PER_USER)]
    held.append(server.watch("u2", tasks["u2"]))
    assert server.slots.held() == TOTAL
    refused = server.watch("u3", tasks["u3"])
    assert refused.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert f"as many watches and exports as it may ({TOTAL})" in refused.details()
    # Every stream slot is taken, and the other calls still have their threads: users' reads
    # and the workers' internal calls answer at once.
    started = time.monotonic()
    for _ in range(5):
        assert server.stub.GetTask(task_pb2.GetTaskRequest(task_id=tasks["u3"]),
                                   metadata=_user("u3"), timeout=2).task_id == tasks["u3"]
        server.stub.ListTasks(task_pb2.ListTasksRequest(), metadata=_user("u3"), timeout=2)
    claimed = server.stub.ClaimTask(task_pb2.ClaimTaskRequest(task_id=tasks["u3"], worker_id="w"),
                                    metadata=((SERVICE_KEY_HEADER, KEY),), timeout=2)
    assert claimed.task.status == "processing"
    assert time.monotonic() - started < 2
    for call in held:
        call.cancel()
    _eventually(lambda: server.slots.held() == 0)


def test_a_watch_that_ends_with_its_task_gives_its_slot_back(server: Server) -> None:
    task = server.new_task("u1")
    server.service.claim(task, "w")
    watch = server.watch("u1", task)
    server.service.finish(task, "w", "done", Progress(rows_read=1), [], "")
    list(watch)  # the stream ends with the task
    _eventually(lambda: server.slots.held() == 0)


def test_refused_streams_hold_nothing(server: Server) -> None:
    refused = server.watch("u1", "no-such-task")
    assert refused.code() == grpc.StatusCode.NOT_FOUND
    _eventually(lambda: server.slots.held() == 0)


# --- the errors export ------------------------------------------------------------------------

HOSTILE = ["=HYPERLINK(\"http://evil\",\"x\")", "+1+1", "-2+3", "@SUM(A1)", "\tx", "\rx"]


@pytest.mark.parametrize("cell", HOSTILE)
def test_cells_that_a_spreadsheet_would_run_get_a_leading_quote(cell: str) -> None:
    assert spreadsheet_safe(cell) == "'" + cell


@pytest.mark.parametrize("cell", ["", "Heat,1995", "title is empty", " =1", "'=1", "1e3"])
def test_other_cells_stay_as_they_are(cell: str) -> None:
    assert spreadsheet_safe(cell) == cell


def test_the_export_quotes_every_cell_and_neutralises_formulas(server: Server) -> None:
    task = server.new_task("u1")
    server.service.claim(task, "w")
    rows = [RejectedRow(line, f"bad row {line}", raw) for line, raw in enumerate(HOSTILE, 2)]
    server.service.report(task, "w", Progress(rows_read=len(rows)), rows)
    body = b"".join(m.data for m in server.stub.ExportTaskErrors(
        task_pb2.ExportTaskErrorsRequest(task_id=task), metadata=_user("u1"))).decode()
    assert body.startswith('"line","reason","raw"\r\n"2","bad row 2","\'=HYPERLINK(')
    exported = list(csv.DictReader(io.StringIO(body, newline="")))
    assert [e["raw"] for e in exported] == ["'" + raw for raw in HOSTILE]
    assert [int(e["line"]) for e in exported] == list(range(2, 2 + len(HOSTILE)))


def _export(server: Server, task: str) -> tuple[dict[str, str], str]:
    call = server.stub.ExportTaskErrors(task_pb2.ExportTaskErrorsRequest(task_id=task),
                                        metadata=_user("u1"))
    body = b"".join(m.data for m in call).decode()
    return dict(call.initial_metadata()), body


def test_an_export_missing_rows_says_so_in_a_header_and_a_last_row(server: Server) -> None:
    task = server.new_task("u1")
    server.service.claim(task, "w")
    rows = [RejectedRow(line, f"bad row {line}", "x") for line in range(2, 2 + KEEP + 5)]
    server.service.finish(task, "w", "done", Progress(rows_read=100, rows_rejected=len(rows)),
                          rows, "")
    headers, body = _export(server, task)
    assert headers[NOT_STORED_HEADER] == "5"
    exported = list(csv.DictReader(io.StringIO(body, newline="")))
    assert [int(e["line"]) for e in exported[:-1]] == list(range(2, 2 + KEEP))
    assert exported[-1] == {"line": "", "raw": "", "reason": (
        f"5 more rejected rows were not stored: a task keeps its first {KEEP} "
        "(TASK_MAX_STORED_REJECTIONS); rows_rejected counts them all")}


def test_a_complete_export_has_no_note(server: Server) -> None:
    task = server.new_task("u1")
    server.service.claim(task, "w")
    server.service.finish(task, "w", "done", Progress(rows_read=3, rows_rejected=1),
                          [RejectedRow(3, "bad", "x")], "")
    headers, body = _export(server, task)
    assert headers[NOT_STORED_HEADER] == "0"
    assert body == '"line","reason","raw"\r\n"3","bad","x"\r\n'


# --- the task list and the pending-task check ---------------------------------------------------

def test_the_task_list_comes_in_pages_with_a_token(server: Server) -> None:
    created = [server.new_task("u1") for _ in range(3)]
    first = server.stub.ListTasks(task_pb2.ListTasksRequest(), metadata=_user("u1"))
    assert [t.task_id for t in first.tasks] == created[::-1][:PAGE_DEFAULT]
    rest = server.stub.ListTasks(task_pb2.ListTasksRequest(page_token=first.next_page_token),
                                 metadata=_user("u1"))
    assert [t.task_id for t in rest.tasks] == created[:1] and rest.next_page_token == ""
    # The REST form: the contract's bare array, the token in a header.
    body, call = server.stub.ListTasksJson.with_call(task_pb2.ListTasksRequest(page=2, limit=2),
                                                     metadata=_user("u1"))
    assert [t["task_id"] for t in json.loads(body.data)] == created[:1]
    assert "x-next-page-token" not in dict(call.initial_metadata())
    _, call = server.stub.ListTasksJson.with_call(task_pb2.ListTasksRequest(limit=1),
                                                  metadata=_user("u1"))
    assert dict(call.initial_metadata())["x-next-page-token"]
    with pytest.raises(grpc.RpcError) as refused:
        server.stub.ListTasks(task_pb2.ListTasksRequest(limit=0), metadata=_user("u1"))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]


def test_the_pending_task_check_is_internal_and_answers_429s_code(server: Server) -> None:
    internal = ((SERVICE_KEY_HEADER, KEY),)
    check = server.stub.CheckTaskQuota
    assert check(task_pb2.CheckTaskQuotaRequest(user="u1", incoming=3), metadata=internal) == \
        task_pb2.CheckTaskQuotaResponse(active=0, limit=3)
    server.new_task("u1")
    with pytest.raises(grpc.RpcError) as refused:
        check(task_pb2.CheckTaskQuotaRequest(user="u1", incoming=3), metadata=internal)
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED  # type: ignore[attr-defined]
    assert "you have 1 task pending or processing and 2 more uploads in progress" in \
        refused.value.details()  # type: ignore[attr-defined]
    with pytest.raises(grpc.RpcError) as by_a_user:
        check(task_pb2.CheckTaskQuotaRequest(user="u1", incoming=1), metadata=_user("u1"))
    assert by_a_user.value.code() == grpc.StatusCode.PERMISSION_DENIED  # type: ignore[attr-defined]
