"""Starts the upload service: `python -m services.upload`."""

from __future__ import annotations

import logging
import threading

from marquee.task.v1 import task_pb2, task_pb2_grpc
from services.common import jobs, logs, mongo, periodic
from services.common.clients import internal_channel, jwks_verifier
from services.common.grpc_server import serve
from services.common.settings import Settings
from services.upload.records import UploadedFile
from services.upload.repository import FileRepository
from services.upload.server import MinRate, UploadServicer
from services.upload.service import UploadService
from services.upload.storage import open_storage

log = logging.getLogger(__name__)


def main() -> None:
    settings = Settings.from_env()
    logs.configure("upload", settings.log_level)
    db = mongo.connect(settings, "upload")
    files = FileRepository(db)
    files.ensure_indexes()
    tasks = task_pb2_grpc.TaskServiceStub(internal_channel(settings, "task"))

    def create_task(file: UploadedFile, username: str) -> str:
        task = tasks.CreateTask(task_pb2.CreateTaskRequest(
            user=file.owner, username=username, kind=jobs.INGEST_CSV, file_id=file.id,
            file_path=file.file_path, original_name=file.original_name,
            bytes_total=file.size_bytes,
        ), timeout=30)
        return task.task_id

    storage = open_storage(settings.upload_storage, settings.upload_dir, db)
    grace = settings.upload_orphan_grace_seconds

    def sweep_orphans() -> None:
        if removed := storage.sweep_orphans(grace):
            log.info("deleted what interrupted uploads left", extra={"uploads": removed})

    stop = threading.Event()
    periodic.every(min(grace / 4, 3600.0), sweep_orphans, stop, name="orphan-sweep",
                   first_now=True)
    service = UploadService(files, storage, create_task, settings.max_upload_bytes)
    min_rate = MinRate(settings.upload_min_bytes_per_second, settings.upload_min_rate_grace_seconds)
    serve(settings, "upload", UploadServicer(service, min_rate),
          verifier=jwks_verifier(settings), on_stop=stop.set)


if __name__ == "__main__":
    main()
