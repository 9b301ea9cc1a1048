"""Receives a request stream's chunks on a thread of its own while the servicer stores earlier
ones. gRPC's flow control lets the client send more only once the servicer asks for the next
message, so receiving and storing in one thread adds their times instead of overlapping them."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable, Iterator
from types import TracebackType

AHEAD_BYTES = 4 << 20  # four of the 1 MiB pieces that Envoy and our clients send
_END = object()


class ReadAhead:
    """Iterates `chunks` in a background thread while the consumer works, holding at most
    `max_bytes` that it has not taken yet (or one chunk, however large); the source's exceptions
    are raised in the consumer. Use as a context manager so that a consumer that stops early
    also stops the thread."""

    def __init__(self, chunks: Iterable[bytes], max_bytes: int = AHEAD_BYTES) -> None:
        self._max_bytes = max_bytes
        self._held: deque[object] = deque()
        self._held_bytes = 0
        self._stopped = False
        self._changed = threading.Condition()
        threading.Thread(target=self._pump, args=(chunks,), daemon=True,
                         name="upload-read-ahead").start()

    def _put(self, item: object, size: int = 0) -> bool:
        with self._changed:
            self._changed.wait_for(
                lambda: self._stopped or self._held_bytes < self._max_bytes)
            if self._stopped:
                return False
            self._held.append(item)
            self._held_bytes += size
            self._changed.notify_all()
            return True

    def _pump(self, chunks: Iterable[bytes]) -> None:
        try:
            for chunk in chunks:
                if not self._put(chunk, len(chunk)):
                    return
        except BaseException as exc:  # handed to the consumer, raised there
            self._put(exc)
            return
        self._put(_END)

    def __iter__(self) -> Iterator[bytes]:
        while True:
            with self._changed:
                self._changed.wait_for(lambda: bool(self._held))
                item = self._held.popleft()
                if isinstance(item, bytes):
                    self._held_bytes -= len(item)
                self._changed.notify_all()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item  # type: ignore[misc]

    def __enter__(self) -> ReadAhead:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        with self._changed:
            self._stopped = True
            self._changed.notify_all()
