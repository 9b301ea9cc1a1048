"""The ingestion job on hostile files, with in-memory stand-ins for the task, upload and catalog
services: what the task ends with, what is stored for a rejected row, and how big a batch gets."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator

import pytest

from marquee.catalog.v1 import catalog_pb2
from marquee.task.v1 import task_pb2
from marquee.upload.v1 import upload_pb2
from services.common import jobs
from services.worker import ingest
from services.worker.csv_source import MAX_RAW, CsvLimits
from services.worker.ingest import MAX_BATCH_BYTES, Clients, ingest_csv

LIMITS = CsvLimits(max_row_chars=64 << 10, max_header_chars=4 << 10, max_columns=64)
HEADER = b"id,title,genre,original_language,overview,release_date\n"


class _Tasks:
    def __init__(self) -> None:
        self.finished: task_pb2.FinishTaskRequest | None = None
        self.rejected: list[task_pb2.RejectedRow] = []
        self.reports: list[task_pb2.ReportProgressRequest] = []

    def ClaimTask(self, request: task_pb2.ClaimTaskRequest, timeout: float
                  ) -> task_pb2.ClaimTaskResponse:
        return task_pb2.ClaimTaskResponse(
            task=task_pb2.Task(task_id=request.task_id, kind=jobs.INGEST_CSV, file_id="f1"),
            checkpoint=task_pb2.Progress())

    def ReportProgress(self, request: task_pb2.ReportProgressRequest, timeout: float
                       ) -> task_pb2.ReportProgressResponse:
        self.reports.append(request)
        self.rejected.extend(request.rejected)
        return task_pb2.ReportProgressResponse()

    def FinishTask(self, request: task_pb2.FinishTaskRequest, timeout: float) -> task_pb2.Task:
        self.finished = request
        self.rejected.extend(request.rejected)
        return task_pb2.Task(task_id=request.task_id, status=request.status)


class _Uploads:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def GetFile(self, request: upload_pb2.GetFileRequest, timeout: float) -> upload_pb2.File:
        return upload_pb2.File(file_id=request.file_id, size_bytes=len(self.data))

    def ReadFile(self, request: upload_pb2.ReadFileRequest
                 ) -> Iterator[upload_pb2.ReadFileResponse]:
        step = 1 << 20
        for i in range(0, len(self.data), step):
            yield upload_pb2.ReadFileResponse(chunk=self.data[i : i + step])


class _Responses:
    """ImportMovies' answers: one per batch, as the catalog commits it."""

    def __init__(self, batches: list[int], requests: Iterable[catalog_pb2.ImportMoviesRequest]
                 ) -> None:
        self._answers = self._answer(batches, requests)

    @staticmethod
    def _answer(batches: list[int], requests: Iterable[catalog_pb2.ImportMoviesRequest]
                ) -> Iterator[catalog_pb2.ImportMoviesResponse]:
        for request in requests:
            batches.append(request.ByteSize())
            yield catalog_pb2.ImportMoviesResponse(inserted=len(request.movies))

    def __iter__(self) -> Iterator[catalog_pb2.ImportMoviesResponse]:
        return self._answers

    def __next__(self) -> catalog_pb2.ImportMoviesResponse:
        return next(self._answers)

    def cancel(self) -> None:
        pass


class _Catalog:
    def __init__(self) -> None:
        self.batch_bytes: list[int] = []

    def ImportMovies(self, requests: Iterable[catalog_pb2.ImportMoviesRequest]) -> _Responses:
        return _Responses(self.batch_bytes, requests)


def _ingest(data: bytes) -> tuple[_Tasks, _Catalog]:
    tasks, catalog = _Tasks(), _Catalog()
    clients = Clients(tasks=tasks, uploads=_Uploads(data), catalog=catalog)  # type: ignore[arg-type]
    ingest_csv(clients, "t1", "w1", batch_size=1000, limits=LIMITS)
    return tasks, catalog


def test_an_over_long_row_is_rejected_with_its_line_and_a_short_raw_and_the_rest_imported(
        ) -> None:
    data = (HEADER + b"1,Heat,Crime,en,x,1995-12-15\n" + b"ab," * 1_000_000 + b"\n"
            + b"2,Ronin,Crime,en,y,1998-09-25\n")
    tasks, _ = _ingest(data)
    assert tasks.finished is not None and tasks.finished.status == "done"
    progress = tasks.finished.progress
    assert (progress.rows_read, progress.rows_imported, progress.rows_rejected) == (3, 2, 1)
    (rejected,) = tasks.rejected
    assert rejected.line == 3
    assert "longer than 65,536 characters" in rejected.reason
    assert rejected.raw == ("ab," * 1000)[:MAX_RAW]


def test_an_over_long_header_fails_the_task_with_the_bound_in_its_reason() -> None:
    tasks, catalog = _ingest(b"title" + b",c" * 1_000_000 + b"\n1\n")
    assert tasks.finished is not None and tasks.finished.status == "failed"
    assert "CSV_MAX_HEADER_CHARS" in tasks.finished.error
    assert catalog.batch_bytes == []


def test_batches_of_long_rows_are_cut_by_size() -> None:
    row = b"%d,Long,Drama,en," + b"o" * 19_000 + b",2000-01-01\n"
    data = HEADER + b"".join(row % i for i in range(1, 301))  # 5.7 MB in 300 rows
    tasks, catalog = _ingest(data)
    assert tasks.finished is not None and tasks.finished.progress.rows_imported == 300
    assert len(catalog.batch_bytes) > 1
    assert max(catalog.batch_bytes) < MAX_BATCH_BYTES + 20_000  # at most one row over


def test_reading_with_nothing_to_report_still_renews_the_lease(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Blank lines never make a batch: before, 1 GiB of them read for minutes without a report,
    the lease ran out and the sweep gave the running task to another worker."""
    clock = itertools.count(step=2.0)  # each look at the clock is 2 s later: reading is slow
    monkeypatch.setattr(ingest.time, "monotonic", lambda: next(clock))
    tasks, _ = _ingest(HEADER + b"\n" * (4 << 20))  # 4 chunks of blank lines
    assert tasks.finished is not None and tasks.finished.status == "done"
    renewals = [r for r in tasks.reports if not r.rejected and r.progress.rows_read == 0]
    assert len(renewals) >= 3  # one per chunk at least: each took longer than a third of a lease
