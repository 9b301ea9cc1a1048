"""Where uploaded bytes live: local disk (default) or MongoDB GridFS, so that workers on other
hosts need no shared disk. Each file is stored under a generated name."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from gridfs import GridFSBucket, NoFile
from pymongo.database import Database

READ_CHUNK = 1 << 20


class Writer(Protocol):
    def write(self, data: bytes) -> None: ...
    def commit(self) -> None: ...
    def abort(self) -> None: ...


class Storage(Protocol):
    def writer(self, name: str) -> Writer: ...
    def read(self, name: str, offset: int = 0) -> Iterator[bytes]: ...
    def delete(self, name: str) -> None: ...


class LocalStorage:
    """Files under one directory. A file is written as `<name>.part` and renamed into place only
    when complete, so a reader never sees half a file and an aborted upload leaves nothing."""

    def __init__(self, root: Path) -> None:
        self._root = root
        root.mkdir(parents=True, exist_ok=True)
        for stale in root.glob("*.part"):  # left by a crash mid-upload
            stale.unlink(missing_ok=True)

    def writer(self, name: str) -> Writer:
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


class GridFSStorage:
    """Files as GridFS objects whose `_id` is the generated name. GridFS writes the file's
    record only when the upload stream closes, so readers never see half a file; an aborted
    upload deletes its chunks."""

    def __init__(self, db: Database) -> None:
        self._bucket = GridFSBucket(db, bucket_name="upload_blobs", chunk_size_bytes=READ_CHUNK)

    def writer(self, name: str) -> Writer:
        return _GridFSWriter(self._bucket, name)

    def read(self, name: str, offset: int = 0) -> Iterator[bytes]:
        with self._bucket.open_download_stream(name) as stream:
            stream.seek(offset)
            while chunk := stream.read(READ_CHUNK):
                yield chunk

    def delete(self, name: str) -> None:
        with contextlib.suppress(NoFile):
            self._bucket.delete(name)


class _GridFSWriter:
    def __init__(self, bucket: GridFSBucket, name: str) -> None:
        self._stream = bucket.open_upload_stream_with_id(name, name)

    def write(self, data: bytes) -> None:
        self._stream.write(data)

    def commit(self) -> None:
        self._stream.close()

    def abort(self) -> None:
        self._stream.abort()


def open_storage(kind: str, upload_dir: Path, db: Database) -> Storage:
    if kind == "local":
        return LocalStorage(upload_dir)
    if kind == "gridfs":
        return GridFSStorage(db)
    raise SystemExit(f"UPLOAD_STORAGE must be 'local' or 'gridfs', not {kind!r}")
