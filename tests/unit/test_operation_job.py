"""An operation reads its file with the dialect the upload detected: the file is streamed once,
where detecting it again streamed a file whose first bytes are UTF-8 twice (the whole-file
UTF-8 check). A file with no detected dialect is still detected by the worker."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from marquee.task.v1 import task_pb2
from marquee.upload.v1 import upload_pb2
from services.common import jobs
from services.worker.block_workers import Parallelism
from services.worker.csv_source import CsvLimits
from services.worker.operation_job import OperationClients, run_operation

LIMITS = CsvLimits(max_row_chars=1 << 20, max_header_chars=64 << 10, max_columns=256)


class _Tasks:
    def __init__(self) -> None:
        self.finished: list[task_pb2.FinishTaskRequest] = []

    def ClaimTask(self, request: task_pb2.ClaimTaskRequest, timeout: float
                  ) -> task_pb2.ClaimTaskResponse:
        return task_pb2.ClaimTaskResponse(task=task_pb2.Task(
            task_id=request.task_id, kind=jobs.UNIQUE, file_id="f1",
            operation=task_pb2.Operation(operation="unique", column="language")))

    def ReportProgress(self, request: task_pb2.ReportProgressRequest, timeout: float
                       ) -> task_pb2.ReportProgressResponse:
        return task_pb2.ReportProgressResponse()

    def FinishTask(self, request: task_pb2.FinishTaskRequest, timeout: float) -> task_pb2.Task:
        self.finished.append(request)
        return task_pb2.Task(task_id=request.task_id, status=request.status)


class _Uploads:
    """One stored file, with the dialect its upload detected (or none), streamed on request."""

    def __init__(self, data: bytes, encoding: str, delimiter: str) -> None:
        self._data = data
        self._file = upload_pb2.File(file_id="f1", owner="u1", original_name="films.csv",
                                     size_bytes=len(data), encoding=encoding,
                                     delimiter=delimiter)
        self.streams = 0
        self.result = b""

    def GetFile(self, request: upload_pb2.GetFileRequest, timeout: float) -> upload_pb2.File:
        return self._file

    def ReadFile(self, request: upload_pb2.ReadFileRequest
                 ) -> Iterator[upload_pb2.ReadFileResponse]:
        self.streams += 1
        for start in range(0, len(self._data), 4096):
            yield upload_pb2.ReadFileResponse(chunk=self._data[start:start + 4096])

    def StoreResult(self, requests: Iterator[upload_pb2.StoreResultRequest], timeout: float
                    ) -> upload_pb2.File:
        self.result = b"".join(r.chunk for r in requests)
        return upload_pb2.File(file_id="r1", size_bytes=len(self.result))


def _run(uploads: _Uploads) -> task_pb2.FinishTaskRequest:
    tasks = _Tasks()
    clients = OperationClients(tasks=tasks, uploads=uploads)  # type: ignore[arg-type]
    assert run_operation(clients, "t1", "w1", LIMITS, spill_root="",
                         parallelism=Parallelism(1, 0)) == "done"
    (finish,) = tasks.finished
    return finish


UTF8_FILE = "id;title;language\n1;Amélie;fr\n2;Up;en\n3;Léon;fr\n".encode()


@pytest.mark.parametrize(("data", "encoding", "delimiter"), [
    (UTF8_FILE, "utf-8", ";"),
    ("id;title;language\n1;Amélie;fr\n2;Up;en\n3;Léon;fr\n".encode("cp1252"), "cp1252", ";"),
])
def test_the_upload_s_dialect_is_read_and_the_file_streamed_once(
        data: bytes, encoding: str, delimiter: str) -> None:
    uploads = _Uploads(data, encoding, delimiter)
    finish = _run(uploads)
    assert uploads.streams == 1
    assert json.loads(uploads.result)["values"] == [{"value": "fr", "count": 2},
                                                    {"value": "en", "count": 1}]
    assert finish.progress.rows_read == 3


def test_a_file_without_a_detected_dialect_is_detected_by_the_worker() -> None:
    uploads = _Uploads(UTF8_FILE, "", "")
    _run(uploads)
    assert uploads.streams == 2  # the first bytes are UTF-8: the whole file is checked
    assert json.loads(uploads.result)["distinct"] == 2
