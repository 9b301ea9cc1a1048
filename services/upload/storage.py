"""Where uploaded bytes live. Local disk by default; each file under a generated name."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

READ_CHUNK = 1 << 20


class LocalStorage:
    """Files under one directory. A file is written as `<name>.part` and renamed into place only
    when complete, so a reader never sees half a file and an aborted upload leaves nothing."""

    def __init__(self, root: Path) -> None:
        self._root = root
        root.mkdir(parents=True, exist_ok=True)
        for stale in root.glob("*.part"):  # left by a crash mid-upload
            stale.unlink(missing_ok=True)

    def writer(self, name: str) -> LocalWriter:
        return LocalWriter(self._root / name)

    def read(self, name: str, offset: int = 0) -> Iterator[bytes]:
        with open(self._root / name, "rb") as f:
            f.seek(offset)
            while chunk := f.read(READ_CHUNK):
                yield chunk

    def delete(self, name: str) -> None:
        (self._root / name).unlink(missing_ok=True)


class LocalWriter:
    def __init__(self, path: Path) -> None:
        self._path = path
        self._part = path.with_name(path.name + ".part")
        self._file = open(self._part, "wb")  # noqa: SIM115 - closed in commit/abort

    def write(self, data: bytes) -> None:
        self._file.write(data)

    def commit(self) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self._part.rename(self._path)

    def abort(self) -> None:
        self._file.close()
        self._part.unlink(missing_ok=True)
