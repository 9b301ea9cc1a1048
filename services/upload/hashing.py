"""The sha256 of an upload, computed as its bytes stream past."""

from __future__ import annotations

import hashlib
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType


class BackgroundSha256:
    """Fed chunk by chunk; hashes on a thread of its own (hashlib releases the GIL), so hashing
    overlaps the caller's write and the receiving of the next chunk. Chunks stay in order."""

    def __init__(self) -> None:
        self._sha = hashlib.sha256()
        self._hashing = ThreadPoolExecutor(1, thread_name_prefix="upload-sha256")
        self._pending: Future[None] | None = None

    def update(self, chunk: bytes) -> None:
        if self._pending:
            self._pending.result()
        self._pending = self._hashing.submit(self._sha.update, chunk)

    def hexdigest(self) -> str:
        if self._pending:
            self._pending.result()
        return self._sha.hexdigest()

    def __enter__(self) -> BackgroundSha256:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._hashing.shutdown(wait=True)
