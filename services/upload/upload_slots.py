"""How many uploads each user may have in progress at once, across every upload replica.

A user has `per_user` numbered slots, each a record in the database (UploadSlotRepository) that
an upload holds under a lease: taking a slot is one atomic insert, or one conditional update of
a slot whose lease expired, so two uploads can never hold the same slot. The holder renews its
lease while the upload runs (a heartbeat thread renews every slot this process holds) and gives
the slot back when the upload ends, however it ends. If the process dies instead, nobody renews
the lease and the slot is free again `lease_seconds` later. An in-memory counter would do
neither: each replica would count only its own uploads, and a crash would lose the count (or,
kept in a shared store without a lease, leave it too high for ever).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Protocol

from services.common.errors import LimitReached
from services.common.ids import random_id

log = logging.getLogger(__name__)


def utc_now() -> datetime:
    """The time as the database holds it: UTC without a zone."""
    return datetime.now(UTC).replace(tzinfo=None)


class SlotStore(Protocol):
    """The slot records: UploadSlotRepository, or an in-memory fake in the unit tests."""

    def try_take(self, slot_id: str, owner: str, lease: str, until: datetime,
                 now: datetime) -> bool:
        """Takes the slot for `lease` until `until` if nobody holds it or its lease ended
        before `now`; False if someone holds it."""
        ...

    def count_held(self, slot_ids: list[str], now: datetime) -> int:
        """How many of the slots are held by a lease that has not ended at `now`."""
        ...

    def renew(self, leases: list[str], until: datetime) -> None:
        """Extends each of these leases, where it still holds its slot, to `until`."""
        ...

    def release(self, lease: str) -> None:
        """Frees the slot this lease holds, if it still holds one."""
        ...


class UploadSlots:
    def __init__(self, store: SlotStore, *, per_user: int, lease_seconds: float,
                 clock: Callable[[], datetime] = utc_now) -> None:
        if per_user < 1 or lease_seconds <= 0:
            raise SystemExit("UPLOAD_MAX_CONCURRENT_PER_USER and UPLOAD_SLOT_LEASE_SECONDS "
                             "must be at least 1")
        self._store = store
        self.per_user = per_user
        self._lease = timedelta(seconds=lease_seconds)
        self._clock = clock
        self._held: set[str] = set()  # this process's leases, which the heartbeat renews
        self._lock = threading.Lock()

    def _slot_ids(self, owner: str) -> list[str]:
        return [f"{owner}:{n}" for n in range(self.per_user)]

    @contextmanager
    def hold(self, owner: str) -> Iterator[int]:
        """Holds one of `owner`'s slots while the block runs, and yields how many uploads the
        user has in progress, this one included. LimitReached if every slot is held."""
        lease = self._take(owner)
        with self._lock:
            self._held.add(lease)
        try:
            yield self._store.count_held(self._slot_ids(owner), self._clock())
        finally:
            with self._lock:
                self._held.discard(lease)
            self._release(lease)

    def _take(self, owner: str) -> str:
        lease, now = random_id(), self._clock()
        for slot_id in self._slot_ids(owner):
            if self._store.try_take(slot_id, owner, lease, now + self._lease, now):
                return lease
        raise LimitReached(
            "too many uploads at once: you already have as many uploads in progress as one "
            f"user may ({self.per_user}); wait for one to finish and try again")

    def _release(self, lease: str) -> None:
        try:
            self._store.release(lease)
        except Exception:  # the upload's own outcome matters more; the lease ends by itself
            log.warning("upload slot not released; it frees itself when its lease ends",
                        exc_info=True)

    def renew_held(self) -> None:
        """The heartbeat: extends the lease of every slot this process holds."""
        with self._lock:
            leases = list(self._held)
        if leases:
            self._store.renew(leases, self._clock() + self._lease)

    def renew_every(self) -> float:
        """How often the heartbeat should run: three times per lease, so that one slow or
        failed round does not let a running upload's lease end."""
        return self._lease.total_seconds() / 3
