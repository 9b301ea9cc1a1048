"""Who may call what: every RPC is public, for a signed-in user, or for another service.

The interceptor checks the caller before the servicer runs, puts the verified user in a context
variable for the use case, and turns domain errors into gRPC status codes in one place.
"""

from __future__ import annotations

import contextvars
import enum
import hmac
import logging
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import grpc
from pymongo.errors import ConnectionFailure

from services.common import logs
from services.common.errors import DomainError, PermissionDenied, Unauthenticated, Unavailable
from services.common.tokens import Caller, TokenVerifier, bearer_token

log = logging.getLogger(__name__)

SERVICE_KEY_HEADER = "x-marquee-service-key"

_caller: contextvars.ContextVar[Caller | None] = contextvars.ContextVar("caller", default=None)


class Access(enum.Enum):
    PUBLIC = "public"
    USER = "user"
    INTERNAL = "internal"


def current_caller() -> Caller:
    caller = _caller.get()
    if caller is None:
        raise Unauthenticated("this call needs a signed-in user")
    return caller


_ALWAYS_PUBLIC = ("/grpc.health.v1.Health/", "/grpc.reflection.")


class AccessInterceptor(grpc.ServerInterceptor):
    def __init__(
        self, policy: dict[str, Access], verifier: TokenVerifier, service_key: str
    ) -> None:
        self._policy = policy
        self._verifier = verifier
        self._service_key = service_key

    def _authorize(self, method: str, metadata: dict[str, str]) -> Caller | None:
        if method.startswith(_ALWAYS_PUBLIC):
            return None
        access = self._policy.get(method, Access.USER)
        if access is Access.PUBLIC:
            return None
        if access is Access.INTERNAL:
            presented = metadata.get(SERVICE_KEY_HEADER, "")
            if not hmac.compare_digest(presented.encode(), self._service_key.encode()):
                raise PermissionDenied("internal method: only Marquee services may call it")
            return None
        return self._verifier.verify(bearer_token(metadata))

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
    log.info("rpc refused", extra={"method": method, "code": exc.code.name, "reason": str(exc)})
    context.abort(exc.code, str(exc))


def _wrap(
    handler: Any, method: str, rid: str, caller: Caller | None, denied: DomainError | None
) -> Any:
    def unary(behavior: Callable[..., Any]) -> Callable[..., Any]:
        def run(request: Any, context: grpc.ServicerContext) -> Any:
            tokens = _enter(rid, caller)
            try:
                if denied:
                    _abort(context, method, denied)
                return behavior(request, context)
            except (DomainError, ConnectionFailure) as exc:
                _abort(context, method, _as_domain_error(exc))
            finally:
                _exit(tokens)

        return run

    def streaming(behavior: Callable[..., Iterator[Any]]) -> Callable[..., Iterator[Any]]:
        def run(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            tokens = _enter(rid, caller)
            try:
                if denied:
                    _abort(context, method, denied)
                yield from behavior(request, context)
            except (DomainError, ConnectionFailure) as exc:
                _abort(context, method, _as_domain_error(exc))
            finally:
                _exit(tokens)

        return run

    if handler.unary_unary:
        return handler._replace(unary_unary=unary(handler.unary_unary))
    if handler.stream_unary:
        return handler._replace(stream_unary=unary(handler.stream_unary))
    if handler.unary_stream:
        return handler._replace(unary_stream=streaming(handler.unary_stream))
    return handler._replace(stream_stream=streaming(handler.stream_stream))
