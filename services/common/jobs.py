"""The Celery app that carries background jobs (Redis broker), shared by producer and worker, and
the kinds of job a task can have.

Only ids travel in messages. The task service enqueues a task by its kind (`job_name`); the
worker registers one job per kind and refuses a claimed task of any other kind. Jobs
acknowledge late, so a worker that dies mid-job leaves the message to be redelivered; the task
lease (task service) keeps a redelivery from running a job twice at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from services.common.errors import InvalidArgument

if TYPE_CHECKING:
    from celery import Celery

    from services.common.settings import Settings

QUEUE = "marquee"

# Task kinds, and the Celery job that runs each.
INGEST_CSV = "ingest_csv"
RECOMMEND = "recommend"
# Operations on an uploaded CSV (POST /files/{file_id}/operations): the kind is the operation.
DEDUPE, UNIQUE, FILTER = "dedupe", "unique", "filter"
OPERATION_KINDS = (DEDUPE, UNIQUE, FILTER)
JOB_NAMES = {INGEST_CSV: "marquee.ingest_csv", RECOMMEND: "marquee.recommend",
             DEDUPE: "marquee.csv_dedupe", UNIQUE: "marquee.csv_unique",
             FILTER: "marquee.csv_filter"}


class UnknownKind(InvalidArgument):
    pass


def job_name(kind: str) -> str:
    try:
        return JOB_NAMES[kind]
    except KeyError:
        raise UnknownKind(f"unknown task kind {kind!r}; known kinds: "
                          f"{', '.join(sorted(JOB_NAMES))}") from None


def celery_app(settings: Settings) -> Celery:
    # Imported here: the kinds above are read by processes that never start Celery (the
    # processes that parse blocks for an operation start in half the time without it).
    from celery import Celery

    app = Celery("marquee", broker=settings.redis_url)
    app.conf.update(
        task_default_queue=QUEUE,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        broker_connection_retry_on_startup=True,
        broker_transport_options={
            # Longer than a lease; a redelivery that still finds the lease alive steps aside.
            "visibility_timeout": settings.job_visibility_timeout_seconds,
        },
        worker_hijack_root_logger=False,
    )
    return app
