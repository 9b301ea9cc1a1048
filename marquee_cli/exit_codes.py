"""The exit codes scripts can rely on, and which gRPC status codes lead to each."""

from __future__ import annotations

from enum import IntEnum

import grpc


class ExitCode(IntEnum):
    OK = 0
    # The server refused the request (invalid argument, already exists, precondition...).
    REFUSED = 1
    # Wrong command line: click's own code for usage errors.
    USAGE = 2
    # Not logged in, or the session ended or the password was wrong.
    UNAUTHENTICATED = 3
    NOT_FOUND = 4
    # The stack is not reachable, or a service behind the gateway is down or too slow.
    UNAVAILABLE = 5
    # Logged in, but not allowed (not an administrator, a disabled account).
    FORBIDDEN = 6
    # A rate limit or quota: try again later.
    LIMITED = 7
    # A task that was waited for ended failed or cancelled.
    TASK_FAILED = 8
    # Ctrl-C (128 + SIGINT, as shells report it).
    INTERRUPTED = 130


_BY_STATUS = {
    grpc.StatusCode.UNAUTHENTICATED: ExitCode.UNAUTHENTICATED,
    grpc.StatusCode.NOT_FOUND: ExitCode.NOT_FOUND,
    grpc.StatusCode.UNAVAILABLE: ExitCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED: ExitCode.UNAVAILABLE,
    grpc.StatusCode.PERMISSION_DENIED: ExitCode.FORBIDDEN,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ExitCode.LIMITED,
}


def exit_code_for(status: grpc.StatusCode) -> ExitCode:
    """Every status not named above is the server refusing the request."""
    return _BY_STATUS.get(status, ExitCode.REFUSED)


# For --help and the README: one line per code.
EXIT_CODES_HELP = """Exit codes:
  0 ok · 1 refused by the server · 2 usage error · 3 not logged in / wrong credentials ·
  4 not found · 5 stack unreachable or unavailable · 6 not allowed (admin only, disabled) ·
  7 rate limit or quota · 8 the task failed or was cancelled · 130 interrupted"""
