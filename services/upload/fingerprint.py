"""What the upload service records about a file's bytes as they stream past: sha256 and whether
all of it is valid UTF-8 (the worker then knows the encoding before it reads a byte)."""

from __future__ import annotations

import codecs
import hashlib
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType


class Fingerprint:
    """Fed chunk by chunk. The hash runs on a thread of its own (hashlib releases the GIL), so
    it overlaps the UTF-8 check here and the caller's write; the chunks stay in order."""

    def __init__(self) -> None:
        self._sha = hashlib.sha256()
        self._utf8 = codecs.getincrementaldecoder("utf-8")("strict")
        self.utf8_valid = True
        self._hashing = ThreadPoolExecutor(1, thread_name_prefix="upload-sha256")
        self._pending: Future[None] | None = None

    def update(self, chunk: bytes) -> None:
        if self._pending:
            self._pending.result()
        self._pending = self._hashing.submit(self._sha.update, chunk)
        if self.utf8_valid:
            try:
                self._utf8.decode(chunk)
            except UnicodeDecodeError:
                self.utf8_valid = False

    def finish(self) -> str:
        """The hex sha256; `utf8_valid` is final once this returns."""
        if self._pending:
            self._pending.result()
        if self.utf8_valid:
            try:
                self._utf8.decode(b"", final=True)  # a file cut inside a character
            except UnicodeDecodeError:
                self.utf8_valid = False
        return self._sha.hexdigest()

    def __enter__(self) -> Fingerprint:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._hashing.shutdown(wait=True)
