"""The operation jobs (dedupe, unique, filter): claim the task, stream the file from the upload
service through the same reader as imports, run the operation (services/worker/csv_operations.py)
with its spill files in a temporary directory, store the result with the upload service (under
the owner's quota) and finish the task with its counts.

Malformed rows (a field count other than the header's, a row over CSV_MAX_ROW_CHARS) are never
in a result: each is counted in rows_rejected and listed with its line and reason, as an
import's are. A crash or redelivery runs the operation again from the start: the result is
written only at the end, and storing it replaces what an earlier attempt stored.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc

from marquee.task.v1 import task_pb2, task_pb2_grpc
from marquee.upload.v1 import upload_pb2, upload_pb2_grpc
from services.common import jobs
from services.common.errors import InvalidArgument
from services.worker import task_claims
from services.worker.block_workers import Parallelism, ParsingProcessLost
from services.worker.csv_operations import (
    Dedupe,
    Operation,
    Tally,
    UniqueValues,
    start_operation,
)
from services.worker.csv_source import (
    BlockJob,
    ByteStream,
    CsvLimits,
    Dialect,
    Parsed,
    Parser,
    is_utf8,
    raw_sample,
    stepped_blocks,
    stored_dialect,
)
from services.worker.movie_rows import FileRejected, field_count_reason
from services.worker.operation_spec import OperationSpec, plan, spec_from_message

log = logging.getLogger(__name__)

REPORT_SECONDS = 1.0
# Rejected rows sent in one report at most: a report is one message (the task service takes
# 16 MiB), and each row shows at most MAX_RAW characters.
MAX_ROWS_PER_REPORT = 1000

@dataclass
class OperationClients:
    tasks: task_pb2_grpc.TaskServiceStub
    uploads: upload_pb2_grpc.UploadServiceStub


class ResultRefused(Exception):
    """The upload service would not store the result (the owner's quota): the task fails."""


class FileOperation:
    """An operation run over a file's records: begun with its header (stepped_blocks' `begin`),
    then given what each block's step made; its blocks are parsed as `parallelism` says."""

    def __init__(self, spec: OperationSpec, size_bytes: int, spill_dir: Path,
                 parallelism: Parallelism) -> None:
        self._spec = spec
        self._size_bytes = size_bytes
        self._spill_dir = spill_dir
        self._parallelism = parallelism
        self.header: list[str] = []
        self.operation: Operation | None = None
        self.parser: Parser | None = None

    def begin(self, header: list[str], dialect: Dialect) -> Parser:
        self.header = header
        self.operation = start_operation(plan(self._spec, header), header, self._size_bytes,
                                         self._spill_dir)
        self.parser = self._parallelism.parser(
            BlockJob(dialect.delimiter, len(header), self.operation.step), dialect.encoding,
            self._size_bytes)
        return self.parser

    def add(self, parsed: Parsed) -> Operation:
        assert self.operation is not None
        self.operation.add(parsed.value)
        return self.operation


class OperationRun:
    """One attempt: the counts so far, reported at least every REPORT_SECONDS, which renews the
    lease and tells whether the user cancelled."""

    def __init__(self, clients: OperationClients, task_id: str, worker_id: str) -> None:
        self._clients = clients
        self._task_id = task_id
        self._worker_id = worker_id
        self.progress = task_pb2.Progress()
        self.unreported: list[task_pb2.RejectedRow] = []
        self.cancelled = False
        self._last_report = time.monotonic()

    def tick(self, tally: Tally | None = None, *, now: bool = False) -> None:
        """Takes the tally's counts, and reports them when `now` or when a report is due."""
        if tally is not None:
            self.progress.rows_out = tally.rows_out
            self.progress.duplicates = tally.duplicates
            self.progress.distinct = tally.distinct
        if now or time.monotonic() - self._last_report >= REPORT_SECONDS \
                or len(self.unreported) >= MAX_ROWS_PER_REPORT:
            self.report()

    def report(self) -> None:
        response = self._clients.tasks.ReportProgress(task_pb2.ReportProgressRequest(
            task_id=self._task_id, worker_id=self._worker_id, progress=self.progress,
            rejected=self.unreported[:MAX_ROWS_PER_REPORT]), timeout=30)
        del self.unreported[:MAX_ROWS_PER_REPORT]
        self._last_report = time.monotonic()
        if response.cancel_requested:
            self.cancelled = True
            raise task_claims.Cancelled()

    def execute(self, file: upload_pb2.File, operation_message: task_pb2.Operation,
                limits: CsvLimits, spill_dir: Path, parallelism: Parallelism) -> upload_pb2.File:
        """Reads the file, runs the operation and stores its result; the stored result."""
        def chunks() -> Iterator[bytes]:
            for response in self._clients.uploads.ReadFile(
                    upload_pb2.ReadFileRequest(file_id=file.file_id)):
                yield response.chunk

        stream = ByteStream(chunks())
        run = FileOperation(spec_from_message(operation_message), file.size_bytes, spill_dir,
                            parallelism)
        for parsed in stepped_blocks(stream, lambda: is_utf8(chunks()), limits,
                                     stored_dialect(file.encoding, file.delimiter), run.begin):
            self._add(run, parsed, stream)
        operation = run.operation
        if operation is None:
            raise FileRejected("the file has only blank lines: it has no header")
        self.progress.bytes_processed = file.size_bytes
        # Reported whatever the time since the last report: a cancel asked for while the file
        # was read stops the run before its result is stored (a small file is read whole before
        # the next report would be due, and the run ended done despite the cancel).
        self.tick(operation.tally, now=True)
        stored = self._store(file, operation.result(run.header,
                                                    lambda: self.tick(operation.tally)))
        self.tick(operation.tally)
        return stored

    def _add(self, run: FileOperation, parsed: Parsed, stream: ByteStream) -> None:
        operation = run.add(parsed)
        progress = self.progress
        progress.rows_read += parsed.records
        for record in parsed.malformed:
            progress.rows_rejected += 1
            self.unreported.append(task_pb2.RejectedRow(
                line=record.line, raw=raw_sample(record),
                reason=record.rejected or field_count_reason(len(record.fields),
                                                             len(run.header))))
            if len(self.unreported) >= MAX_ROWS_PER_REPORT:
                self.tick(operation.tally)
        progress.bytes_processed = stream.consumed
        self.tick(operation.tally)

    def _store(self, file: upload_pb2.File, data: Iterator[bytes]) -> upload_pb2.File:
        def requests() -> Iterator[upload_pb2.StoreResultRequest]:
            yield upload_pb2.StoreResultRequest(metadata=upload_pb2.ResultMetadata(
                task_id=self._task_id, owner=file.owner, name=file.original_name))
            for chunk in data:
                yield upload_pb2.StoreResultRequest(chunk=chunk)

        try:
            return self._clients.uploads.StoreResult(requests(), timeout=3600)
        except grpc.RpcError as exc:
            if self.cancelled:  # the request stream stopped at the cancel
                raise task_claims.Cancelled() from None
            if exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                raise ResultRefused(f"the result could not be stored: {exc.details()}") from None
            raise


def run_operation(clients: OperationClients, task_id: str, worker_id: str, limits: CsvLimits,
                  spill_root: str, parallelism: Parallelism,
                  max_attempts: int = task_claims.MAX_ATTEMPTS) -> str:
    """Runs the job for one task; returns the status it ended with ('skipped' when another
    worker holds the task or it already ended). Transient errors are retried with backoff,
    each attempt from the start."""
    return task_claims.with_retries(
        lambda _: _attempt(clients, task_id, worker_id, limits, spill_root, parallelism),
        clients.tasks,
        task_id, worker_id, again="running the operation again", max_attempts=max_attempts)


def _attempt(clients: OperationClients, task_id: str, worker_id: str, limits: CsvLimits,
             spill_root: str, parallelism: Parallelism) -> str:
    claim = task_claims.claim(clients.tasks, task_id, worker_id, jobs.OPERATION_KINDS)
    if isinstance(claim, str):
        return claim
    run = OperationRun(clients, task_id, worker_id)
    status, error, stored = "done", "", None
    try:
        file = clients.uploads.GetFile(upload_pb2.GetFileRequest(file_id=claim.task.file_id),
                                       timeout=30)
        if file.deleted:
            raise FileRejected("the file was deleted before the operation could read it")
        log.info("operation started", extra={"task_id": task_id, "kind": claim.task.kind,
                                             "bytes": file.size_bytes})
        with tempfile.TemporaryDirectory(prefix="marquee-op-", dir=spill_root or None) as spill:
            stored = run.execute(file, claim.task.operation, limits, Path(spill), parallelism)
    except (FileRejected, InvalidArgument, ResultRefused, ParsingProcessLost) as exc:
        status, error = "failed", str(exc)
    except task_claims.Cancelled:
        status = "cancelled"
    except grpc.RpcError as exc:
        if exc.code() in task_claims.TRANSIENT:
            raise
        status, error = "failed", f"operation failed: {exc.details()}"
    result = {} if stored is None else {
        "result_file_id": stored.file_id, "result_size_bytes": stored.size_bytes,
        "result_content_type": _content_type(claim.task.kind)}
    status = task_claims.finish(clients.tasks, task_id, worker_id, status, error,
                                progress=run.progress, rejected=run.unreported, **result)
    log.info("operation ended", extra={"task_id": task_id, "status": status, "error": error})
    return status


def _content_type(kind: str) -> str:
    return UniqueValues.content_type if kind == jobs.UNIQUE else Dedupe.content_type
