"""The ingestion job when the catalog skips movies another user owns: the job runs against the
real task and catalog servicers and use cases on in-memory repositories, with small batches so
that several are in flight, and the counts, the rows listed with a reason and the movies are
checked, across a resume too."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest

from marquee.catalog.v1 import catalog_pb2
from marquee.task.v1 import task_pb2
from marquee.upload.v1 import upload_pb2
from services.catalog.records import Importer, Movie
from services.catalog.server import CatalogServicer
from services.catalog.service import CatalogService
from services.task.records import NewTask, Progress, Task
from services.task.server import TaskServicer
from services.task.service import TaskService
from services.task.stream_slots import StreamSlots
from services.worker import ingest
from services.worker.csv_source import CsvLimits
from services.worker.ingest import Clients, ingest_csv
from tests.unit.fakes import Clock, FakeMovies, FakeTasks

LIMITS = CsvLimits(max_row_chars=64 << 10, max_header_chars=4 << 10, max_columns=64)
BATCH = 3  # rows per batch: the file below is several batches, PIPELINE_DEPTH of them in flight
ALICE = Importer("u1", "alice")
ALICES = {"2": "Alice Two", "5": "Alice Five", "6": "Alice Six", "11": "Alice Eleven"}


def _file() -> bytes:
    rows = ["id,title,genre,original_language,overview,release_date"]
    for n in range(1, 13):
        rows.append(f"{n},Bob {n},Drama,en,x,2001-01-{n:02d}")
        if n == 4:
            rows.append("40,Bad Date,Drama,en,x,2001-13-45")  # rejected
        if n == 7:
            rows.append("5,Bob Five Again,Drama,en,y,2001-02-02")  # a second row of movie 5
    return ("\n".join(rows) + "\n").encode()


FILE = _file()
ROWS = 14  # 12 movies, a bad row and a repeated id
# Rows whose movie alice owns: 2, 5 (twice), 6 and 11, at these lines (the header is line 1).
SKIPPED_LINES = [3, 7, 8, 10, 14]


class _Unavailable(grpc.RpcError):
    """What the worker sees when the catalog restarts mid-stream."""

    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.UNAVAILABLE

    def details(self) -> str:
        return "catalog restarting"


class _Answers:
    """An ImportMovies call on the catalog's servicer. With `lose_answer` set, the answer to that
    batch (counted over every call) is lost after the catalog committed it, once."""

    def __init__(self, responses: Iterator[catalog_pb2.ImportMoviesResponse],
                 catalog: _Catalog) -> None:
        self._responses = responses
        self._catalog = catalog

    def __iter__(self) -> _Answers:
        return self

    def __next__(self) -> catalog_pb2.ImportMoviesResponse:
        response = next(self._responses)
        self._catalog.answered += 1
        if self._catalog.answered == self._catalog.lose_answer:
            raise _Unavailable()
        return response

    def cancel(self) -> None:
        pass


@dataclass
class _Catalog:
    servicer: CatalogServicer
    answered: int = 0
    lose_answer: int = 0

    def ImportMovies(self, requests: Iterator[catalog_pb2.ImportMoviesRequest]) -> _Answers:
        return _Answers(self.servicer.ImportMovies(requests, None), self)  # type: ignore[arg-type]


@dataclass
class _Tasks:
    servicer: TaskServicer

    def ClaimTask(self, request: Any, timeout: float) -> task_pb2.ClaimTaskResponse:
        return self.servicer.ClaimTask(request, None)  # type: ignore[arg-type]

    def ReportProgress(self, request: Any, timeout: float) -> task_pb2.ReportProgressResponse:
        return self.servicer.ReportProgress(request, None)  # type: ignore[arg-type]

    def FinishTask(self, request: Any, timeout: float) -> task_pb2.Task:
        return self.servicer.FinishTask(request, None)  # type: ignore[arg-type]


class _Uploads:
    def GetFile(self, request: upload_pb2.GetFileRequest, timeout: float) -> upload_pb2.File:
        return upload_pb2.File(file_id=request.file_id, size_bytes=len(FILE))

    def ReadFile(self, request: upload_pb2.ReadFileRequest
                 ) -> Iterator[upload_pb2.ReadFileResponse]:
        yield upload_pb2.ReadFileResponse(chunk=FILE)


class World:
    """The task and catalog services on fakes, alice's movies in the catalog."""

    def __init__(self) -> None:
        self.tasks = TaskService(FakeTasks(Clock()), lambda kind, task_id: None, lambda f: None,
                                 lease_seconds=30, file_retention_seconds=3600)
        self.catalog = CatalogService(FakeMovies())
        self.catalog.import_batch([Movie(i, t, genre=["Drama"]) for i, t in ALICES.items()],
                                  ALICE)
        self.catalog_stub = _Catalog(CatalogServicer(self.catalog))
        self.clients = Clients(
            tasks=_Tasks(TaskServicer(self.tasks, StreamSlots(per_user=1, total=1),  # type: ignore[arg-type]
                                      lambda file_id: iter(()))),
            uploads=_Uploads(), catalog=self.catalog_stub)  # type: ignore[arg-type]

    def ingest(self, user_id: str, username: str, by_admin: bool = False) -> Task:
        task = self.tasks.create(NewTask(
            user_id=user_id, username=username, kind="ingest_csv", file_id="f1",
            file_path="f1.csv", original_name="movies.csv", bytes_total=len(FILE),
            uploaded_by_admin=by_admin))
        ingest_csv(self.clients, task.id, "w1", batch_size=BATCH, limits=LIMITS)
        return self.tasks.get(task.id, user_id)

    def titles(self, movie_ids: list[str]) -> list[str]:
        return [self.catalog.get(i).title for i in movie_ids]


