"""The files surface and operation requests (services/upload/user_files.py), results within the
quota (UploadService.store_result), and the task side: results by state, retention of results
and of files that an operation reads."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from services.common.errors import FailedPrecondition, Gone, InvalidArgument, NotFound, TooLarge
from services.task.records import NewTask, Progress, TaskResult
from services.task.service import TaskService
from services.upload.records import UploadedFile
from services.upload.user_files import PageLimits, UserFiles
from services.worker.operation_spec import Condition, OperationSpec
from tests.unit.fakes import Clock, FakeTasks
from tests.unit.test_upload_service import QUOTA, Uploads

CSV = b"title;year\r\nHeat;1995\r\n"


class OperationTasks(Uploads):
    """Uploads whose task service also takes operations."""

    def __init__(self) -> None:
        super().__init__()
        self.operations: list[tuple[str, OperationSpec]] = []

    def create_operation(self, file: UploadedFile, spec: OperationSpec, username: str) -> str:
        self.operations.append((file.id, spec))
        return f"op-{len(self.operations)}"


@pytest.fixture
def env() -> tuple[OperationTasks, UserFiles]:
    uploads = OperationTasks()
    return uploads, UserFiles(uploads.files, uploads.service, uploads,
                              PageLimits(default=2, max=3))


def _upload(uploads: OperationTasks, owner: str = "u1", data: bytes = CSV) -> str:
    return uploads.service.upload(owner, "films.csv", [data]).file_id


def test_the_header_and_dialect_are_detected_at_upload(env: tuple[OperationTasks, UserFiles]
                                                        ) -> None:
    uploads, files = env
    file = files.describe("u1", _upload(uploads))
    assert (file.header.encoding, file.header.delimiter, file.header.columns) == (
        "utf-8", ";", ("title", "year"))
    assert file.task_id == "task-1"
    binary = files.describe("u1", _upload(uploads, data=b"\x00\x01\x02" * 30))
    assert binary.header.columns == () and "binary" in binary.header.error


def test_list_pages_newest_first_and_hides_other_users_files(
        env: tuple[OperationTasks, UserFiles]) -> None:
    uploads, files = env
    ids = []
    for _ in range(3):
        ids.append(_upload(uploads))
        uploads.clock.advance(1)
        uploads.active_tasks.clear()
    _upload(uploads, owner="u2")
    # Distinct times, so the order is the upload order reversed.
    for n, file_id in enumerate(ids):
        uploads.files.files[file_id] = replace(uploads.files.files[file_id],
                                               created_at=uploads.clock() + timedelta(seconds=n))
    first = files.list("u1")
    assert [f.id for f in first.files] == ids[::-1][:2] and first.next_page_token
    second = files.list("u1", page_token=first.next_page_token)
    assert [f.id for f in second.files] == ids[:1] and second.next_page_token == ""
    assert [f.id for f in files.list("u1", page=2, limit=2).files] == ids[:1]
    with pytest.raises(InvalidArgument, match="limit must be an integer from 1 to 3"):
        files.list("u1", limit=4)


def test_another_users_file_is_not_found_and_a_deleted_one_is_gone(
        env: tuple[OperationTasks, UserFiles]) -> None:
    uploads, files = env
    file_id = _upload(uploads)
    for call in (lambda: files.describe("u2", file_id), lambda: files.download("u2", file_id),
                 lambda: files.remove("u2", file_id),
                 lambda: files.start_operation("u2", "bob", file_id, OperationSpec("dedupe"))):
        with pytest.raises(NotFound):
            call()
    _, chunks = files.download("u1", file_id)
    assert b"".join(chunks) == CSV
    assert files.remove("u1", file_id).deleted
    assert files.remove("u1", file_id).deleted  # again: the same answer
    assert files.describe("u1", file_id).deleted
    assert uploads.storage.files == {}
    with pytest.raises(Gone):
        files.download("u1", file_id)
    with pytest.raises(Gone):
        files.start_operation("u1", "alice", file_id, OperationSpec("unique", column="year"))


def test_operations_are_checked_against_the_header_before_a_task_exists(
        env: tuple[OperationTasks, UserFiles]) -> None:
    uploads, files = env
    file_id = _upload(uploads)
    with pytest.raises(InvalidArgument, match="unknown column 'rating'"):
        files.start_operation("u1", "alice", file_id, OperationSpec(
            "filter", conditions=(Condition("rating", "gt", "7"),)))
    assert uploads.operations == []
    spec = OperationSpec("filter", conditions=(Condition("YEAR", "gt", "1990"),))
    assert files.start_operation("u1", "alice", file_id, spec) == "op-1"
    assert uploads.operations == [(file_id, spec)]
    unreadable = _upload(uploads, data=b"\x00\x01\x02" * 30)
    with pytest.raises(FailedPrecondition, match="header could not be read"):
        files.start_operation("u1", "alice", unreadable, OperationSpec("dedupe"))


def test_results_count_toward_the_quota_and_replace_an_earlier_attempts(
        env: tuple[OperationTasks, UserFiles]) -> None:
    uploads, files = env
    _upload(uploads)
    first = uploads.service.store_result("op-1", "u1", "films.csv", [b"a" * 50])
    second = uploads.service.store_result("op-1", "u1", "films.csv", [b"b" * 60])
    assert uploads.files.get(first.id).deleted  # type: ignore[union-attr]
    assert uploads.files.stored_bytes("u1") == len(CSV) + 60
    assert [f.id for f in files.list("u1").files] != [second.id]  # results are not listed
    with pytest.raises(NotFound):
        files.describe("u1", second.id)
    with pytest.raises(TooLarge, match="storage quota"):
        uploads.service.store_result("op-2", "u1", "films.csv", [b"c" * QUOTA])
    assert uploads.files.stored_bytes("u1") == len(CSV) + 60  # nothing kept


# --- the task side ------------------------------------------------------------------------------

def _tasks() -> tuple[TaskService, FakeTasks, Clock, list[str]]:
    clock = Clock()
    repo = FakeTasks(clock)
    deleted: list[str] = []
    service = TaskService(repo, lambda kind, task_id: None, deleted.append, lease_seconds=30,
                          file_retention_seconds=60)
    return service, repo, clock, deleted


def _new(kind: str = "dedupe", operation: dict[str, str] | None = None) -> NewTask:
    return NewTask(user_id="u1", username="alice", kind=kind, file_id="f1", file_path="f1.csv",
                   original_name="films.csv", bytes_total=10,
                   operation={"operation": kind} if operation is None and kind != "ingest_csv"
                   else operation)


def test_an_operations_result_is_served_once_done_and_gone_after_retention() -> None:
    service, repo, clock, deleted = _tasks()
    ingest = service.create(_new("ingest_csv"))
    op = service.create(_new())
    with pytest.raises(FailedPrecondition, match="ingest_csv has no result"):
        service.result(ingest.id, "u1")
    with pytest.raises(FailedPrecondition, match="the task is pending"):
        service.result(op.id, "u1")
    service.claim(ingest.id, "w")
    service.finish(ingest.id, "w", "failed", None, [], "not movies")
    service.claim(op.id, "w")
    clock.advance(120)
    service.purge_files()  # the ingest task expired, but the operation still reads the file
    assert deleted == []
    result = TaskResult("r1", "text/csv; charset=utf-8", 42)
    service.finish(op.id, "w", "done", Progress(rows_read=3, rows_out=2, duplicates=1), [], "",
                   result)
    assert service.result(op.id, "u1")[1] == result
    service.purge_files()  # now the upload's file goes; the result has its own retention
    assert deleted == ["f1"]
    clock.advance(61)
    service.purge_files()
    assert deleted == ["f1", "r1"]
    with pytest.raises(Gone, match="was deleted"):
        service.result(op.id, "u1")
    assert repo.get(op.id).file_deleted  # type: ignore[union-attr]


def test_an_operation_kind_needs_its_operation_and_only_it() -> None:
    service, *_ = _tasks()
    with pytest.raises(InvalidArgument, match="operation is required"):
        service.create(replace(_new(), operation=None))
    with pytest.raises(InvalidArgument, match="operation is required"):
        service.create(replace(_new("ingest_csv"), operation={"operation": "dedupe"}))
