"""A request that does not parse (a string field that is not UTF-8: `%FF` in a REST path, or any
native gRPC client) is the client's error, INVALID_ARGUMENT, not the INTERNAL that gRPC gives
by itself. Runs a gRPC server in this process behind the access interceptor."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest

from marquee.task.v1 import task_pb2
from services.common.access import Access, AccessInterceptor
from services.common.tokens import TokenVerifier
from tests.unit.fakes import no_admins

Request = task_pb2.GetTaskRequest
NOT_UTF8 = b"\x0a\x02\xff\xfe"  # field 1, a string of two bytes that are not UTF-8


def _echo(request: task_pb2.GetTaskRequest, context: grpc.ServicerContext) -> bytes:
    return request.task_id.encode()


def _count(requests: Iterator[task_pb2.GetTaskRequest], context: grpc.ServicerContext
           ) -> bytes:
    return str(sum(1 for _ in requests)).encode()


@pytest.fixture(scope="module")
def channel() -> Iterator[grpc.Channel]:
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=2),
        interceptors=[AccessInterceptor({"/probe.v1.Probe/One": Access.PUBLIC,
                                         "/probe.v1.Probe/Many": Access.PUBLIC},
                                        TokenVerifier(list, "iss", "aud"), "k" * 32,
                                        no_admins)])
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("probe.v1.Probe", {
        "One": grpc.unary_unary_rpc_method_handler(_echo,
                                                   request_deserializer=Request.FromString),
        "Many": grpc.stream_unary_rpc_method_handler(_count,
                                                     request_deserializer=Request.FromString),
    })])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    with grpc.insecure_channel(f"127.0.0.1:{port}") as client:
        yield client
    server.stop(None)


def test_a_request_that_is_not_utf8_is_invalid_argument(channel: grpc.Channel) -> None:
    call = channel.unary_unary("/probe.v1.Probe/One")
    assert call(Request(task_id="ok").SerializeToString(), timeout=5) == b"ok"
    with pytest.raises(grpc.RpcError) as refused:
        call(NOT_UTF8, timeout=5)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "UTF-8" in refused.value.details()


def test_a_bad_message_in_a_client_stream_is_invalid_argument(channel: grpc.Channel) -> None:
    call = channel.stream_unary("/probe.v1.Probe/Many")
    good = Request(task_id="ok").SerializeToString()
    assert call(iter([good, good]), timeout=5) == b"2"
    with pytest.raises(grpc.RpcError) as refused:
        call(iter([good, NOT_UTF8, good]), timeout=5)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
