"""What the REST side of the gateway needs from a servicer: status codes and raw JSON bodies."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import grpc
from google.api import httpbody_pb2

HTTP_CODE_HEADER = "x-http-code"
HTTP_CONTENT_TYPE_HEADER = "x-http-content-type"
# What a server stream is through the transcoder (stream_newline_delimited): one JSON object a
# line, which the transcoder labels application/json as if it were one.
NDJSON = "application/x-ndjson"
CONTENT_DISPOSITION = "content-disposition"


def set_http_status(context: grpc.ServicerContext, status: int) -> None:
    """Asks the gateway to answer with `status` (201, 202, 413...) instead of what the transcoder
    would choose; Envoy's Lua filter applies it to REST responses and drops the header."""
    context.send_initial_metadata(((HTTP_CODE_HEADER, str(status)),))


def set_http_content_type(context: grpc.ServicerContext, content_type: str) -> None:
    """Asks the gateway to label a REST answer `content_type`; Envoy's Lua filter applies it and
    drops the header."""
    context.send_initial_metadata(((HTTP_CONTENT_TYPE_HEADER, content_type),))


def json_body(value: Any) -> httpbody_pb2.HttpBody:
    return httpbody_pb2.HttpBody(
        content_type="application/json",
        data=json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode(),
    )


def content_disposition(filename: str) -> str:
    """An `attachment` header value naming `filename` (RFC 6266): an ASCII fallback, and the
    name itself percent-encoded as UTF-8 (`filename*`). gRPC metadata, which carries it to the
    gateway, takes printable ASCII only."""
    fallback = "".join(c if " " <= c <= "~" and c not in '"\\%' else "_" for c in filename)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"
