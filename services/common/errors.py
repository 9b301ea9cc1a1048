"""Domain errors raised by use cases; the gRPC layer maps each to its status code."""

from __future__ import annotations

import grpc


class DomainError(Exception):
    code = grpc.StatusCode.INTERNAL


class InvalidArgument(DomainError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(DomainError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(DomainError):
    code = grpc.StatusCode.ALREADY_EXISTS


class Unauthenticated(DomainError):
    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(DomainError):
    code = grpc.StatusCode.PERMISSION_DENIED


class FailedPrecondition(DomainError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class Gone(FailedPrecondition):
    """The thing existed and was deleted (a file, an operation's result). gRPC has no code of
    its own for it; REST clients get 410, which the access interceptor asks the gateway for."""

    http_status = 410


class TooLarge(DomainError):
    """Maps to RESOURCE_EXHAUSTED; the gateway turns it into HTTP 413 for uploads."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class LimitReached(DomainError):
    """The caller has as many of something open as it may (or the server does): RESOURCE_EXHAUSTED,
    which the gateway answers with HTTP 429."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unavailable(DomainError):
    code = grpc.StatusCode.UNAVAILABLE


class Throttled(DomainError):
    """Too many attempts: the caller may try again after `retry_after` seconds. Maps to
    RESOURCE_EXHAUSTED with a `retry-after` header, which the gateway answers as HTTP 429."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after
