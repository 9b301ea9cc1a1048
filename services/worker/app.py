"""The Celery worker's app and job registrations (`celery -A services.worker.app worker`)."""

from __future__ import annotations

import functools
import logging
import os
import socket
import uuid
from typing import Any

import grpc
from celery.signals import setup_logging, worker_ready

from marquee.catalog.v1 import catalog_pb2_grpc
from marquee.task.v1 import task_pb2_grpc
from marquee.upload.v1 import upload_pb2_grpc
from services.common import jobs, logs
from services.common.clients import _ServiceKey, internal_channel
from services.common.grpc_server import GRPC_OPTIONS
from services.common.settings import Settings
from services.worker.ingest import Clients, ingest_csv

settings = Settings.from_env()

# ReadFile sends the whole stored file as fast as the upload service can read it, while the job
# consumes it at parsing speed. gRPC's BDP probing keeps growing the HTTP/2 receive windows on a
# fast link (loopback), so the unread part of the file piled up in this process (tens of MB, more
# the longer the file). Without it the windows stay at their defaults and the stream only moves
# as fast as the job reads it.
READ_OPTIONS = [*GRPC_OPTIONS, ("grpc.http2.bdp_probe", 0)]


def _read_channel(addr: str) -> grpc.Channel:
    """An internal channel (service key) whose receive windows do not grow."""
    return grpc.intercept_channel(grpc.insecure_channel(addr, options=READ_OPTIONS),
                                  _ServiceKey(settings.service_key()))
app = jobs.celery_app(settings)


@setup_logging.connect
def _logging(**_: Any) -> None:
    logs.configure("worker", settings.log_level)


@functools.cache
def _clients(pid: int) -> Clients:
    """Channels are opened per process, after the pool forked (gRPC channels do not survive
    a fork)."""
    del pid
    return Clients(
        tasks=task_pb2_grpc.TaskServiceStub(internal_channel(settings.task_addr, settings)),
        uploads=upload_pb2_grpc.UploadServiceStub(_read_channel(settings.upload_addr)),
        catalog=catalog_pb2_grpc.CatalogServiceStub(internal_channel(settings.catalog_addr,
                                                                     settings)),
    )


@app.task(name=jobs.INGEST_CSV)
def ingest_csv_job(task_id: str) -> str:
    # Unique per run: a redelivered copy of this message must not pass for the running one.
    worker_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    return ingest_csv(_clients(os.getpid()), task_id, worker_id, settings.ingest_batch_size)


@worker_ready.connect
def _ready(**_: Any) -> None:
    # The local supervisor waits for this line before it calls the stack ready.
    logging.getLogger(__name__).info("worker ready")
