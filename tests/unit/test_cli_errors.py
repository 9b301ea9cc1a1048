"""The CLI's failures: gRPC status -> exit code and a one-line message."""

from __future__ import annotations

import grpc
import pytest

from marquee_cli.errors import first_line, rpc_failure
from marquee_cli.exit_codes import ExitCode, exit_code_for


class FakeRpcError(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str,
                 trailing: tuple[tuple[str, str], ...] = ()) -> None:
        self._code, self._details, self._trailing = code, details, trailing

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def trailing_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._trailing


@pytest.mark.parametrize(("status", "code"), [
    (grpc.StatusCode.UNAUTHENTICATED, ExitCode.UNAUTHENTICATED),
    (grpc.StatusCode.NOT_FOUND, ExitCode.NOT_FOUND),
    (grpc.StatusCode.UNAVAILABLE, ExitCode.UNAVAILABLE),
    (grpc.StatusCode.DEADLINE_EXCEEDED, ExitCode.UNAVAILABLE),
    (grpc.StatusCode.PERMISSION_DENIED, ExitCode.FORBIDDEN),
    (grpc.StatusCode.RESOURCE_EXHAUSTED, ExitCode.LIMITED),
    (grpc.StatusCode.INVALID_ARGUMENT, ExitCode.REFUSED),
    (grpc.StatusCode.ALREADY_EXISTS, ExitCode.REFUSED),
    (grpc.StatusCode.FAILED_PRECONDITION, ExitCode.REFUSED),
    (grpc.StatusCode.INTERNAL, ExitCode.REFUSED),
])
def test_status_to_exit_code(status: grpc.StatusCode, code: ExitCode) -> None:
    assert exit_code_for(status) == code
    assert rpc_failure(FakeRpcError(status, "x"), "http://h:1").exit_code == code


def test_the_exit_codes_are_distinct_and_usage_is_clicks() -> None:
    values = [c.value for c in ExitCode]
    assert len(values) == len(set(values))
    assert ExitCode.USAGE == 2 and ExitCode.OK == 0


def test_the_servers_details_are_the_message_on_one_line() -> None:
    err = rpc_failure(FakeRpcError(grpc.StatusCode.INVALID_ARGUMENT,
                                   "limit must be at least 1\nmore detail"), "http://h:1")
    assert err.message == "limit must be at least 1"
    assert err.status == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize("details", [
    "failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:1: "
    "Failed to connect to remote host: Connection refused",
    "DNS resolution failed for nowhere.invalid:8000",
    "",
])
def test_nothing_listening_says_how_to_start_the_stack(details: str) -> None:
    err = rpc_failure(FakeRpcError(grpc.StatusCode.UNAVAILABLE, details), "http://h:1")
    assert err.exit_code == ExitCode.UNAVAILABLE
    assert "not reachable at http://h:1" in err.message and "make run" in err.message


def test_a_service_down_behind_the_gateway_keeps_the_gateways_words() -> None:
    err = rpc_failure(FakeRpcError(grpc.StatusCode.UNAVAILABLE,
                                   "the catalog is unavailable: try again"), "http://h:1")
    assert err.message == "the catalog is unavailable: try again"


def test_unauthenticated_says_to_log_in_and_throttling_says_when_to_retry() -> None:
    err = rpc_failure(FakeRpcError(grpc.StatusCode.UNAUTHENTICATED, "Jwt is expired"), "u")
    assert err.message == "Jwt is expired (log in again with `marquee login`)"
    err = rpc_failure(FakeRpcError(grpc.StatusCode.RESOURCE_EXHAUSTED, "too many failed logins",
                                   (("retry-after", "30"),)), "u")
    assert err.message == "too many failed logins (retry in 30 s)"


def test_first_line() -> None:
    assert first_line("\n  a \n b") == "a"
    assert first_line("") == ""
