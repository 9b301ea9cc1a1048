"""Starts the task service: `python -m services.task`."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from itertools import chain

import grpc

from marquee.upload.v1 import upload_pb2, upload_pb2_grpc
from services.common import jobs, logs, mongo, periodic
from services.common.clients import admin_confirmer, internal_channel, jwks_verifier
from services.common.grpc_server import serve
from services.common.settings import Settings
from services.task.repository import TaskRepository
from services.task.server import TaskServicer
from services.task.service import TaskLimits, TaskService
from services.task.stream_slots import StreamSlots

# Threads for every call but the long streams: as many as any service's whole pool (serve's
# default). The streams get threads of their own on top, at most one per stream slot, so
# however many watches are open, the other calls (users', and the workers' ClaimTask,
# ReportProgress, FinishTask and the upload service's CreateTask) always find a free thread.
# A server-wide maximum_concurrent_rpcs would not do: once watches filled it, it would refuse
# those calls instead.
CALL_THREADS = 32


def main() -> None:
    settings = Settings.from_env()
    logs.configure("task", settings.log_level)
    repo = TaskRepository(mongo.connect(settings, "task"))
    repo.ensure_indexes()
    celery = jobs.celery_app(settings)

    def enqueue(kind: str, task_id: str) -> None:
        celery.send_task(jobs.job_name(kind), args=[task_id])

    uploads = upload_pb2_grpc.UploadServiceStub(internal_channel(settings, "upload"))

    def delete_file(file_id: str) -> None:
        try:
            uploads.DeleteFile(upload_pb2.DeleteFileRequest(file_id=file_id), timeout=30)
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.NOT_FOUND:  # already gone is what we wanted
                raise

    def read_file(file_id: str) -> Iterator[bytes]:
        """A stored file's bytes; the first chunk is read before this returns, so that a file
        that is gone fails the call before its answer starts."""
        responses = uploads.ReadFile(upload_pb2.ReadFileRequest(file_id=file_id))
        first = next(responses, None)
        return chain(() if first is None else (first.chunk,), (r.chunk for r in responses))

    limits = TaskLimits(pending_per_user=settings.task_max_pending_per_user,
                        stored_rejections=settings.task_max_stored_rejections,
                        list_default=settings.task_list_default_limit,
                        list_max=settings.task_list_max_limit)
    service = TaskService(repo, enqueue, delete_file, lease_seconds=settings.task_lease_seconds,
                          file_retention_seconds=settings.file_retention_seconds, limits=limits)
    interval = float(settings.task_sweep_seconds)

    def sweep() -> None:
        """Finds tasks that lost their worker (lease expired) or their message, and deletes
        files past their retention."""
        service.sweep(grace_seconds=max(60.0, interval * 4))
        service.purge_files()

    stop = threading.Event()
    periodic.every(interval, sweep, stop, name="stall-sweep")
    streams = StreamSlots(per_user=settings.task_streams_per_user,
                          total=settings.task_streams_total)
    serve(settings, "task", TaskServicer(service, streams, read_file),
          verifier=jwks_verifier(settings), confirm_admin=admin_confirmer(settings),
          max_workers=CALL_THREADS + streams.total, on_stop=stop.set)


if __name__ == "__main__":
    main()
