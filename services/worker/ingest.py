"""The ingest_csv job: stream a stored CSV from the upload service, turn rows into movies, import
them into the catalog in batches, and report progress to the task service after each commit.

Crash-safe by construction: the task's progress is a checkpoint written only after the catalog
committed the rows it counts, movies are upserted on their natural key, and a resumed run skips
the rows the checkpoint already covers.

The import is the uploader's (the task's owner, and whether they uploaded as an administrator):
the catalog skips the movies another user owns, and the job counts those rows as skipped, with
a reason beside the rejected rows. Which rows were skipped is known only once the catalog
answers a batch, so the counts are added up as batches are committed, never when they are sent.
"""

from __future__ import annotations

import logging
import queue
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc

from marquee.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from marquee.task.v1 import task_pb2, task_pb2_grpc
from marquee.upload.v1 import upload_pb2, upload_pb2_grpc
from services.catalog.movie_message import movie_message
from services.catalog.records import Movie
from services.common import jobs
from services.worker import task_claims
from services.worker.csv_source import (
    ByteStream,
    CsvLimits,
    Record,
    is_utf8,
    raw_sample,
    records,
    stored_dialect,
)
from services.worker.movie_rows import FileRejected, Header, RowRejected, parse_header, parse_row

log = logging.getLogger(__name__)

PIPELINE_DEPTH = 2
# A batch also ends at this many bytes of movies and rejected rows: rows of long fields (each
# within its bounds) would otherwise make a batch of INGEST_BATCH_SIZE rows hundreds of MB, in
# the worker's memory and past the catalog's and the task service's message limits (16 MiB, for
# up to PIPELINE_DEPTH + 1 batches in one report). Ordinary rows (about 0.5 KB) never reach it.
MAX_BATCH_BYTES = 4 << 20


@dataclass
class Clients:
    tasks: task_pb2_grpc.TaskServiceStub
    uploads: upload_pb2_grpc.UploadServiceStub
    catalog: catalog_pb2_grpc.CatalogServiceStub


# The job keeps its counts in the task contract's Progress message, not a type of its own: the
# contract is where the worker's side names them.
def _snapshot(counts: task_pb2.Progress) -> task_pb2.Progress:
    copy = task_pb2.Progress()
    copy.CopyFrom(counts)
    return copy


def _log_fields(counts: task_pb2.Progress) -> dict[str, int]:
    return {f.name: getattr(counts, f.name) for f in counts.DESCRIPTOR.fields}


@dataclass
class Batch:
    movies: dict[str, catalog_pb2.Movie] = field(default_factory=dict)
    rejected: list[task_pb2.RejectedRow] = field(default_factory=list)
    # Each accepted row's movie id and record: the rows to list if the catalog skips the movie.
    accepted: list[tuple[str, Record]] = field(default_factory=list)
    size_bytes: int = 0

    def full(self, rows: int) -> bool:
        return len(self.accepted) + len(self.rejected) >= rows \
            or self.size_bytes >= MAX_BATCH_BYTES


@dataclass(frozen=True)
class SentBatch:
    """A batch on its way to the catalog, and where reading was when it was sent."""

    accepted: list[tuple[str, Record]]
    rejected: list[task_pb2.RejectedRow]
    rows_read: int
    bytes_processed: int


@dataclass
class ReadPosition:
    """How far reading has come: the counts of the next batch sent."""

    rows_read: int
    bytes_processed: int


def skip_reason(movie_id: str, owner: str) -> str:
    by = f" (imported by {owner})" if owner else ""
    return f"movie {movie_id} belongs to another user{by}; skipped"


def _skipped_rows(sent: SentBatch, response: catalog_pb2.ImportMoviesResponse
                  ) -> list[task_pb2.RejectedRow]:
    """The rows of the batch whose movie the catalog skipped (another user owns it): every row
    that carried such an id, a repeated one too."""
    if not response.skipped:
        return []
    owners = {s.movie_id: s.owner for s in response.skipped}
    return [task_pb2.RejectedRow(line=record.line, reason=skip_reason(movie_id, owners[movie_id]),
                                 raw=raw_sample(record))
            for movie_id, record in sent.accepted if movie_id in owners]


def _movie(header: Header, record: Record) -> catalog_pb2.Movie:
    """The record as the catalog's movie; raises RowRejected."""
    if record.rejected:
        raise RowRejected(record.rejected)
    return movie_message(Movie(**parse_row(header, record.fields)))


