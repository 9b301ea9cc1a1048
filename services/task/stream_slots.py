"""How many long-lived streams (WatchTask, ExportTaskErrors) the task service serves at once.

A gRPC server thread serves a stream for as long as it lasts: a watch until its task ends or
the client leaves, an export until a client that may read slowly has read it all. Unbounded,
40 watches from one user took all 32 threads, and everyone else's calls, the workers' internal
ones too, waited behind them. So each user may hold `per_user` streams and everyone together
`total`; the server's thread pool has `total` threads on top of those for the other calls
(services/task/__main__.py), so streams can never take the threads those calls need.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable

from services.common.errors import LimitReached


class StreamSlots:
    def __init__(self, *, per_user: int, total: int) -> None:
        if not 1 <= per_user <= total:
            raise SystemExit(f"TASK_STREAMS_PER_USER ({per_user}) must be from 1 to "
                             f"TASK_STREAMS_TOTAL ({total})")
        self.per_user = per_user
        self.total = total
        self._held: Counter[str] = Counter()  # open streams by user
        self._held_total = 0
        self._lock = threading.Lock()

    def take(self, user_id: str) -> Callable[[], None]:
        """Takes a slot for one of `user_id`'s streams; returns what gives it back (call it
        once, when the stream ends). LimitReached when the user or the server has no slot."""
        with self._lock:
            if self._held[user_id] >= self.per_user:
                raise LimitReached(
                    f"too many open streams: you are already watching or exporting "
                    f"{self.per_user} tasks at once, the most one user may; close one and try "
                    "again")
            if self._held_total >= self.total:
                raise LimitReached(
                    f"the task service is serving as many watches and exports as it may "
                    f"({self.total}); try again in a moment")
            self._held[user_id] += 1
            self._held_total += 1
        return lambda: self._give_back(user_id)

    def _give_back(self, user_id: str) -> None:
        with self._lock:
            self._held[user_id] -= 1
            if not self._held[user_id]:
                del self._held[user_id]  # users who have none take no memory
            self._held_total -= 1

    def held(self, user_id: str | None = None) -> int:
        """Slots held by `user_id`, or by everyone."""
        with self._lock:
            return self._held_total if user_id is None else self._held[user_id]
