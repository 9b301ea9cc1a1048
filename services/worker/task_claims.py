"""How every job takes its task: claim it from the task service (another worker may hold it, or
it may have ended), refuse a task of another kind, and retry what a restarting service or
database makes fail, with backoff, failing the task with the last error when attempts run out."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection
from typing import Any

import grpc

from marquee.task.v1 import task_pb2, task_pb2_grpc

log = logging.getLogger(__name__)

TRANSIENT = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
             grpc.StatusCode.ABORTED, grpc.StatusCode.RESOURCE_EXHAUSTED}
CALL_TIMEOUT_SECONDS = 30
MAX_ATTEMPTS = 5


class Cancelled(Exception):
    """The task's owner cancelled it: the job stops where it is."""


def finish(tasks: task_pb2_grpc.TaskServiceStub, task_id: str, worker_id: str, status: str,
           error: str = "", **fields: Any) -> str:
    """Ends the task with `status` (and the FinishTaskRequest's other `fields`); returns the
    status it ended with, or "skipped" when this worker no longer holds it: its lease ran out
    while a call was slow and the sweep handed the task on, or it ended meanwhile. Its holder
    ends it then, so this worker's outcome is logged and left."""
    try:
        tasks.FinishTask(task_pb2.FinishTaskRequest(
            task_id=task_id, worker_id=worker_id, status=status, error=error, **fields),
            timeout=CALL_TIMEOUT_SECONDS)
    except grpc.RpcError as exc:
        if exc.code() not in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.NOT_FOUND):
            raise
        log.warning("task not ended by this worker: it no longer holds it",
                    extra={"task_id": task_id, "status": status, "reason": exc.details()})
        return "skipped"
    return status


def claim(tasks: task_pb2_grpc.TaskServiceStub, task_id: str, worker_id: str,
          kinds: Collection[str]) -> task_pb2.ClaimTaskResponse | str:
    """The claim, or the status the task is left with when there is nothing to run: "skipped"
    when another worker holds it or it has ended, "failed" when it is of a kind this job does
    not run (a message that reached the wrong job, from a routing bug or a mixed deployment,
    would do the wrong work, so the task fails and says why)."""
    try:
        claimed = tasks.ClaimTask(task_pb2.ClaimTaskRequest(task_id=task_id, worker_id=worker_id),
                                  timeout=CALL_TIMEOUT_SECONDS)
    except grpc.RpcError as exc:
        if exc.code() in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.NOT_FOUND):
            log.info("task skipped", extra={"task_id": task_id, "reason": exc.details()})
            return "skipped"
        raise
    if claimed.task.kind not in kinds:
        log.error("task refused", extra={"task_id": task_id, "kind": claimed.task.kind})
        return finish(tasks, task_id, worker_id, "failed",
                      f"this worker's {'/'.join(sorted(kinds))} job cannot run a task of kind "
                      f"{claimed.task.kind!r}")
    return claimed


def with_retries(attempt: Callable[[int], str], tasks: task_pb2_grpc.TaskServiceStub,
                 task_id: str, worker_id: str, *, again: str,
                 max_attempts: int = MAX_ATTEMPTS) -> str:
    """`attempt(n)` until it returns the status the task ended with, retrying transient errors
    with backoff (`again` says in the log what a retry does); after the last one the task
    fails with its error (and keeps the counts it reported)."""
    last_error = ""
    for number in range(1, max_attempts + 1):
        try:
            return attempt(number)
        except grpc.RpcError as exc:
            if exc.code() not in TRANSIENT:
                raise
            last_error = exc.details() or exc.code().name
            delay = min(30.0, 2.0 ** number)
            log.warning(f"transient error; {again}",
                        extra={"task_id": task_id, "error": last_error, "retry_in": delay})
            time.sleep(delay)
    return finish(tasks, task_id, worker_id, "failed",
                  f"gave up after {max_attempts} attempts; last error: {last_error}")
