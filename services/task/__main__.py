"""Starts the task service: `python -m services.task`."""

from __future__ import annotations

import threading

import grpc

from marquee.task.v1 import task_pb2, task_pb2_grpc
from marquee.upload.v1 import upload_pb2, upload_pb2_grpc
from services.common import jobs, logs, mongo, periodic
from services.common.clients import internal_channel, jwks_verifier
from services.common.grpc_server import serve
from services.common.settings import Settings
from services.task.repository import TaskRepository
from services.task.server import POLICY, TaskServicer
from services.task.service import TaskService


def main() -> None:
    settings = Settings.from_env()
    logs.configure("task", settings.log_level)
    repo = TaskRepository(mongo.connect(settings, "task"))
    repo.ensure_indexes()
    celery = jobs.celery_app(settings)

    def enqueue(task_id: str) -> None:
        celery.send_task(jobs.INGEST_CSV, args=[task_id])

    uploads = upload_pb2_grpc.UploadServiceStub(internal_channel(settings.upload_addr, settings))

    def delete_file(file_id: str) -> None:
        try:
            uploads.DeleteFile(upload_pb2.DeleteFileRequest(file_id=file_id), timeout=30)
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.NOT_FOUND:  # already gone is what we wanted
                raise

    service = TaskService(repo, enqueue, delete_file, lease_seconds=settings.task_lease_seconds,
                          file_retention_seconds=settings.file_retention_seconds)
    interval = float(settings.task_sweep_seconds)

    def sweep() -> None:
        """Finds tasks that lost their worker (lease expired) or their message, and deletes
        files past their retention."""
        service.sweep(grace_seconds=max(60.0, interval * 4))
        service.purge_files()

    stop = threading.Event()
    periodic.every(interval, sweep, stop, name="stall-sweep")
    serve(
        name="task",
        listen=settings.grpc_listen or settings.task_addr,
        service_names=[task_pb2.DESCRIPTOR.services_by_name["TaskService"].full_name],
        register=lambda server: task_pb2_grpc.add_TaskServiceServicer_to_server(
            TaskServicer(service), server
        ),
        policy=POLICY,
        verifier=jwks_verifier(settings),
        service_key=settings.service_key(),
        on_stop=stop.set,
    )


if __name__ == "__main__":
    main()
