"""What moves on the terminal while the CLI waits: the upload's byte bar, a task's live
ingestion bar (from WatchTask) and a spinner. All of it goes to stderr, so that stdout carries
only results that scripts read."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.progress import Task as BarTask
from rich.text import Text

from marquee.task.v1 import task_pb2, task_pb2_grpc
from marquee.upload.v1 import upload_pb2, upload_pb2_grpc
from marquee_cli.connection import Connection
from marquee_cli.context import stderr
from marquee_cli.formatting import human_duration, status_text, task_counts
from marquee_cli.pace import Pace

T = TypeVar("T")

# Bytes per UploadFile message: large enough that per-message costs vanish, far below the
# services' message limits.
UPLOAD_CHUNK_BYTES = 256 * 1024
TERMINAL = ("done", "failed", "cancelled")


def upload_file(conn: Connection, path: Path) -> upload_pb2.UploadFileResponse:
    """Streams the file (metadata first, then chunks) with a byte bar that moves as gRPC takes
    each chunk."""
    size = path.stat().st_size
    columns = (
        TextColumn("uploading [bold]{task.description}[/bold]"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=stderr) as progress, path.open("rb") as source:
        bar = progress.add_task(path.name, total=size)

        def requests() -> Iterator[upload_pb2.UploadFileRequest]:
            yield upload_pb2.UploadFileRequest(
                metadata=upload_pb2.FileMetadata(filename=path.name, content_type="text/csv")
            )
            while chunk := source.read(UPLOAD_CHUNK_BYTES):
                yield upload_pb2.UploadFileRequest(chunk=chunk)
                progress.advance(bar, len(chunk))

        response: upload_pb2.UploadFileResponse = conn.upload(
            conn.stub(upload_pb2_grpc.UploadServiceStub).UploadFile, requests()
        )
        progress.update(bar, completed=size)
    return response


class _EtaColumn(ProgressColumn):
    """Counts down between the task's reports (see pace.py)."""

    def render(self, task: BarTask) -> Text:
        pace: Pace | None = task.fields.get("pace")
        if pace is None or task.finished:
            return Text("")
        eta = pace.eta_seconds(
            task.fields["bytes_total"], time.monotonic(), fallback=task.fields["server_eta"]
        )
        # At 0 the bytes are read and the last batch is being committed.
        text = "finishing" if eta is not None and eta < 0.5 else f"ETA {human_duration(eta)}"
        return Text(text, style="progress.remaining")


def watch_task(conn: Connection, task_id: str) -> task_pb2.Task:
    """Follows the task until it ends, with a live bar: status, percent of the file, rows/s,
    the counts, ETA. Returns the task as it ended."""
    pace = Pace()
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[rate]}"),
        TextColumn("{task.fields[counts]}"),
        _EtaColumn(),
    )
    stub = conn.stub(task_pb2_grpc.TaskServiceStub)
    last: task_pb2.Task | None = None
    with Progress(*columns, console=stderr) as progress:
        bar = progress.add_task(
            "waiting", total=100, rate="", counts="", pace=None, bytes_total=0, server_eta=0.0
        )
        for task in conn.stream(stub.WatchTask, task_pb2.WatchTaskRequest(task_id=task_id)):
            last = task
            pace.add(time.monotonic(), task.bytes_processed, task.rows_read)
            rate = pace.rows_per_second(task.rows_per_second)
            active = task.status not in TERMINAL
            progress.update(
                bar,
                completed=task.percent,
                description=status_text(task.status),
                rate=f"{rate:,.0f} rows/s" if active and task.status == "processing" else "",
                counts=task_counts(task),
                pace=pace if active else None,
                bytes_total=task.bytes_total,
                server_eta=task.eta_seconds,
            )
    if last is None or last.status not in TERMINAL:
        # The stream ended before the task did (the server went away): ask once more.
        last = conn.call(stub.GetTask, task_pb2.GetTaskRequest(task_id=task_id))
    assert last is not None
    return last


def with_spinner(
    message: str, poll: Callable[[], T | None], *, interval: float = 0.5, timeout: float = 600.0
) -> T | None:
    """Calls `poll` until it returns something, under a spinner; None when time runs out."""
    deadline = time.monotonic() + timeout
    with stderr.status(message):
        while True:
            result = poll()
            if result is not None or time.monotonic() >= deadline:
                return result
            time.sleep(interval)
