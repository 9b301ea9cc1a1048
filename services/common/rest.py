"""What the REST side of the gateway needs from a servicer: status codes and raw JSON bodies."""

from __future__ import annotations

import json
from typing import Any

import grpc
from google.api import httpbody_pb2

HTTP_CODE_HEADER = "x-http-code"


def set_http_status(context: grpc.ServicerContext, status: int) -> None:
    """Asks the gateway to answer with `status` (201, 202, 413...) instead of what the transcoder
    would choose; Envoy's Lua filter applies it to REST responses and drops the header."""
    context.send_initial_metadata(((HTTP_CODE_HEADER, str(status)),))


def json_body(value: Any) -> httpbody_pb2.HttpBody:
    return httpbody_pb2.HttpBody(
        content_type="application/json",
        data=json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode(),
    )
