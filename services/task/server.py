"""TaskService over gRPC."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from datetime import UTC
from typing import Any

import grpc
from google.api import httpbody_pb2
from google.protobuf import json_format

from marquee.task.v1 import task_pb2, task_pb2_grpc
from services.common.access import Access, current_caller
from services.common.rest import json_body
from services.task.service import PROGRESS_FIELDS, TaskService, view

_S = "/marquee.task.v1.TaskService/"
POLICY = {_S + m: Access.INTERNAL for m in ("CreateTask", "ClaimTask", "ReportProgress",
                                            "FinishTask")}
_TIMES = ("created_at", "started_at", "updated_at", "finished_at")
_SCALARS = ("status", "user", "kind", "file_id", "file_path", "original_name", "bytes_total",
            "percent", "rows_per_second", "eta_seconds", "error", "attempts", "cancel_requested",
            "file_deleted",
            *PROGRESS_FIELDS)


def to_proto(task: dict[str, Any]) -> task_pb2.Task:
    v = view(task)
    message = task_pb2.Task(task_id=v["task_id"], **{f: v[f] for f in _SCALARS if f in v})
    message.rejected_sample.extend(task_pb2.RejectedRow(**r) for r in v["rejected_sample"])
    for field in _TIMES:
        if v.get(field):
            getattr(message, field).FromDatetime(v[field].replace(tzinfo=UTC))
    return message


def _progress(message: task_pb2.Progress) -> dict[str, int]:
    return {f: getattr(message, f) for f in PROGRESS_FIELDS}


def _rows(rows: Iterable[task_pb2.RejectedRow]) -> list[dict[str, Any]]:
    return [{"line": r.line, "reason": r.reason, "raw": r.raw} for r in rows]


def _rest_json(message: task_pb2.Task) -> dict[str, Any]:
    return json_format.MessageToDict(message, preserving_proto_field_name=True,
                                     always_print_fields_with_no_presence=True)


class TaskServicer(task_pb2_grpc.TaskServiceServicer):
    def __init__(self, service: TaskService) -> None:
        self._service = service

    def GetTask(self, request: task_pb2.GetTaskRequest, context: grpc.ServicerContext
                ) -> task_pb2.Task:
        return to_proto(self._service.get(request.task_id, current_caller().user_id))

    def ListTasks(self, request: task_pb2.ListTasksRequest, context: grpc.ServicerContext
                  ) -> task_pb2.ListTasksResponse:
        tasks = self._service.list_tasks(current_caller().user_id)
        return task_pb2.ListTasksResponse(tasks=[to_proto(t) for t in tasks])

    def ListTasksJson(self, request: task_pb2.ListTasksRequest, context: grpc.ServicerContext
                      ) -> httpbody_pb2.HttpBody:
        tasks = self._service.list_tasks(current_caller().user_id)
        return json_body([_rest_json(to_proto(t)) for t in tasks])

    def WatchTask(self, request: task_pb2.WatchTaskRequest, context: grpc.ServicerContext
                  ) -> Iterator[task_pb2.Task]:
        caller = current_caller()
        for task in self._service.watch(request.task_id, caller.user_id, context.is_active):
            yield to_proto(task)

    def CancelTask(self, request: task_pb2.CancelTaskRequest, context: grpc.ServicerContext
                   ) -> task_pb2.Task:
        return to_proto(self._service.cancel(request.task_id, current_caller().user_id))

    def ExportTaskErrors(self, request: task_pb2.ExportTaskErrorsRequest,
                         context: grpc.ServicerContext) -> Iterator[httpbody_pb2.HttpBody]:
        rows = self._service.rejections(request.task_id, current_caller().user_id)
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(["line", "reason", "raw"])
        first = True
        for i, row in enumerate(rows, 1):
            writer.writerow([row["line"], row["reason"], row["raw"]])
            if i % 500 == 0:
                yield _csv_chunk(buffer, first)
                first = False
        yield _csv_chunk(buffer, first)

    def CreateTask(self, request: task_pb2.CreateTaskRequest, context: grpc.ServicerContext
                   ) -> task_pb2.Task:
        return to_proto(self._service.create(
            user=request.user, kind=request.kind, file_id=request.file_id,
            file_path=request.file_path, original_name=request.original_name,
            bytes_total=request.bytes_total,
        ))

    def ClaimTask(self, request: task_pb2.ClaimTaskRequest, context: grpc.ServicerContext
                  ) -> task_pb2.ClaimTaskResponse:
        task = self._service.claim(request.task_id, request.worker_id)
        return task_pb2.ClaimTaskResponse(
            task=to_proto(task),
            checkpoint=task_pb2.Progress(**{f: int(task["progress"].get(f, 0))
                                            for f in PROGRESS_FIELDS}),
            lease_seconds=self._service.lease_seconds,
        )

    def ReportProgress(self, request: task_pb2.ReportProgressRequest,
                       context: grpc.ServicerContext) -> task_pb2.ReportProgressResponse:
        task = self._service.report(request.task_id, request.worker_id,
                                    _progress(request.progress), _rows(request.rejected))
        return task_pb2.ReportProgressResponse(cancel_requested=task["cancel_requested"])

    def FinishTask(self, request: task_pb2.FinishTaskRequest, context: grpc.ServicerContext
                   ) -> task_pb2.Task:
        progress = _progress(request.progress) if request.HasField("progress") else None
        return to_proto(self._service.finish(
            request.task_id, request.worker_id, request.status, progress,
            _rows(request.rejected), request.error,
        ))


def _csv_chunk(buffer: io.StringIO, first: bool) -> httpbody_pb2.HttpBody:
    data = buffer.getvalue().encode()
    buffer.seek(0)
    buffer.truncate()
    # Only the first message of a streamed HttpBody sets the response's content type.
    return httpbody_pb2.HttpBody(content_type="text/csv; charset=utf-8" if first else "", data=data)

