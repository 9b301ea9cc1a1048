"""Every method of every registered service, called with no token, a user's token, an
administrator's token and the service key, through the gateway and straight to the service: the
level its proto declares is what is enforced.

Requests are empty, so an allowed call fails on its arguments (INVALID_ARGUMENT, NOT_FOUND) or
succeeds; a refused one fails with UNAUTHENTICATED, PERMISSION_DENIED or, at the gateway for an
internal method, UNIMPLEMENTED (Envoy's 404).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import pytest
import requests
from google.protobuf import message_factory

from devstack.stack import Stack
from services.common import registry
from services.common.access import SERVICE_KEY_HEADER, Access, declared_access, method_path
from tests.integration.conftest import Api, User

REFUSED = {grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED,
           grpc.StatusCode.UNIMPLEMENTED}
METHODS = [m for spec in registry.SERVICES for s in spec.descriptors() for m in s.methods]


def _call(channel: grpc.Channel, method: Any, metadata: tuple[tuple[str, str], ...]
          ) -> grpc.StatusCode:
    """Calls `method` with an empty request (or an empty stream); returns the status."""
    path = method_path(method)
    request_class = _message_class(method.input_type)
    serialize = request_class.SerializeToString
    deserialize = _message_class(method.output_type).FromString
    kwargs: dict[str, Any] = {"metadata": metadata, "timeout": 15}
    try:
        if method.client_streaming and method.server_streaming:
            for _ in channel.stream_stream(path, serialize, deserialize)(iter(()), **kwargs):
                pass
        elif method.client_streaming:
            channel.stream_unary(path, serialize, deserialize)(iter(()), **kwargs)
        elif method.server_streaming:
            for _ in channel.unary_stream(path, serialize, deserialize)(request_class(),
                                                                         **kwargs):
                pass
        else:
            channel.unary_unary(path, serialize, deserialize)(request_class(), **kwargs)
    except grpc.RpcError as exc:
        return exc.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


def _message_class(descriptor: Any) -> Any:
    return message_factory.GetMessageClass(descriptor)


@pytest.fixture(scope="module")
def credentials(stack: Stack, api: Api, admin: User) -> dict[str, tuple[tuple[str, str], ...]]:
    user = api.register("access")
    return {
        "no token": (),
        "user token": user.metadata,
        "admin token": admin.metadata,
        "service key": ((SERVICE_KEY_HEADER, stack.settings.service_key()),),
    }


@pytest.fixture(scope="module")
def channels(stack: Stack) -> Iterator[dict[str, grpc.Channel]]:
    opened = {name: grpc.insecure_channel(f"127.0.0.1:{stack.ports[name]}")
              for name in ("gateway", *(s.name for s in registry.SERVICES))}
    yield opened
    for channel in opened.values():
        channel.close()


def _allowed(access: Access, credential: str, via_gateway: bool) -> bool:
    if access is Access.PUBLIC:
        return True
    if access is Access.USER:
        return credential in ("user token", "admin token")
    if access is Access.ADMIN:
        return credential == "admin token"
    # Internal: only the service key, and never through the gateway.
    return credential == "service key" and not via_gateway


def _owner(method: Any) -> str:
    for spec in registry.SERVICES:
        if method.containing_service.full_name in {d.full_name for d in spec.descriptors()}:
            return spec.name
    raise AssertionError(method.full_name)


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.full_name)
def test_declared_access_is_enforced_at_the_gateway_and_at_the_service(
        method: Any, channels: dict[str, grpc.Channel],
        credentials: dict[str, tuple[tuple[str, str], ...]]) -> None:
    access = declared_access(method)
    seen = {}
    for target in ("gateway", _owner(method)):
        for credential, metadata in credentials.items():
            code = _call(channels[target], method, metadata)
            allowed = _allowed(access, credential, target == "gateway")
            seen[(target, credential)] = code
            assert (code not in REFUSED) == allowed, (
                f"{method.full_name} ({access.name}) via {target} with {credential}: {code}")
    if access is Access.INTERNAL:  # hidden at the gateway, whatever is presented
        assert {seen[("gateway", c)] for c in credentials} == {grpc.StatusCode.UNIMPLEMENTED}


@pytest.mark.parametrize("method", [m for m in METHODS if declared_access(m) is Access.INTERNAL],
                         ids=lambda m: m.full_name)
def test_internal_paths_are_404_at_the_gateway_to_plain_http_too(method: Any, api: Api) -> None:
    """No token, no gRPC, a query string: still the route's 404, not jwt_authn's 401 (which
    would tell that something is there)."""
    for path in (method_path(method), method_path(method) + "?probe=1"):
        r = requests.post(api.url(path), data=b"{}", timeout=15)
        assert r.status_code == 404 and r.json()["status"] == 404, (path, r.text)
