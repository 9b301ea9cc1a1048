"""Sending a file from disk three ways, streamed in 1 MiB pieces: REST multipart through Envoy,
native gRPC UploadFile through Envoy, and the same multipart POST to a loopback sink in this
process (the raw ceiling of one Python client on this machine)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from concurrent import futures
from contextlib import AbstractContextManager, nullcontext
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast

import grpc
import requests

from marquee.upload.v1 import upload_pb2, upload_pb2_grpc
from services.upload.records import UploadedFile
from services.upload.repository import FileRepository
from services.upload.service import StorageQuota, UploadService
from services.upload.storage import LocalStorage
from services.worker.csv_source import CsvLimits
from services.worker.operation_spec import OperationSpec

CHUNK = 1 << 20


class MultipartFile:
    """A multipart/form-data body (field `file`) read from disk while it is sent. It has a
    length, so requests sends a Content-Length and streams the iteration."""

    def __init__(self, path: Path, filename: str, content_type: str = "text/csv") -> None:
        boundary = uuid.uuid4().hex
        self.path = path
        self.content_type = f"multipart/form-data; boundary={boundary}"
        self._head = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
                      f'filename="{filename}"\r\nContent-Type: {content_type}\r\n\r\n').encode()
        self._tail = f"\r\n--{boundary}--\r\n".encode()

    def __len__(self) -> int:
        return len(self._head) + self.path.stat().st_size + len(self._tail)

    def __iter__(self) -> Iterator[bytes]:
        yield self._head
        with open(self.path, "rb") as f:
            while chunk := f.read(CHUNK):
                yield chunk
        yield self._tail


def post_multipart(session: requests.Session, url: str, path: Path, filename: str,
                   headers: dict[str, str] | None = None) -> tuple[float, requests.Response]:
    """(seconds from the first byte sent to the whole response, response)."""
    body = MultipartFile(path, filename)
    start = time.perf_counter()
    r = session.post(url, data=body, timeout=3600,
                     headers={**(headers or {}), "Content-Type": body.content_type})
    return time.perf_counter() - start, r


def grpc_upload(target: str, metadata: tuple[tuple[str, str], ...], path: Path,
                filename: str) -> tuple[float, upload_pb2.UploadFileResponse]:
    """Native client-streaming UploadFile to `target` (the gateway, the upload service itself or
    a sink): the metadata, then 1 MiB chunks."""
    def messages() -> Iterator[upload_pb2.UploadFileRequest]:
        yield upload_pb2.UploadFileRequest(metadata=upload_pb2.FileMetadata(
            filename=filename, content_type="text/csv"))
        with open(path, "rb") as f:
            while chunk := f.read(CHUNK):
                yield upload_pb2.UploadFileRequest(chunk=chunk)

    with grpc.insecure_channel(target) as channel:
        stub = upload_pb2_grpc.UploadServiceStub(channel)
        grpc.channel_ready_future(channel).result(timeout=10)
        start = time.perf_counter()
        response = stub.UploadFile(messages(), metadata=metadata, timeout=3600)
        return time.perf_counter() - start, response


class _NoRecords:
    def add(self, record: dict[str, Any]) -> None:
        pass

    def stored_bytes(self, owner: str) -> int:
        return 0

    def set_task(self, file_id: str, task_id: str) -> None:
        pass


class _NoQuotas:
    """No task service and no other uploads: every quota check passes at once."""

    def check_quota(self, owner: str, incoming: int) -> None:
        pass

    def create(self, file: UploadedFile, username: str, by_admin: bool) -> str:
        return ""

    def create_operation(self, file: UploadedFile, spec: OperationSpec, username: str) -> str:
        return ""

    def hold(self, owner: str) -> AbstractContextManager[int]:
        return nullcontext(1)


def upload_in_process(path: Path, store: Path) -> float:
    """Seconds for the upload service's own use case (UploadService.upload: size limit, sha256,
    write, fsync, rename) on the file's 1 MiB chunks, with no gRPC, no database
    record, no quota and no task: the per-byte work the service does for every upload."""
    def chunks() -> Iterator[bytes]:
        with open(path, "rb") as f:
            while chunk := f.read(CHUNK):
                yield chunk

    service = UploadService(cast(FileRepository, _NoRecords()), LocalStorage(store), _NoQuotas(),
                            max_bytes=1 << 40, slots=_NoQuotas(),
                            quota=StorageQuota(bytes_per_user=1 << 40, retention_seconds=0),
                            csv_limits=CsvLimits(max_row_chars=1 << 20,
                                                 max_header_chars=1 << 16, max_columns=256))
    start = time.perf_counter()
    stored = service.upload("bench", path.name, chunks())
    seconds = time.perf_counter() - start
    (store / f"{stored.file_id}.csv").unlink()
    return seconds


class _Sink(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        remaining = int(self.headers.get("Content-Length", "0"))
        while remaining > 0:
            got = self.rfile.read(min(CHUNK, remaining))
            if not got:
                break
            remaining -= len(got)
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: Any) -> None:
        pass


class RawSink:
    """A tiny threaded HTTP server on loopback that reads and discards request bodies."""

    def __init__(self) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/upload"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> RawSink:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


class GrpcSink:
    """An UploadFile server in this process that counts the chunks and discards them: what one
    Python gRPC client and server manage on this machine with no work in between."""

    def __init__(self) -> None:
        def upload(requests: Iterator[upload_pb2.UploadFileRequest],
                   context: grpc.ServicerContext) -> upload_pb2.UploadFileResponse:
            return upload_pb2.UploadFileResponse(size_bytes=sum(len(m.chunk) for m in requests))

        handler = grpc.method_handlers_generic_handler("marquee.upload.v1.UploadService", {
            "UploadFile": grpc.stream_unary_rpc_method_handler(
                upload, request_deserializer=upload_pb2.UploadFileRequest.FromString,
                response_serializer=upload_pb2.UploadFileResponse.SerializeToString)})
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        self._server.add_generic_rpc_handlers((handler,))
        self.target = f"127.0.0.1:{self._server.add_insecure_port('127.0.0.1:0')}"

    def __enter__(self) -> GrpcSink:
        self._server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.stop(grace=None)
