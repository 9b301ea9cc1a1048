"""The task service as uploads need it: the pending-task quota before the bytes, the file's
ingestion task after them. The task service owns tasks and their limit; its refusal reaches the
client with its own message."""

from __future__ import annotations

import grpc

from marquee.task.v1 import task_pb2, task_pb2_grpc
from services.common import jobs
from services.common.errors import LimitReached, Unavailable
from services.upload.records import UploadedFile
from services.worker.operation_spec import OperationSpec, spec_message

# A task service that is restarting is waited for (wait_for_ready), up to this long, rather
# than failing the upload at once while its channel reconnects.
TIMEOUT_SECONDS = 30


def _limit_reached(exc: grpc.RpcError) -> LimitReached | None:
    if exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:  # type: ignore[attr-defined]
        return LimitReached(exc.details())  # type: ignore[attr-defined]
    return None


class TaskClient:
    def __init__(self, channel: grpc.Channel) -> None:
        self._stub = task_pb2_grpc.TaskServiceStub(channel)

    def check_quota(self, owner: str, incoming: int) -> None:
        try:
            self._stub.CheckTaskQuota(task_pb2.CheckTaskQuotaRequest(
                user=owner, incoming=incoming), timeout=TIMEOUT_SECONDS, wait_for_ready=True)
        except grpc.RpcError as exc:
            # Without the task service the file's task could not be created either: say so
            # before the client sends the file, not after.
            raise (_limit_reached(exc) or Unavailable(
                "the task service cannot take new tasks right now, so the upload was not "
                f"started: try again ({exc.code().name})")) from None

    def create(self, file: UploadedFile, username: str, by_admin: bool) -> str:
        """The file's ingestion task; LimitReached when the user reached the limit while the file
        streamed in (another upload's task), Unavailable when the task service failed."""
        return self._create(task_pb2.CreateTaskRequest(
            user=file.owner, username=username, kind=jobs.INGEST_CSV, file_id=file.id,
            file_path=file.file_path, original_name=file.original_name,
            bytes_total=file.size_bytes, uploaded_by_admin=by_admin))

    def create_operation(self, file: UploadedFile, spec: OperationSpec, username: str) -> str:
        """The operation's task on the file; refused as `create` is."""
        return self._create(task_pb2.CreateTaskRequest(
            user=file.owner, username=username, kind=spec.operation, file_id=file.id,
            file_path=file.file_path, original_name=file.original_name,
            bytes_total=file.size_bytes, operation=spec_message(spec)))

    def _create(self, request: task_pb2.CreateTaskRequest) -> str:
        try:
            task = self._stub.CreateTask(request, timeout=TIMEOUT_SECONDS, wait_for_ready=True)
        except grpc.RpcError as exc:
            raise (_limit_reached(exc) or Unavailable(
                f"the task service could not create the task ({exc.code().name})")) from None
        return str(task.task_id)
