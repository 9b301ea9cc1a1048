"""Who may call what: every RPC is public, for a signed-in user, for an administrator, or for
another service.

Each method declares its level in the proto (`option (marquee.access.v1.access) = ...`); the
policy is read from the generated descriptors, and a method without one stops the service from
starting. The interceptor checks the caller before the servicer runs (a method missing from the
policy is refused), puts the verified user in a context variable for the use case, and turns
domain errors into gRPC status codes in one place.
"""

from __future__ import annotations

import contextlib
import contextvars
import enum
import hmac
import logging
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import grpc
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from google.protobuf.message import DecodeError, Message
from pymongo.errors import ConnectionFailure

from marquee.access.v1 import access_pb2
from services.common import logs
from services.common.errors import (
    DomainError,
    Gone,
    InvalidArgument,
    PermissionDenied,
    Throttled,
    Unauthenticated,
    Unavailable,
)
from services.common.rest import set_http_status
from services.common.tokens import ADMIN_ROLE, Caller, TokenVerifier, bearer_token

log = logging.getLogger(__name__)

SERVICE_KEY_HEADER = "x-marquee-service-key"
# A status message travels in an HTTP/2 header and goes into a log line: a megabyte username
# echoed into one broke the gateway's connection to the service (GOAWAY, every call on it 502).
MAX_STATUS_CHARS = 1000

_caller: contextvars.ContextVar[Caller | None] = contextvars.ContextVar("caller", default=None)


class Access(enum.Enum):
    PUBLIC = access_pb2.ACCESS_PUBLIC
    USER = access_pb2.ACCESS_USER
    INTERNAL = access_pb2.ACCESS_INTERNAL
    ADMIN = access_pb2.ACCESS_ADMIN


class UndeclaredAccess(Exception):
    """A method declares no access level (or one this code does not know)."""


def declared_access(method: MethodDescriptor) -> Access:
    value = method.GetOptions().Extensions[access_pb2.access]
    try:
        return Access(value)
    except ValueError:
        raise UndeclaredAccess(
            f"{method.full_name} declares no access: add `option (marquee.access.v1.access) = "
            "ACCESS_PUBLIC | ACCESS_USER | ACCESS_ADMIN | ACCESS_INTERNAL;` to it in its .proto"
        ) from None


def method_path(method: MethodDescriptor) -> str:
    """The HTTP/2 path of a gRPC method, as interceptors and Envoy see it."""
    return f"/{method.containing_service.full_name}/{method.name}"


def policy(services: Iterable[ServiceDescriptor]) -> dict[str, Access]:
    """Every method of these services with its declared level; raises UndeclaredAccess if any
    method has none."""
    return {method_path(m): declared_access(m) for s in services for m in s.methods}


def current_caller() -> Caller:
    caller = _caller.get()
    if caller is None:
        raise Unauthenticated("this call needs a signed-in user")
    return caller


_ALWAYS_PUBLIC = ("/grpc.health.v1.Health/", "/grpc.reflection.")

# Raises PermissionDenied unless the caller's account is an enabled administrator now (the
# token's role claim is as old as the token).
ConfirmAdmin = Callable[[Caller], None]


def require_enabled_admin(*, exists: bool, role: str, disabled: bool) -> None:
    """What an admin method asks of the caller's account as it is stored now."""
    if not exists:
        raise PermissionDenied("your account no longer exists")
    if disabled:
        raise PermissionDenied("your account is disabled")
    if role != ADMIN_ROLE:
        raise PermissionDenied("your account is no longer an administrator; log in again")


class AccessInterceptor(grpc.ServerInterceptor):
    def __init__(
        self, policy: dict[str, Access], verifier: TokenVerifier, service_key: str,
        confirm_admin: ConfirmAdmin,
    ) -> None:
        self._policy = policy
        self._verifier = verifier
        self._service_key = service_key
        self._confirm_admin = confirm_admin

    def _authorize(self, method: str, metadata: dict[str, str]) -> Caller | None:
        if method.startswith(_ALWAYS_PUBLIC):
            return None
        access = self._policy.get(method)
        if access is None:  # default deny: only declared methods are callable
            raise PermissionDenied(f"{method} is not callable on this server")
        if access is Access.PUBLIC:
            return None
        if access is Access.INTERNAL:
            presented = metadata.get(SERVICE_KEY_HEADER, "")
            if not hmac.compare_digest(presented.encode(), self._service_key.encode()):
                raise PermissionDenied("internal method: only Marquee services may call it")
            return None
        caller = self._verifier.verify(bearer_token(metadata))
        if access is Access.ADMIN:
            if not caller.is_admin:
                raise PermissionDenied("only an administrator may do this")
            self._confirm_admin(caller)
        return caller

    def intercept_service(
        self, continuation: Callable[[Any], Any], handler_call_details: Any
    ) -> Any:
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        metadata = {k: v for k, v in handler_call_details.invocation_metadata or ()
                    if isinstance(v, str)}
        rid = metadata.get("x-request-id") or uuid.uuid4().hex[:16]
        try:
            caller = self._authorize(method, metadata)
            denied: DomainError | None = None
        except DomainError as exc:
            caller, denied = None, exc
        return _wrap(handler, method, rid, caller, denied)


