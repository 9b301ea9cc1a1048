"""Starts the upload service: `python -m services.upload`."""

from __future__ import annotations

import logging
import threading
from typing import Any

from marquee.task.v1 import task_pb2, task_pb2_grpc
from marquee.upload.v1 import upload_pb2, upload_pb2_grpc
from services.common import logs, mongo, periodic
from services.common.clients import internal_channel, jwks_verifier
from services.common.grpc_server import serve
from services.common.settings import Settings
from services.upload.repository import FileRepository
from services.upload.server import POLICY, UploadServicer
from services.upload.service import INGEST_CSV, UploadService
from services.upload.storage import open_storage

log = logging.getLogger(__name__)


def main() -> None:
    settings = Settings.from_env()
    logs.configure("upload", settings.log_level)
    db = mongo.connect(settings, "upload")
    files = FileRepository(db)
    files.ensure_indexes()
    tasks = task_pb2_grpc.TaskServiceStub(internal_channel(settings.task_addr, settings))

    def create_task(record: dict[str, Any]) -> str:
        task = tasks.CreateTask(task_pb2.CreateTaskRequest(
            user=record["owner"], kind=INGEST_CSV, file_id=record["_id"],
            file_path=record["file_path"], original_name=record["original_name"],
            bytes_total=record["size_bytes"],
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
    serve(
        name="upload",
        listen=settings.grpc_listen or settings.upload_addr,
        service_names=[upload_pb2.DESCRIPTOR.services_by_name["UploadService"].full_name],
        register=lambda server: upload_pb2_grpc.add_UploadServiceServicer_to_server(
            UploadServicer(service), server
        ),
        policy=POLICY,
        verifier=jwks_verifier(settings),
        service_key=settings.service_key(),
        on_stop=stop.set,
    )


if __name__ == "__main__":
    main()
