"""UploadService over gRPC: native streaming and the gateway's multipart form of it."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC
from typing import Any, TypeVar

import grpc
from google.api import httpbody_pb2
from google.protobuf.message import Message

from marquee.upload.v1 import upload_pb2, upload_pb2_grpc
from services.common.access import current_caller
from services.common.errors import DomainError, InvalidArgument, TooLarge
from services.common.rest import (
    CONTENT_DISPOSITION,
    content_disposition,
    json_body,
    set_http_status,
)
from services.upload.multipart_stream import FilePart
from services.upload.read_ahead import ReadAhead
from services.upload.records import UploadedFile
from services.upload.service import UPLOADED, StoredUpload, UploadService
from services.upload.user_files import STARTED, FilePage, UserFiles
from services.worker.operation_spec import spec_from_message


def _file(file: UploadedFile) -> upload_pb2.File:
    message = upload_pb2.File(
        file_id=file.id, owner=file.owner, original_name=file.original_name,
        file_path=file.file_path, size_bytes=file.size_bytes, sha256=file.sha256,
        deleted=file.deleted, task_id=file.task_id, encoding=file.header.encoding,
        delimiter=file.header.delimiter,
    )
    message.created_at.FromDatetime(file.created_at.replace(tzinfo=UTC))
    return message


def _file_info(file: UploadedFile) -> upload_pb2.FileInfo:
    message = upload_pb2.FileInfo(
        file_id=file.id, original_name=file.original_name, size_bytes=file.size_bytes,
        sha256=file.sha256, encoding=file.header.encoding, delimiter=file.header.delimiter,
        columns=file.header.columns, task_id=file.task_id, deleted=file.deleted,
        header_error=file.header.error,
    )
    message.uploaded_at.FromDatetime(file.created_at.replace(tzinfo=UTC))
    return message


def file_json(file: UploadedFile) -> dict[str, Any]:
    """A /files item: FileInfo's fields, with the size as a number (the proto3 JSON mapping
    writes an int64 as a string) and the time as RFC 3339 UTC to the millisecond."""
    return {"file_id": file.id, "original_name": file.original_name,
            "size_bytes": file.size_bytes, "sha256": file.sha256,
            "encoding": file.header.encoding, "delimiter": file.header.delimiter,
            "columns": list(file.header.columns),
            "uploaded_at": file.created_at.isoformat(timespec="milliseconds") + "Z",
            "task_id": file.task_id, "deleted": file.deleted,
            "header_error": file.header.error}


def _files_page(files: UserFiles, request: upload_pb2.ListFilesRequest) -> FilePage:
    def opt(name: str) -> int | None:
        return getattr(request, name) if request.HasField(name) else None

    return files.list(current_caller().user_id, page=opt("page"), limit=opt("limit"),
                      page_size=request.page_size, page_token=request.page_token)


def _accepted(context: grpc.ServicerContext, stored: StoredUpload) -> upload_pb2.UploadFileResponse:
    set_http_status(context, 202)
    return upload_pb2.UploadFileResponse(
        task_id=stored.task_id, message=UPLOADED, file_id=stored.file_id,
        size_bytes=stored.size_bytes, sha256=stored.sha256,
    )


M = TypeVar("M", bound=Message)


class UploadTooSlow(DomainError):
    """The gateway turns it into HTTP 408 for uploads."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED


@dataclass(frozen=True)
class MinRate:
    """A client that trickles its upload would hold a server thread and a half-written file for
    as long as it likes: once `grace_seconds` have passed, what it sent must average at least
    `bytes_per_second` (0 turns the check off). A client that sends nothing at all is cut off by
    the gateway's stream idle timeout instead; both are bounded by UPLOAD_MAX_SECONDS there."""

    bytes_per_second: int
    grace_seconds: float
    clock: Callable[[], float] = time.monotonic

    def enforce(self, messages: Iterator[M]) -> Iterator[M]:
        started, received = self.clock(), 0
        for message in messages:
            received += message.ByteSize()
            elapsed = self.clock() - started
            if elapsed > self.grace_seconds and received < self.bytes_per_second * elapsed:
                raise UploadTooSlow(
                    f"upload too slow: {received} bytes in {elapsed:.0f} s; uploads must average "
                    f"at least {self.bytes_per_second} bytes per second")
            yield message


