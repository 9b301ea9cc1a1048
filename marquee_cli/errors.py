"""One-line failures: every error the CLI reports is a CliError, which the entry point
(app.main) prints as one line (no traceback) before it exits with the error's code. gRPC errors
become CliErrors here, in one place."""

from __future__ import annotations

import sys

import grpc

from marquee_cli.exit_codes import ExitCode, exit_code_for

# What gRPC's own details say when nothing listens at the address (or the name does not resolve),
# as opposed to the gateway answering UNAVAILABLE for a service behind it.
_UNREACHABLE_MARKERS = (
    "failed to connect",
    "connection refused",
    "dns resolution failed",
    "name resolution",
    "connect failed",
    "socket closed",
)


class CliError(Exception):
    def __init__(
        self, message: str, code: ExitCode = ExitCode.REFUSED, status: grpc.StatusCode | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = int(code)
        # The gRPC status behind it, for callers that recover from one (e.g. ALREADY_EXISTS).
        self.status = status

    def show(self) -> None:
        print(f"error: {self.message}", file=sys.stderr)


def not_logged_in(url: str) -> CliError:
    return CliError(
        f"not logged in at {url}: run `marquee login` (or `marquee register`)",
        ExitCode.UNAUTHENTICATED,
    )


def unreachable(url: str) -> CliError:
    return CliError(
        f"the Marquee stack is not reachable at {url}. Start it with `make run` in "
        "the project, or give the gateway's address with --url or MARQUEE_URL.",
        ExitCode.UNAVAILABLE,
    )


def first_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[0] if lines else ""


def _retry_after(err: grpc.RpcError) -> str:
    trailing = getattr(err, "trailing_metadata", lambda: None)() or ()
    for key, value in trailing:
        if key == "retry-after":
            return str(value)
    return ""


def rpc_failure(err: grpc.RpcError, url: str) -> CliError:
    """The server's own words (its status details), one line, with the exit code of its status
    and, where it helps, what to do next."""
    code: grpc.StatusCode = err.code()  # type: ignore[attr-defined]
    details = first_line(err.details() or "")  # type: ignore[attr-defined]
    if code == grpc.StatusCode.UNAVAILABLE and (
        not details or any(m in details.lower() for m in _UNREACHABLE_MARKERS)
    ):
        return unreachable(url)
    message = details or code.name.lower().replace("_", " ")
    if code == grpc.StatusCode.UNAUTHENTICATED and "login" not in message.lower():
        message += " (log in again with `marquee login`)"
    elif code == grpc.StatusCode.RESOURCE_EXHAUSTED and (after := _retry_after(err)):
        message += f" (retry in {after} s)"
    elif code == grpc.StatusCode.DEADLINE_EXCEEDED and not details:
        message = f"the server at {url} did not answer in time"
    elif code == grpc.StatusCode.UNIMPLEMENTED:
        message = (
            f"the server at {url} does not offer this call ({message}): is it older than this CLI?"
        )
    return CliError(message, exit_code_for(code), code)
