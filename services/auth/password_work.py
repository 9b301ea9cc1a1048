"""bcrypt, a few at a time. Each hash costs about a quarter of a second of one core (12 rounds)
and releases the GIL, so a burst of sign-ins all run at once and share the CPU until every one
of them misses the gateway's 30 s route timeout together (seen under load at 80 new users: 504s
for register and login). At most `slots` hashes run (one per core); the others wait their turn,
and one that would wait longer than `max_wait` is refused as a 429 with Retry-After instead."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import bcrypt

from services.common.errors import Throttled

MAX_WAIT_SECONDS = 10.0
RETRY_AFTER_SECONDS = 2


class PasswordWork:
    def __init__(self, slots: int = 0, max_wait: float = MAX_WAIT_SECONDS) -> None:
        self._slots = threading.BoundedSemaphore(slots or os.cpu_count() or 1)
        self._max_wait = max_wait

    @contextmanager
    def slot(self) -> Iterator[None]:
        if not self._slots.acquire(timeout=self._max_wait):
            raise Throttled("the server is busy checking passwords: try again in a few seconds",
                            RETRY_AFTER_SECONDS)
        try:
            yield
        finally:
            self._slots.release()

    def hash(self, password: bytes, rounds: int) -> bytes:
        with self.slot():
            return bcrypt.hashpw(password, bcrypt.gensalt(rounds))

    def check(self, password: bytes, stored_hash: bytes) -> bool:
        with self.slot():
            return bcrypt.checkpw(password, stored_hash)
