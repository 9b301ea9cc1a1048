"""What a refused or failed call sends back and logs is bounded, whatever the client sent; a
server receives no message larger than its service allows, compressed or not. Runs a gRPC
server in this process on a loopback port."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable, Iterator
from concurrent import futures

import grpc
import pytest

from marquee.auth.v1 import auth_pb2
from services.common import registry
from services.common.access import MAX_STATUS_CHARS, Access, AccessInterceptor
from services.common.errors import InvalidArgument, Throttled
from services.common.grpc_server import server_options
from services.common.logs import MAX_FIELD_CHARS, JsonFormatter
from services.common.tokens import TokenVerifier
from tests.unit.fakes import no_admins

METHOD = "/probe.v1.Probe/Call"
LIMIT = 64 << 10
MEGABYTE = "x" * (1 << 20)
Request, Response = auth_pb2.LoginRequest, auth_pb2.TokenResponse
Behaviour = Callable[[auth_pb2.LoginRequest, grpc.ServicerContext], auth_pb2.TokenResponse]


def _raise(exc: Exception) -> Behaviour:
    def call(request: auth_pb2.LoginRequest, context: grpc.ServicerContext
             ) -> auth_pb2.TokenResponse:
        raise exc

    return call


def _username_length(request: auth_pb2.LoginRequest, context: grpc.ServicerContext
                     ) -> auth_pb2.TokenResponse:
    return Response(message=str(len(request.username)))


@pytest.fixture
def serve() -> Iterator[Callable[[Behaviour], grpc.Channel]]:
    """Serves one behaviour at METHOD behind the access interceptor, with a LIMIT-byte receive
    bound; returns a channel to it."""
    servers: list[grpc.Server] = []
    channels: list[grpc.Channel] = []
    spec = dataclasses.replace(registry.spec("auth"), max_message_bytes=LIMIT)

    def start(behaviour: Behaviour) -> grpc.Channel:
        verifier = TokenVerifier(list, "iss", "aud")
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=2),
            interceptors=[AccessInterceptor({METHOD: Access.PUBLIC}, verifier, "key", no_admins)],
            options=server_options(spec))
        server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(
            "probe.v1.Probe", {"Call": grpc.unary_unary_rpc_method_handler(
                behaviour, request_deserializer=Request.FromString,
                response_serializer=Response.SerializeToString)})])
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        servers.append(server)
        channels.append(grpc.insecure_channel(f"127.0.0.1:{port}"))
        return channels[-1]

    yield start
    for channel in channels:
        channel.close()
    for server in servers:
        server.stop(None)


def _stub(channel: grpc.Channel) -> Callable[..., auth_pb2.TokenResponse]:
    return channel.unary_unary(METHOD, request_serializer=Request.SerializeToString,
                               response_deserializer=Response.FromString)


def _call(channel: grpc.Channel, username: str = "",
          compression: grpc.Compression | None = None) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as failed:
        _stub(channel)(Request(username=username), timeout=10, compression=compression)
    return failed.value


def test_a_refusal_that_quotes_a_megabyte_is_cut_short(serve: Callable[..., grpc.Channel]
                                                       ) -> None:
    error = _call(serve(_raise(InvalidArgument(f"no user named {MEGABYTE!r}"))))
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith("no user named 'xxx")
    assert len(error.details()) < MAX_STATUS_CHARS + 50


def test_an_unexpected_exception_is_internal_and_does_not_quote_itself(
        serve: Callable[..., grpc.Channel]) -> None:
    error = _call(serve(_raise(ValueError(MEGABYTE))))
    assert error.code() is grpc.StatusCode.INTERNAL
    assert error.details().startswith("internal error (request id ")
    assert "xxx" not in error.details()


def test_a_throttled_call_says_when_to_retry(serve: Callable[..., grpc.Channel]) -> None:
    error = _call(serve(_raise(Throttled("too many failed logins: try again in 30 seconds",
                                         30))))
    assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert ("retry-after", "30") in error.trailing_metadata()  # type: ignore[attr-defined]


@pytest.mark.parametrize("compression", [None, grpc.Compression.Gzip])
def test_a_message_over_the_limit_is_refused_even_when_it_arrives_compressed(
        serve: Callable[..., grpc.Channel], compression: grpc.Compression | None) -> None:
    """gRPC checks the limit against the decompressed size: 8 MiB of one letter is a few KB
    compressed, and still refused."""
    channel = serve(_username_length)
    error = _call(channel, "u" * (8 << 20), compression)
    assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    within = LIMIT - 8  # the field's tag and length take the rest
    answer = _stub(channel)(Request(username="u" * within), timeout=10, compression=compression)
    assert answer.message == str(within)


def test_a_log_line_keeps_no_megabyte() -> None:
    record = logging.makeLogRecord({"msg": MEGABYTE, "levelno": logging.INFO,
                                    "levelname": "INFO", "reason": MEGABYTE})
    line = JsonFormatter("probe").format(record)
    entry = json.loads(line)
    assert len(line) < 3 * MAX_FIELD_CHARS
    assert entry["reason"].endswith(f"({len(MEGABYTE) - MAX_FIELD_CHARS} more characters)")
