"""gRPC channels to the other services, and the JWKS fetch that token verification needs."""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import json_format

from marquee.auth.v1 import auth_pb2, auth_pb2_grpc
from services.common.access import SERVICE_KEY_HEADER, ConfirmAdmin, require_enabled_admin
from services.common.errors import Unavailable
from services.common.grpc_server import CHANNEL_OPTIONS
from services.common.settings import Settings
from services.common.tokens import Caller, TokenVerifier


class _ServiceKey(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor,
                  grpc.StreamUnaryClientInterceptor, grpc.StreamStreamClientInterceptor):
    """Adds the service key to every call on an internal channel."""

    def __init__(self, key: str) -> None:
        self._key = key

    def _details(self, details: Any) -> Any:
        # grpc passes a namedtuple here (grpc._interceptor._ClientCallDetails).
        metadata = [*(details.metadata or ()), (SERVICE_KEY_HEADER, self._key)]
        return details._replace(metadata=metadata)

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_stream_unary(self, continuation: Any, details: Any, requests: Any) -> Any:
        return continuation(self._details(details), requests)

    def intercept_stream_stream(self, continuation: Any, details: Any, requests: Any) -> Any:
        return continuation(self._details(details), requests)


def internal_channel(settings: Settings, service: str) -> grpc.Channel:
    """A channel to a registered service whose calls carry the service key (internal methods
    need it)."""
    channel = grpc.insecure_channel(settings.addr(service), options=CHANNEL_OPTIONS)
    return grpc.intercept_channel(channel, _ServiceKey(settings.service_key()))


def jwks_verifier(settings: Settings) -> TokenVerifier:
    """Verifies tokens with keys fetched from the auth service's GetJwks."""
    stub = auth_pb2_grpc.AuthServiceStub(grpc.insecure_channel(settings.addr("auth")))

    def fetch() -> list[dict[str, Any]]:
        response = stub.GetJwks(auth_pb2.GetJwksRequest(), timeout=5)
        return [json_format.MessageToDict(k, preserving_proto_field_name=True)
                for k in response.keys]

    return TokenVerifier(fetch, settings.jwt_issuer, settings.jwt_audience)


# How long a call on a request's path waits for another service (the admin check, the votes'
# version, a vote's counts): a slow answer (its database busy with another user's heavy read)
# makes the request slow, as it makes every other read, not a 503 well within the gateway's
# 60 s route timeout; a service that is down answers UNAVAILABLE at once.
PEER_CALL_TIMEOUT_SECONDS = 20.0


def admin_confirmer(settings: Settings) -> ConfirmAdmin:
    """Asks the auth service whether the caller of an admin method is an enabled administrator
    now. Admin calls are few, so each asks: a cache would let a demoted admin in for its life."""
    stub = auth_pb2_grpc.AuthServiceStub(internal_channel(settings, "auth"))

    def confirm(caller: Caller) -> None:
        try:
            status = stub.GetAccountStatus(
                auth_pb2.GetAccountStatusRequest(user_id=caller.user_id),
                timeout=PEER_CALL_TIMEOUT_SECONDS)
        except grpc.RpcError as exc:
            raise Unavailable(f"cannot check the administrator's account now: {exc.code().name}; "
                              "try again") from None
        require_enabled_admin(exists=status.exists, role=status.role, disabled=status.disabled)

    return confirm