@pytest.fixture
def world() -> World:
    return World()


def _counts(task: Task) -> tuple[int, int, int, int]:
    p = task.progress
    return p.rows_read, p.rows_imported, p.rows_rejected, p.rows_skipped


def test_rows_of_another_users_movies_are_skipped_counted_and_listed(world: World) -> None:
    task = world.ingest("u2", "bob")
    assert task.status == "done"
    assert _counts(task) == (ROWS, ROWS - 1 - len(SKIPPED_LINES), 1, len(SKIPPED_LINES))
    assert world.titles(list(ALICES)) == list(ALICES.values())  # untouched
    assert world.titles(["1", "12"]) == ["Bob 1", "Bob 12"]
    listed = list(world.tasks.rejections(task.id, "u2").rows)
    skipped = [r for r in listed if "belongs to another user" in r.reason]
    assert [r.line for r in skipped] == SKIPPED_LINES
    assert skipped[1].reason == "movie 5 belongs to another user (imported by alice); skipped"
    assert skipped[1].raw == "5,Bob 5,Drama,en,x,2001-01-05"
    assert skipped[3].raw.startswith("5,Bob Five Again")
    assert world.tasks.rejections(task.id, "u2").not_stored == 0
    assert [r.line for r in task.rejected_sample] == sorted([6, *SKIPPED_LINES])


def test_the_owner_uploading_again_replaces_their_movies(world: World) -> None:
    task = world.ingest("u1", "alice")
    assert _counts(task) == (ROWS, ROWS - 1, 1, 0)
    assert world.titles(["2", "5"]) == ["Bob 2", "Bob Five Again"]


def test_an_administrators_upload_replaces_every_movie_and_keeps_the_owners(world: World
                                                                          ) -> None:
    task = world.ingest("u0", "root", by_admin=True)
    assert _counts(task) == (ROWS, ROWS - 1, 1, 0)
    replaced = world.catalog.get("2")
    assert replaced.title == "Bob 2"
    assert replaced.provenance is not None
    assert (replaced.provenance.imported_by, replaced.provenance.updated_by) == ("alice", "root")
    assert world.catalog.get("1").provenance.imported_by == "root"  # type: ignore[union-attr]


@pytest.mark.parametrize("lost", [1, 2, 4])
def test_a_resumed_job_counts_every_row_once(world: World, monkeypatch: pytest.MonkeyPatch,
                                             lost: int) -> None:
    """The catalog commits batch `lost` and the answer never arrives: the job resumes from the
    last checkpoint and sends that batch (and the ones in flight) again. Bob's movies from it
    are his by then, so they count as imported, alice's still as skipped, and no row twice."""
    monkeypatch.setattr(ingest.time, "sleep", lambda seconds: None)
    world.catalog_stub.lose_answer = lost
    task = world.ingest("u2", "bob")
    assert task.status == "done" and task.attempts == 2
    assert _counts(task) == (ROWS, ROWS - 1 - len(SKIPPED_LINES), 1, len(SKIPPED_LINES))
    listed = [r.line for r in world.tasks.rejections(task.id, "u2").rows]
    assert listed == sorted([6, *SKIPPED_LINES])
    assert world.titles(list(ALICES)) == list(ALICES.values())


def test_every_checkpoint_adds_up() -> None:
    """Each report the job sends is a checkpoint: what it read, each row counted once."""
    world = World()
    reports: list[Progress] = []
    report = world.tasks.report

    def recorded(task_id: str, worker_id: str, progress: Progress, rejected: Any) -> Task:
        reports.append(progress)
        return report(task_id, worker_id, progress, rejected)

    world.tasks.report = recorded  # type: ignore[method-assign]
    world.ingest("u2", "bob")
    assert len(reports) >= 3
    for p in reports:
        assert p.rows_read == p.rows_imported + p.rows_rejected + p.rows_skipped
    assert [p.rows_read for p in reports] == sorted(p.rows_read for p in reports)
