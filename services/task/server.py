"""TaskService over gRPC."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict
from datetime import UTC
from typing import Any

import grpc
from google.api import httpbody_pb2
from google.protobuf import json_format

from marquee.task.v1 import task_pb2, task_pb2_grpc
from services.common.access import current_caller
from services.common.rest import (
    CONTENT_DISPOSITION,
    NDJSON,
    content_disposition,
    json_body,
    set_http_content_type,
)
from services.task.records import (
    PROGRESS_FIELDS,
    NewTask,
    Progress,
    RejectedRow,
    Task,
    TaskResult,
)
from services.task.service import RejectionsExport, TaskPage, TaskService, pace
from services.task.stream_slots import StreamSlots

_TIMES = ("created_at", "started_at", "updated_at", "finished_at")


def to_proto(task: Task) -> task_pb2.Task:
    message = task_pb2.Task(
        task_id=task.id, status=task.status, user=task.username, user_id=task.user_id,
        kind=task.kind, file_id=task.file_id, file_path=task.file_path,
        original_name=task.original_name, bytes_total=task.bytes_total,
        **asdict(task.progress), **asdict(pace(task)),
        rejected_sample=[task_pb2.RejectedRow(**asdict(r)) for r in task.rejected_sample],
        error=task.error, attempts=task.attempts, cancel_requested=task.cancel_requested,
        file_deleted=task.file_deleted,
    )
    if task.operation is not None:
        json_format.ParseDict(task.operation, message.operation)
        if task.result is not None:
            p = task.progress
            message.result.CopyFrom(task_pb2.OperationResult(
                rows_in=p.rows_read, rows_out=p.rows_out, duplicates=p.duplicates,
                distinct=p.distinct, rows_rejected=p.rows_rejected,
                content_type=task.result.content_type, size_bytes=task.result.size_bytes))
    for field in _TIMES:
        if when := getattr(task, field):
            getattr(message, field).FromDatetime(when.replace(tzinfo=UTC))
    return message


def _progress(message: task_pb2.Progress) -> Progress:
    return Progress(**{f: getattr(message, f) for f in PROGRESS_FIELDS})


def _rows(rows: Iterable[task_pb2.RejectedRow]) -> list[RejectedRow]:
    return [RejectedRow(line=r.line, reason=r.reason, raw=r.raw) for r in rows]


def _page(service: TaskService, request: task_pb2.ListTasksRequest) -> TaskPage:
    def opt(name: str) -> int | None:
        return getattr(request, name) if request.HasField(name) else None

    return service.list_tasks(current_caller().user_id, page=opt("page"), limit=opt("limit"),
                              page_size=request.page_size, page_token=request.page_token)


def _all_tasks_page(service: TaskService, request: task_pb2.ListAllTasksRequest) -> TaskPage:
    def opt(name: str) -> int | None:
        return getattr(request, name) if request.HasField(name) else None

    return service.list_all_tasks(user_id=request.user_id, status=request.status,
                                  page=opt("page"), limit=opt("limit"),
                                  page_size=request.page_size, page_token=request.page_token)


def _rest_json(message: task_pb2.Task) -> dict[str, Any]:
    return json_format.MessageToDict(message, preserving_proto_field_name=True,
                                     always_print_fields_with_no_presence=True)


def _operation(request: task_pb2.CreateTaskRequest) -> dict[str, Any] | None:
    if not request.HasField("operation"):
        return None
    return json_format.MessageToDict(request.operation, preserving_proto_field_name=True)


# What a result's download is called: the file's name with the operation, and the type's suffix.
def _result_name(task: Task, content_type: str) -> str:
    stem = task.original_name.rsplit(".", 1)[0] or "file"
    return f"{stem}-{task.kind}.{'json' if content_type.startswith('application/json') else 'csv'}"


class TaskServicer(task_pb2_grpc.TaskServiceServicer):
    def __init__(self, service: TaskService, streams: StreamSlots,
                 read_file: Callable[[str], Iterator[bytes]]) -> None:
        self._service = service
        self._streams = streams
        # An operation's result, streamed from the upload service that stores it.
        self._read_file = read_file

    def _hold_stream_slot(self, context: grpc.ServicerContext) -> None:
        """Takes one of the caller's stream slots until the call ends, however it ends (grpc runs
        the callback when the call completes, fails or is cancelled)."""
        give_back = self._streams.take(current_caller().user_id)
        if not context.add_callback(give_back):  # the call already ended
            give_back()

    def GetTask(self, request: task_pb2.GetTaskRequest, context: grpc.ServicerContext
                ) -> task_pb2.Task:
        return to_proto(self._service.get(request.task_id, current_caller().user_id))

    def ListTasks(self, request: task_pb2.ListTasksRequest, context: grpc.ServicerContext
                  ) -> task_pb2.ListTasksResponse:
        page = _page(self._service, request)
        return task_pb2.ListTasksResponse(tasks=[to_proto(t) for t in page.tasks],
                                          next_page_token=page.next_page_token)

    def ListTasksJson(self, request: task_pb2.ListTasksRequest, context: grpc.ServicerContext
                      ) -> httpbody_pb2.HttpBody:
        page = _page(self._service, request)
        if page.next_page_token:  # the body stays the contract's bare array
            context.send_initial_metadata((("x-next-page-token", page.next_page_token),))
        return json_body([_rest_json(to_proto(t)) for t in page.tasks])

    def ListAllTasks(self, request: task_pb2.ListAllTasksRequest, context: grpc.ServicerContext
                     ) -> task_pb2.ListAllTasksResponse:
        page = _all_tasks_page(self._service, request)
        return task_pb2.ListAllTasksResponse(tasks=[to_proto(t) for t in page.tasks],
                                             next_page_token=page.next_page_token)

    def WatchTask(self, request: task_pb2.WatchTaskRequest, context: grpc.ServicerContext
                  ) -> Iterator[task_pb2.Task]:
        self._hold_stream_slot(context)
        tasks = self._service.watch(request.task_id, current_caller().user_id,
                                    context.is_active)
        first = next(tasks, None)  # an unknown or another user's task: its error, as JSON
        set_http_content_type(context, NDJSON)
        if first is not None:
            yield to_proto(first)
        for task in tasks:
            yield to_proto(task)

    def CancelTask(self, request: task_pb2.CancelTaskRequest, context: grpc.ServicerContext
                   ) -> task_pb2.Task:
        return to_proto(self._service.cancel(request.task_id, current_caller().user_id))

    def ExportTaskErrors(self, request: task_pb2.ExportTaskErrorsRequest,
                         context: grpc.ServicerContext) -> Iterator[httpbody_pb2.HttpBody]:
        self._hold_stream_slot(context)
        export = self._service.rejections(request.task_id, current_caller().user_id)
        context.send_initial_metadata(((NOT_STORED_HEADER, str(export.not_stored)),))
        buffer = io.StringIO()
        writer = csv.writer(buffer, quoting=csv.QUOTE_ALL)
        writer.writerow(["line", "reason", "raw"])
        first = True
        for i, row in enumerate(export.rows, 1):
            writer.writerow([row.line, spreadsheet_safe(row.reason), spreadsheet_safe(row.raw)])
            if i % 500 == 0:
                yield _csv_chunk(buffer, first)
                first = False
        if export.not_stored:
            writer.writerow(["", truncation_note(export), ""])
        yield _csv_chunk(buffer, first)

    def GetTaskResult(self, request: task_pb2.GetTaskResultRequest,
                      context: grpc.ServicerContext) -> Iterator[httpbody_pb2.HttpBody]:
        self._hold_stream_slot(context)
        task, result = self._service.result(request.task_id, current_caller().user_id)
        chunks = self._read_file(result.file_id)
        context.send_initial_metadata(
            ((CONTENT_DISPOSITION, content_disposition(_result_name(task, result.content_type))),))
        content_type = result.content_type  # only the first message sets it
        for chunk in chunks:
            yield httpbody_pb2.HttpBody(content_type=content_type, data=chunk)
            content_type = ""
        if content_type:
            yield httpbody_pb2.HttpBody(content_type=content_type)

    def CheckTaskQuota(self, request: task_pb2.CheckTaskQuotaRequest,
                       context: grpc.ServicerContext) -> task_pb2.CheckTaskQuotaResponse:
        active = self._service.check_quota(request.user, request.incoming)
        return task_pb2.CheckTaskQuotaResponse(active=active,
                                               limit=self._service.limits.pending_per_user)

    def CreateTask(self, request: task_pb2.CreateTaskRequest, context: grpc.ServicerContext
                   ) -> task_pb2.Task:
        return to_proto(self._service.create(NewTask(
            user_id=request.user, username=request.username, kind=request.kind,
            file_id=request.file_id, file_path=request.file_path,
            original_name=request.original_name, bytes_total=request.bytes_total,
            uploaded_by_admin=request.uploaded_by_admin, operation=_operation(request),
        )))

    def ClaimTask(self, request: task_pb2.ClaimTaskRequest, context: grpc.ServicerContext
                  ) -> task_pb2.ClaimTaskResponse:
        task = self._service.claim(request.task_id, request.worker_id)
        return task_pb2.ClaimTaskResponse(
            task=to_proto(task),
            checkpoint=task_pb2.Progress(**asdict(task.progress)),
            lease_seconds=self._service.lease_seconds,
            uploaded_by_admin=task.uploaded_by_admin,
        )

    def ReportProgress(self, request: task_pb2.ReportProgressRequest,
                       context: grpc.ServicerContext) -> task_pb2.ReportProgressResponse:
        task = self._service.report(request.task_id, request.worker_id,
                                    _progress(request.progress), _rows(request.rejected))
        return task_pb2.ReportProgressResponse(cancel_requested=task.cancel_requested)

    def FinishTask(self, request: task_pb2.FinishTaskRequest, context: grpc.ServicerContext
                   ) -> task_pb2.Task:
        progress = _progress(request.progress) if request.HasField("progress") else None
        result = TaskResult(request.result_file_id, request.result_content_type,
                            request.result_size_bytes) if request.result_file_id else None
        return to_proto(self._service.finish(
            request.task_id, request.worker_id, request.status, progress,
            _rows(request.rejected), request.error, result,
        ))


# How many rejected rows the task counted but did not store, before the errors export's body,
# for programs; people read the export's last row.
NOT_STORED_HEADER = "x-rejections-not-stored"


def truncation_note(export: RejectionsExport) -> str:
    """The `reason` of the errors export's last row when rows are missing (its `line` and
    `raw` are empty, so no program takes it for a rejected row)."""
    missing = "1 more rejected row was" if export.not_stored == 1 else \
        f"{export.not_stored} more rejected rows were"
    return (f"{missing} not stored: a task keeps its first {export.stored_at_most} "
            "(TASK_MAX_STORED_REJECTIONS); rows_rejected counts them all")


# A spreadsheet reads a cell that starts with one of these as a formula (=HYPERLINK(...) sends
# data away, =cmd|... ran commands through DDE); tab and carriage return too (OWASP, CSV
# Injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(cell: str) -> str:
    """The cell as text a spreadsheet shows as it is: OWASP's advice, a leading `'` on a cell
    that would start a formula (the exporter also quotes every cell)."""
    return "'" + cell if cell.startswith(FORMULA_STARTS) else cell


def _csv_chunk(buffer: io.StringIO, first: bool) -> httpbody_pb2.HttpBody:
    data = buffer.getvalue().encode()
    buffer.seek(0)
    buffer.truncate()
    # Only the first message of a streamed HttpBody sets the response's content type.
    return httpbody_pb2.HttpBody(content_type="text/csv; charset=utf-8" if first else "", data=data)