# Batches the catalog committed: each one's tag and the catalog's answer.
Answered = list[tuple[Any, catalog_pb2.ImportMoviesResponse]]


class ImportPipe:
    """Sends batches on one ImportMovies stream with up to PIPELINE_DEPTH in flight, so the CSV
    is parsed while the catalog writes. Returns each batch's tag with the catalog's answer once
    the catalog committed it, in the order they were sent."""

    def __init__(self, catalog: catalog_pb2_grpc.CatalogServiceStub,
                 importer: catalog_pb2.Importer) -> None:
        self._importer = importer
        self._requests: queue.Queue[catalog_pb2.ImportMoviesRequest | None] = queue.Queue()
        self._responses = catalog.ImportMovies(iter(self._requests.get, None))
        self._in_flight: deque[Any] = deque()

    def send(self, movies: list[catalog_pb2.Movie], tag: Any) -> Answered:
        self._requests.put(catalog_pb2.ImportMoviesRequest(movies=movies,
                                                           importer=self._importer))
        self._in_flight.append(tag)
        answered = []
        while len(self._in_flight) > PIPELINE_DEPTH:
            response = next(self._responses)
            answered.append((self._in_flight.popleft(), response))
        return answered

    def drain(self) -> Answered:
        self._requests.put(None)
        return [(self._in_flight.popleft(), response) for response in self._responses]

    def cancel(self) -> None:
        self._requests.put(None)
        self._responses.cancel()  # type: ignore[attr-defined]


class CsvIngestion:
    def __init__(self, clients: Clients, task_id: str, worker_id: str, batch_size: int,
                 limits: CsvLimits, checkpoint: task_pb2.Progress, lease_seconds: int,
                 importer: catalog_pb2.Importer) -> None:
        self._clients = clients
        self._importer = importer
        self._task_id = task_id
        self._worker_id = worker_id
        self._batch_size = batch_size
        self._limits = limits
        self._skip = checkpoint.rows_read
        # What the task service has recorded (the committed checkpoint).
        self.committed = _snapshot(checkpoint)
        self.unreported: list[task_pb2.RejectedRow] = []
        self.cancel_requested = False
        # The lease is renewed by each report; reading can go on for minutes with nothing to
        # report (a file of blank lines, rows skipped on a resume), so it is renewed on time too.
        self._renew_every = max(1.0, lease_seconds / 3)
        self._last_report = time.monotonic()

    def run(self, file: upload_pb2.File) -> None:
        """Imports the whole file; raises FileRejected, task_claims.Cancelled or grpc.RpcError."""
        def chunks() -> Iterator[bytes]:
            request = upload_pb2.ReadFileRequest(file_id=file.file_id)
            for response in self._clients.uploads.ReadFile(request):
                self._keep_lease()
                yield response.chunk

        stream = ByteStream(chunks())
        # A file with no stored dialect is detected here: whether it is UTF-8 throughout takes
        # a pass over it, asked only when the first bytes leave it open.
        rows = records(stream, lambda: is_utf8(chunks()), self._limits,
                       stored_dialect(file.encoding, file.delimiter))
        header_row = next(rows, None)
        if header_row is None:
            raise FileRejected("the file has only blank lines: upload a CSV with a header row")
        header = parse_header(header_row.fields)
        read = ReadPosition(self.committed.rows_read, self.committed.bytes_processed)
        pipe = ImportPipe(self._clients.catalog, self._importer)
        try:
            batch = Batch()
            for position, record in enumerate(rows, 1):
                if position <= self._skip:  # committed by an earlier attempt
                    continue
                read.rows_read += 1
                try:
                    movie = _movie(header, record)
                    batch.movies[movie.id] = movie  # a repeated id in a batch: the last row wins
                    batch.accepted.append((movie.id, record))
                    batch.size_bytes += movie.ByteSize()
                except RowRejected as exc:
                    rejected = task_pb2.RejectedRow(line=record.line, reason=str(exc),
                                                    raw=raw_sample(record))
                    batch.rejected.append(rejected)
                    batch.size_bytes += rejected.ByteSize()
                if batch.full(self._batch_size):
                    self._commit(pipe.send(list(batch.movies.values()),
                                           self._close(batch, read, stream)))
                    batch = Batch()
                    if self.cancel_requested:
                        break
            else:
                read.bytes_processed = file.size_bytes
                self._commit(pipe.send(list(batch.movies.values()),
                                       self._close(batch, read, stream)))
            # Batches in flight when a cancel arrives are committed and counted, not dropped.
            self._commit(pipe.drain())
        except BaseException:
            pipe.cancel()
            raise
        if self.cancel_requested:
            raise task_claims.Cancelled()

    @staticmethod
    def _close(batch: Batch, read: ReadPosition, stream: ByteStream) -> SentBatch:
        read.bytes_processed = max(read.bytes_processed, stream.consumed)
        return SentBatch(batch.accepted, batch.rejected, read.rows_read, read.bytes_processed)

    def _commit(self, answered: Answered) -> None:
        """Adds the committed batches to the counts, in the order they were read, so that each
        report is a checkpoint: the rows up to `rows_read`, each counted once as imported,
        rejected or skipped."""
        for sent, response in answered:
            skipped = _skipped_rows(sent, response)
            counts = self.committed
            counts.rows_read = sent.rows_read
            counts.bytes_processed = sent.bytes_processed
            counts.rows_imported += len(sent.accepted) - len(skipped)
            counts.rows_skipped += len(skipped)
            counts.rows_rejected += len(sent.rejected)
            self.unreported.extend(sorted([*sent.rejected, *skipped], key=lambda r: r.line))
        if not answered:
            return
        self._report(self.unreported)
        self.unreported = []

    def _keep_lease(self) -> None:
        """Reports the committed counts again (the task service has them already) when nothing
        was reported for a third of the lease, so that the sweep does not hand a task that is
        still being read to another worker."""
        if time.monotonic() - self._last_report >= self._renew_every:
            self._report([])

    def _report(self, rejected: list[task_pb2.RejectedRow]) -> None:
        response = self._clients.tasks.ReportProgress(task_pb2.ReportProgressRequest(
            task_id=self._task_id, worker_id=self._worker_id, progress=self.committed,
            rejected=rejected,
        ), timeout=30)
        self._last_report = time.monotonic()
        self.cancel_requested = self.cancel_requested or response.cancel_requested