def _enter(rid: str, caller: Caller | None) -> tuple[Any, Any]:
    return logs.request_id.set(rid), _caller.set(caller)


def _exit(tokens: tuple[Any, Any]) -> None:
    logs.request_id.reset(tokens[0])
    _caller.reset(tokens[1])


def _as_domain_error(exc: DomainError | ConnectionFailure) -> DomainError:
    """Database outages are transient for the caller: UNAVAILABLE tells it to retry."""
    if isinstance(exc, ConnectionFailure):
        return Unavailable(f"database unavailable, try again: {exc}")
    return exc


def _abort(context: grpc.ServicerContext, method: str, exc: DomainError) -> None:
    reason = logs.truncated(str(exc), MAX_STATUS_CHARS)
    log.info("rpc refused", extra={"method": method, "code": exc.code.name, "reason": reason})
    if isinstance(exc, Throttled):
        # The gateway passes it on as the HTTP header, so REST clients see when to retry.
        context.set_trailing_metadata((("retry-after", str(exc.retry_after)),))
    if isinstance(exc, Gone):
        # No gRPC code maps to 410 in the transcoder; the status rides in the initial metadata
        # (services/common/rest.py), which a refusal raised before any answer has not sent yet.
        with contextlib.suppress(ValueError, RuntimeError):
            set_http_status(context, exc.http_status)
    context.abort(exc.code, reason)


def _fail(context: grpc.ServicerContext, method: str, rid: str, exc: Exception) -> None:
    """An exception that no use case meant to raise: INTERNAL, naming the request id to find
    it in the log. gRPC's own answer would quote the exception, and with it whatever the client
    sent. An exception that follows the servicer's own abort, or a call the client cancelled,
    passes unchanged."""
    if context.code() is not None or not context.is_active():
        raise exc
    log.exception("rpc failed", extra={"method": method})
    context.abort(grpc.StatusCode.INTERNAL, f"internal error (request id {rid})")


class _Undecodable:
    """A request message that did not parse (a string that is not UTF-8, say from `%FF` in a
    URL). gRPC would answer INTERNAL for it, as if the server had failed; handed on as this, it
    is answered INVALID_ARGUMENT."""

    def __init__(self, error: DecodeError) -> None:
        self.error = InvalidArgument(f"the request is not a valid message ({error}); text must "
                                     "be UTF-8")


def _tolerant(deserialize: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserialize is None:
        return None

    def run(data: bytes) -> Any:
        try:
            return deserialize(data)
        except DecodeError as exc:
            return _Undecodable(exc)

    return run


def _decoded(request: Any) -> Any:
    """The request, checked: a message, or an iterator of them (client streams)."""
    if isinstance(request, _Undecodable):
        raise request.error
    if isinstance(request, Message):
        return request
    return (_decoded(message) for message in request)


def _wrap(
    handler: Any, method: str, rid: str, caller: Caller | None, denied: DomainError | None
) -> Any:
    def unary(behavior: Callable[..., Any]) -> Callable[..., Any]:
        def run(request: Any, context: grpc.ServicerContext) -> Any:
            tokens = _enter(rid, caller)
            try:
                if denied:
                    _abort(context, method, denied)
                return behavior(_decoded(request), context)
            except (DomainError, ConnectionFailure) as exc:
                _abort(context, method, _as_domain_error(exc))
            except Exception as exc:
                _fail(context, method, rid, exc)
            finally:
                _exit(tokens)

        return run

    def streaming(behavior: Callable[..., Iterator[Any]]) -> Callable[..., Iterator[Any]]:
        def run(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            tokens = _enter(rid, caller)
            try:
                if denied:
                    _abort(context, method, denied)
                yield from behavior(_decoded(request), context)
            except (DomainError, ConnectionFailure) as exc:
                _abort(context, method, _as_domain_error(exc))
            except Exception as exc:
                _fail(context, method, rid, exc)
            finally:
                _exit(tokens)

        return run

    handler = handler._replace(request_deserializer=_tolerant(handler.request_deserializer))
    if handler.unary_unary:
        return handler._replace(unary_unary=unary(handler.unary_unary))
    if handler.stream_unary:
        return handler._replace(stream_unary=unary(handler.stream_unary))
    if handler.unary_stream:
        return handler._replace(unary_stream=streaming(handler.unary_stream))
    return handler._replace(stream_stream=streaming(handler.stream_stream))
