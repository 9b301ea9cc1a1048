"""Receives a request stream's chunks on a thread of its own while the servicer stores earlier
ones. gRPC's flow control lets the client send more only once the servicer asks for the next
message, so receiving and storing in one thread adds their times instead of overlapping them."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from types import TracebackType

DEPTH = 4  # messages held at most: 4 MiB from Envoy and our clients, 16 MiB at gRPC's maximum
_END = object()


class ReadAhead:
    """Iterates `chunks` in a background thread, `DEPTH` ahead of the consumer; the source's
    exceptions are raised in the consumer. Use as a context manager so that a consumer that
    stops early also stops the thread."""

    def __init__(self, chunks: Iterable[bytes], depth: int = DEPTH) -> None:
        self._queue: queue.Queue[object] = queue.Queue(depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._pump, args=(chunks,), daemon=True,
                                        name="upload-read-ahead")
        self._thread.start()

    def _put(self, item: object) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.5)
                return True
            except queue.Full:
                continue
        return False

    def _pump(self, chunks: Iterable[bytes]) -> None:
        try:
            for chunk in chunks:
                if not self._put(chunk):
                    return
        except BaseException as exc:  # handed to the consumer, raised there
            self._put(exc)
            return
        self._put(_END)

    def __iter__(self) -> Iterator[bytes]:
        while True:
            item = self._queue.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item  # type: ignore[misc]

    def __enter__(self) -> ReadAhead:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
