"""UploadService over gRPC: native streaming and the gateway's multipart form of it."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import UTC
from typing import Any

import grpc
from google.api import httpbody_pb2

from marquee.upload.v1 import upload_pb2, upload_pb2_grpc
from services.common.access import Access, current_caller
from services.common.errors import InvalidArgument, TooLarge
from services.common.rest import set_http_status
from services.upload.multipart_stream import FilePart
from services.upload.read_ahead import ReadAhead
from services.upload.service import UPLOADED, StoredUpload, UploadService

_S = "/marquee.upload.v1.UploadService/"
POLICY = {_S + m: Access.INTERNAL for m in ("GetFile", "ReadFile", "DeleteFile")}


def _file(record: dict[str, Any]) -> upload_pb2.File:
    message = upload_pb2.File(
        file_id=record["_id"], owner=record["owner"], original_name=record["original_name"],
        file_path=record["file_path"], size_bytes=record["size_bytes"], sha256=record["sha256"],
        deleted=record["deleted"],
    )
    message.created_at.FromDatetime(record["created_at"].replace(tzinfo=UTC))
    return message


def _accepted(context: grpc.ServicerContext, stored: StoredUpload) -> upload_pb2.UploadFileResponse:
    set_http_status(context, 202)
    return upload_pb2.UploadFileResponse(
        task_id=stored.task_id, message=UPLOADED, file_id=stored.file_id,
        size_bytes=stored.size_bytes, sha256=stored.sha256,
    )


class UploadServicer(upload_pb2_grpc.UploadServiceServicer):
    def __init__(self, service: UploadService) -> None:
        self._service = service

    def UploadFile(self, request_iterator: Iterator[upload_pb2.UploadFileRequest],
                   context: grpc.ServicerContext) -> upload_pb2.UploadFileResponse:
        caller = current_caller()
        first = next(request_iterator, None)
        if first is None or not first.HasField("metadata"):
            raise InvalidArgument("the first message must carry the file metadata")
        with ReadAhead(m.chunk for m in request_iterator if m.HasField("chunk")) as chunks:
            stored = self._service.upload(caller.user_id, first.metadata.filename, chunks)
        return _accepted(context, stored)

    def UploadMultipart(self, request_iterator: Iterator[httpbody_pb2.HttpBody],
                        context: grpc.ServicerContext) -> upload_pb2.UploadFileResponse:
        caller = current_caller()
        first = next(request_iterator, None)
        if first is None:
            raise InvalidArgument("empty request: send multipart/form-data with the field 'file'")

        def body(rest: Iterable[bytes]) -> Iterator[bytes]:
            yield first.data
            yield from rest

        with ReadAhead(m.data for m in request_iterator) as rest:
            part = FilePart(first.content_type, body(rest))
            try:
                stored = self._service.upload(caller.user_id, part.filename, part)
            except TooLarge:
                set_http_status(context, 413)
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
