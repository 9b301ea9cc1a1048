"""The Celery worker's app and job registrations (`celery -A services.worker.app worker`)."""

from __future__ import annotations

import functools
import logging
import os
import socket
import uuid
from typing import Any

from celery.signals import setup_logging, worker_ready

from marquee.catalog.v1 import catalog_pb2_grpc
from marquee.ratings.v1 import ratings_pb2_grpc
from marquee.recommendations.v1 import recommendations_pb2_grpc
from marquee.task.v1 import task_pb2_grpc
from marquee.upload.v1 import upload_pb2_grpc
from services.common import jobs, logs
from services.common.clients import internal_channel
from services.common.settings import Settings
from services.worker.block_workers import Parallelism
from services.worker.csv_source import CsvLimits
from services.worker.ingest import Clients, ingest_csv
from services.worker.operation_job import OperationClients, run_operation
from services.worker.recommend import RecommendClients, recommend

settings = Settings.from_env()
app = jobs.celery_app(settings)
csv_limits = CsvLimits.from_settings(settings)


@setup_logging.connect
def _logging(**_: Any) -> None:
    logs.configure("worker", settings.log_level)


@functools.cache
def _clients(pid: int) -> Clients:
    """Channels are opened per process, after the pool forked (gRPC channels do not survive
    a fork)."""
    del pid
    return Clients(
        tasks=task_pb2_grpc.TaskServiceStub(internal_channel(settings, "task")),
        uploads=upload_pb2_grpc.UploadServiceStub(internal_channel(settings, "upload")),
        catalog=catalog_pb2_grpc.CatalogServiceStub(internal_channel(settings, "catalog")),
    )


@app.task(name=jobs.job_name(jobs.INGEST_CSV))
def ingest_csv_job(task_id: str) -> str:
    # Unique per run: a redelivered copy of this message must not pass for the running one.
    worker_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    return ingest_csv(_clients(os.getpid()), task_id, worker_id, settings.ingest_batch_size,
                      csv_limits)


@functools.cache
def _recommend_clients(pid: int) -> RecommendClients:
    del pid  # per process, as _clients
    return RecommendClients(
        tasks=task_pb2_grpc.TaskServiceStub(internal_channel(settings, "task")),
        ratings=ratings_pb2_grpc.RatingsServiceStub(internal_channel(settings, "ratings")),
        catalog=catalog_pb2_grpc.CatalogCandidatesServiceStub(
            internal_channel(settings, "catalog")),
        recommendations=recommendations_pb2_grpc.RecommendationsServiceStub(
            internal_channel(settings, "recommendations")),
    )


@app.task(name=jobs.job_name(jobs.RECOMMEND))
def recommend_job(task_id: str) -> str:
    worker_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    return recommend(_recommend_clients(os.getpid()), task_id, worker_id,
                     settings.recommendations_min_votes)


@functools.cache
def _operation_clients(pid: int) -> OperationClients:
    del pid  # per process, as _clients
    return OperationClients(
        tasks=task_pb2_grpc.TaskServiceStub(internal_channel(settings, "task")),
        uploads=upload_pb2_grpc.UploadServiceStub(internal_channel(settings, "upload")),
    )


def _operation(task_id: str) -> str:
    worker_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    return run_operation(_operation_clients(os.getpid()), task_id, worker_id, csv_limits,
                         settings.csv_ops_spill_dir, Parallelism.from_settings(settings))


# One job per operation kind (each refuses a task of a kind that is not an operation); they
# share the code, which reads the operation from the task.
@app.task(name=jobs.job_name(jobs.DEDUPE))
def dedupe_job(task_id: str) -> str:
    return _operation(task_id)


@app.task(name=jobs.job_name(jobs.UNIQUE))
def unique_job(task_id: str) -> str:
    return _operation(task_id)


@app.task(name=jobs.job_name(jobs.FILTER))
def filter_job(task_id: str) -> str:
    return _operation(task_id)


@worker_ready.connect
def _ready(**_: Any) -> None:
    # The local supervisor waits for this line before it calls the stack ready.
    logging.getLogger(__name__).info("worker ready")