def ingest_csv(clients: Clients, task_id: str, worker_id: str, batch_size: int,
               limits: CsvLimits, max_attempts: int = task_claims.MAX_ATTEMPTS) -> str:
    """Runs the job for one task; returns the status it ended with ('skipped' when another
    worker holds the task or it already ended). Transient errors (a service or the database
    restarting) are retried with backoff, each attempt resuming from the checkpoint."""
    return task_claims.with_retries(
        lambda attempt: _attempt(clients, task_id, worker_id, batch_size, limits, attempt),
        clients.tasks, task_id, worker_id, again="resuming from the checkpoint",
        max_attempts=max_attempts)


def _attempt(clients: Clients, task_id: str, worker_id: str, batch_size: int,
             limits: CsvLimits, attempt: int) -> str:
    claim = task_claims.claim(clients.tasks, task_id, worker_id, {jobs.INGEST_CSV})
    if isinstance(claim, str):
        return claim
    # The uploader as the task recorded them: a resumed or redelivered job imports as the same
    # user, so it replaces what its earlier attempt stored.
    importer = catalog_pb2.Importer(user_id=claim.task.user_id, username=claim.task.user,
                                    is_admin=claim.uploaded_by_admin)
    job = CsvIngestion(clients, task_id, worker_id, batch_size, limits, claim.checkpoint,
                       claim.lease_seconds, importer)
    status, error = "done", ""
    try:
        file = clients.uploads.GetFile(upload_pb2.GetFileRequest(file_id=claim.task.file_id),
                                       timeout=30)
        if file.deleted:
            raise FileRejected("the uploaded file is no longer stored; upload it again")
        log.info("ingestion started", extra={"task_id": task_id, "attempt": attempt,
                                             "resume_after_rows": claim.checkpoint.rows_read,
                                             "bytes": file.size_bytes})
        job.run(file)
    except FileRejected as exc:
        status, error = "failed", str(exc)
    except task_claims.Cancelled:
        status = "cancelled"
    except grpc.RpcError as exc:
        if exc.code() in task_claims.TRANSIENT:
            raise
        status, error = "failed", f"import failed: {exc.details()}"
    status = task_claims.finish(clients.tasks, task_id, worker_id, status, error,
                                progress=job.committed, rejected=job.unreported)
    log.info("ingestion ended", extra={"task_id": task_id, "status": status, "error": error,
                                       **_log_fields(job.committed)})
    return status