class UploadServicer(upload_pb2_grpc.UploadServiceServicer):
    def __init__(self, service: UploadService, min_rate: MinRate, files: UserFiles) -> None:
        self._service = service
        self._min_rate = min_rate
        self._files = files

    def UploadFile(self, request_iterator: Iterator[upload_pb2.UploadFileRequest],
                   context: grpc.ServicerContext) -> upload_pb2.UploadFileResponse:
        caller = current_caller()
        request_iterator = self._min_rate.enforce(request_iterator)
        first = next(request_iterator, None)
        if first is None or not first.HasField("metadata"):
            raise InvalidArgument("the first message must carry the file metadata")
        with ReadAhead(m.chunk for m in request_iterator if m.HasField("chunk")) as chunks:
            stored = self._service.upload(caller.user_id, first.metadata.filename, chunks,
                                          username=caller.username, by_admin=caller.is_admin)
        return _accepted(context, stored)

    def UploadMultipart(self, request_iterator: Iterator[httpbody_pb2.HttpBody],
                        context: grpc.ServicerContext) -> upload_pb2.UploadFileResponse:
        caller = current_caller()
        request_iterator = self._min_rate.enforce(request_iterator)
        first = next(request_iterator, None)
        if first is None:
            raise InvalidArgument("empty request: send multipart/form-data with the field 'file'")

        def body(rest: Iterable[bytes]) -> Iterator[bytes]:
            yield first.data
            yield from rest

        with ReadAhead(m.data for m in request_iterator) as rest:
            part = FilePart(first.content_type, body(rest))
            try:
                stored = self._service.upload(caller.user_id, part.filename, part,
                                              username=caller.username, by_admin=caller.is_admin)
            except TooLarge:
                set_http_status(context, 413)
                raise
            except UploadTooSlow:
                set_http_status(context, 408)
                raise
        return _accepted(context, stored)

    def GetFile(self, request: upload_pb2.GetFileRequest, context: grpc.ServicerContext
                ) -> upload_pb2.File:
        return _file(self._service.get(request.file_id))

    def ReadFile(self, request: upload_pb2.ReadFileRequest, context: grpc.ServicerContext
                 ) -> Iterator[upload_pb2.ReadFileResponse]:
        for chunk in self._service.read(request.file_id, request.offset):
            yield upload_pb2.ReadFileResponse(chunk=chunk)

    def DeleteFile(self, request: upload_pb2.DeleteFileRequest, context: grpc.ServicerContext
                   ) -> upload_pb2.File:
        return _file(self._service.delete(request.file_id))

    def ListFiles(self, request: upload_pb2.ListFilesRequest, context: grpc.ServicerContext
                  ) -> upload_pb2.ListFilesResponse:
        page = _files_page(self._files, request)
        return upload_pb2.ListFilesResponse(files=[_file_info(f) for f in page.files],
                                            next_page_token=page.next_page_token)

    def ListFilesJson(self, request: upload_pb2.ListFilesRequest, context: grpc.ServicerContext
                      ) -> httpbody_pb2.HttpBody:
        page = _files_page(self._files, request)
        if page.next_page_token:  # the body stays a bare array, as /tasks and /movies
            context.send_initial_metadata((("x-next-page-token", page.next_page_token),))
        return json_body([file_json(f) for f in page.files])

    def DescribeFile(self, request: upload_pb2.DescribeFileRequest,
                     context: grpc.ServicerContext) -> upload_pb2.FileInfo:
        return _file_info(self._files.describe(current_caller().user_id, request.file_id))

    def DescribeFileJson(self, request: upload_pb2.DescribeFileRequest,
                         context: grpc.ServicerContext) -> httpbody_pb2.HttpBody:
        return json_body(file_json(self._files.describe(current_caller().user_id,
                                                        request.file_id)))

    def DownloadFile(self, request: upload_pb2.DownloadFileRequest,
                     context: grpc.ServicerContext) -> Iterator[httpbody_pb2.HttpBody]:
        file, chunks = self._files.download(current_caller().user_id, request.file_id)
        context.send_initial_metadata(
            ((CONTENT_DISPOSITION, content_disposition(file.original_name)),))
        # Only the first message of a streamed HttpBody sets the response's content type.
        content_type = "text/csv"
        for chunk in chunks:
            yield httpbody_pb2.HttpBody(content_type=content_type, data=chunk)
            content_type = ""
        if content_type:  # an empty file still answers with its type
            yield httpbody_pb2.HttpBody(content_type=content_type)

    def RemoveFile(self, request: upload_pb2.RemoveFileRequest, context: grpc.ServicerContext
                   ) -> httpbody_pb2.HttpBody:
        self._files.remove(current_caller().user_id, request.file_id)
        set_http_status(context, 204)
        return httpbody_pb2.HttpBody()

    def StartOperation(self, request: upload_pb2.StartOperationRequest,
                       context: grpc.ServicerContext) -> upload_pb2.OperationAccepted:
        caller = current_caller()
        task_id = self._files.start_operation(caller.user_id, caller.username, request.file_id,
                                              spec_from_message(request.operation))
        set_http_status(context, 202)
        return upload_pb2.OperationAccepted(task_id=task_id, message=STARTED)

    def StoreResult(self, request_iterator: Iterator[upload_pb2.StoreResultRequest],
                    context: grpc.ServicerContext) -> upload_pb2.File:
        first = next(request_iterator, None)
        if first is None or not first.HasField("metadata"):
            raise InvalidArgument("the first message must carry the result's metadata")
        meta = first.metadata
        chunks = (m.chunk for m in request_iterator if m.HasField("chunk"))
        return _file(self._service.store_result(meta.task_id, meta.owner, meta.name, chunks))
