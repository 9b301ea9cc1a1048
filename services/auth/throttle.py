"""Failed logins per username: after a few in a row, the name is locked for a while, and each
further failure doubles the lock.

The lock holds whatever password comes with the attempt, right or wrong, and no password is
checked while it lasts (OWASP's advice): if the right one got in, the answer to an attempt
during the lock would still tell an attacker whether a guess was right, and the lock would not
slow the guessing at all. So a user whose name is under attack waits out the lock too. It
counts every name alike, known or not, so that it says nothing about which names exist. The
records are shared through the database, so the limit holds across replicas.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from services.common.errors import Throttled


@dataclass(frozen=True)
class ThrottlePolicy:
    # Failed logins in a row that lock a username.
    max_failures: int = 5
    # Failures are forgotten once a username had none for this long after its last lock ended.
    window_seconds: int = 900
    # The first lock; each further failure doubles it, up to max_lock_seconds.
    lock_seconds: int = 30
    max_lock_seconds: int = 900

    def lock_for(self, failures: int) -> float:
        """Seconds that `failures` in a row lock a username for (0: not locked)."""
        if failures < self.max_failures:
            return 0
        doublings = min(failures - self.max_failures, 32)  # 2**32 s is past any cap
        return min(self.max_lock_seconds, self.lock_seconds * 2**doublings)


class FailedLogins(Protocol):
    """The failure records: LoginFailureRepository, or an in-memory fake in the unit tests.
    Times are unix seconds."""

    def locked_until(self, key: str) -> float | None:
        """When the lock on `key` ends, if one was set."""
        ...

    def add_failure(self, key: str, now: float, forget_at: float) -> int:
        """Counts a failure and returns the failures in a row. A record whose time to be
        forgotten came before `now` starts again from zero; this failure keeps it until
        `forget_at` at least."""
        ...

    def lock(self, key: str, until: float, forget_at: float) -> None:
        """Locks `key` until `until` (or later, if it already was); keeps the record until
        `forget_at` at least."""
        ...

    def clear(self, key: str) -> None:
        ...


class LoginThrottle:
    def __init__(self, failures: FailedLogins, policy: ThrottlePolicy,
                 clock: Callable[[], float] = time.time) -> None:
        self._failures = failures
        self._policy = policy
        self._clock = clock

    def check(self, username: str) -> None:
        """Raises Throttled while the username is locked."""
        until = self._failures.locked_until(_key(username))
        now = self._clock()
        if until is not None and until > now:
            retry_after = math.ceil(until - now)
            raise Throttled(f"too many failed logins for this username: try again in "
                            f"{retry_after} seconds", retry_after)

    def failed(self, username: str) -> None:
        now, window = self._clock(), self._policy.window_seconds
        failures = self._failures.add_failure(_key(username), now, forget_at=now + window)
        lock = self._policy.lock_for(failures)
        if lock:
            self._failures.lock(_key(username), now + lock, forget_at=now + lock + window)

    def succeeded(self, username: str) -> None:
        self._failures.clear(_key(username))


def _key(username: str) -> str:
    return username.lower()  # as users are found: without case
