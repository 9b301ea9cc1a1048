"""Where uploaded bytes live: local disk (default) or MongoDB GridFS, so that workers on other
hosts need no shared disk. Each file is stored under a generated name."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import mmap
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

from bson import Binary
from gridfs import GridFSBucket, NoFile
from pymongo import ASCENDING
from pymongo.collection import Collection
from pymongo.database import Database

from services.common.errors import Unavailable

READ_CHUNK = 1 << 20
WRITE_BUFFER = 1 << 20
DIRECT_IO_ALIGN = 4096  # a multiple of every logical block size in use
BUCKET = "upload_blobs"


class Writer(Protocol):
    def write(self, data: bytes) -> None: ...
    def commit(self) -> None: ...
    def abort(self) -> None: ...


class Storage(Protocol):
    def writer(self, name: str) -> Writer: ...
    def read(self, name: str, offset: int = 0) -> Iterator[bytes]: ...
    def delete(self, name: str) -> None: ...

    def sweep_orphans(self, grace_seconds: float) -> int:
        """Deletes what uploads cut off by a crash left behind, once nothing was written to it
        for `grace_seconds` (younger leftovers may be an upload still running, here or on
        another replica); returns how many were deleted."""
        ...


class LocalStorage:
    """Files under one directory. A file is written as `<name>.part` and renamed into place only
    when complete, so a reader never sees half a file and an aborted upload leaves nothing."""

    def __init__(self, root: Path) -> None:
        self._root = root
        _make_private_dir(root)

    def writer(self, name: str) -> Writer:
        return LocalWriter(self._root / name)

    def read(self, name: str, offset: int = 0) -> Iterator[bytes]:
        with open(self._root / name, "rb") as f:
            f.seek(offset)
            while chunk := f.read(READ_CHUNK):
                yield chunk

    def delete(self, name: str) -> None:
        (self._root / name).unlink(missing_ok=True)

    def sweep_orphans(self, grace_seconds: float) -> int:
        cutoff = time.time() - grace_seconds
        removed = 0
        for part in self._root.glob("*.part"):
            with contextlib.suppress(FileNotFoundError):
                if part.stat().st_mtime < cutoff:
                    part.unlink()
                    removed += 1
        return removed


class LocalWriter:
    """Writes with O_DIRECT where the file system allows it. An upload is written once and read
    once, later, by the worker, so the page cache buys nothing, and copying into it costs more
    CPU than everything else the upload service does: measured on the 2-vCPU dev VM, 1 GiB
    through the page cache took 1.7-2.0 s of CPU and ran at 435-517 MiB/s, with O_DIRECT
    0.12-0.14 s at 1.7-2.1 GiB/s. O_DIRECT needs aligned memory, offsets and lengths, so bytes
    gather in a page-aligned buffer that is written whole; the last block is padded and the
    file truncated to its size."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._part = path.with_name(path.name + ".part")
        self._fd = _open_for_direct_write(self._part)
        self._buffer = mmap.mmap(-1, WRITE_BUFFER)  # anonymous mmap: page-aligned
        self._filled = 0
        self._size = 0

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = min(len(view), WRITE_BUFFER - self._filled)
            self._buffer[self._filled : self._filled + n] = view[:n]
            self._filled += n
            view = view[n:]
            if self._filled == WRITE_BUFFER:
                self._flush(WRITE_BUFFER)

    def _flush(self, length: int) -> None:
        # The views are released on the way out even when the write fails: a traceback that
        # kept one alive would make abort's closing of the buffer raise BufferError.
        with memoryview(self._buffer) as whole, whole[:length] as data:
            try:
                written = os.write(self._fd, data)
            except OSError as exc:
                # A file system may accept O_DIRECT at open and still refuse our alignment.
                if exc.errno != errno.EINVAL or not _drop_direct_io(self._fd):
                    raise
                written = os.write(self._fd, data)
        if written != length:  # a short write would break the alignment of every later one
            raise OSError(f"short write to {self._part}: {written} of {length} bytes")
        self._size += self._filled
        self._filled = 0

    def commit(self) -> None:
        if self._filled:
            padded = -(-self._filled // DIRECT_IO_ALIGN) * DIRECT_IO_ALIGN
            self._buffer[self._filled : padded] = bytes(padded - self._filled)
            self._flush(padded)
        os.ftruncate(self._fd, self._size)
        os.fsync(self._fd)
        self._close()
        self._part.rename(self._path)

    def abort(self) -> None:
        self._close()
        self._part.unlink(missing_ok=True)

    def _close(self) -> None:
        # Once only: abort follows a commit whose rename failed, and a closed fd number may
        # already belong to another upload's file.
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
            self._buffer.close()


def _make_private_dir(path: Path) -> None:
    """Uploads are their owners' data: the directory is this user's only (0700), and so is each
    file in it (FILE_MODE)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    with contextlib.suppress(PermissionError):  # a directory someone else owns is theirs to set
        path.chmod(0o700)


FILE_MODE = 0o600
_O_DIRECT = getattr(os, "O_DIRECT", 0)  # Linux only


def _open_for_direct_write(path: Path) -> int:
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    if _O_DIRECT:
        try:
            return os.open(path, flags | _O_DIRECT, FILE_MODE)
        except OSError as exc:  # some file systems refuse O_DIRECT (tmpfs before Linux 6.6)
            if exc.errno != errno.EINVAL:
                raise
    return os.open(path, flags, FILE_MODE)


def _drop_direct_io(fd: int) -> bool:
    """Turns O_DIRECT off on `fd`; False if it was not on."""
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    if not flags & _O_DIRECT:
        return False
    fcntl.fcntl(fd, fcntl.F_SETFL, flags & ~_O_DIRECT)
    return True


class GridFSStorage:
    """Files in GridFS's layout (bucket `upload_blobs`, `_id` = the generated name), readable by
    any GridFS client. Each 1 MiB chunk is inserted as soon as it fills (pymongo's own writer
    holds up to 48 MB of them in memory), and the files record only at the end, so readers
    never see half a file; an aborted upload deletes its chunks."""

    def __init__(self, db: Database) -> None:
        self._bucket = GridFSBucket(db, bucket_name=BUCKET, chunk_size_bytes=READ_CHUNK)
        self._files = db[f"{BUCKET}.files"]
        self._chunks = db[f"{BUCKET}.chunks"]
        # The indexes the GridFS spec asks for (pymongo's writer would create them).
        self._chunks.create_index([("files_id", ASCENDING), ("n", ASCENDING)], unique=True)
        self._files.create_index([("filename", ASCENDING), ("uploadDate", ASCENDING)])

    def writer(self, name: str) -> Writer:
        return _GridFSWriter(self._files, self._chunks, name)

    def read(self, name: str, offset: int = 0) -> Iterator[bytes]:
        with self._bucket.open_download_stream(name) as stream:
            stream.seek(offset)
            while chunk := stream.read(READ_CHUNK):
                yield chunk

    def delete(self, name: str) -> None:
        with contextlib.suppress(NoFile):
            self._bucket.delete(name)

    def sweep_orphans(self, grace_seconds: float) -> int:
        # Chunks without a files record. A chunk's ObjectId _id carries the time it was
        # written, so the newest one tells whether the upload may still be running.
        cutoff = datetime.now(UTC) - timedelta(seconds=grace_seconds)
        complete = set(self._files.distinct("_id"))
        removed = 0
        for name in self._chunks.distinct("files_id"):
            if name in complete:
                continue
            newest = self._chunks.find_one({"files_id": name}, {"_id": 1}, sort=[("_id", -1)])
            if newest and newest["_id"].generation_time < cutoff:
                self._chunks.delete_many({"files_id": name})
                removed += 1
        return removed


class _GridFSWriter:
    def __init__(self, files: Collection, chunks: Collection, name: str) -> None:
        self._files = files
        self._chunks = chunks
        self._name = name
        self._pending = bytearray()
        self._written = 0  # chunks
        self._length = 0

    def write(self, data: bytes) -> None:
        self._pending += data
        while len(self._pending) >= READ_CHUNK:
            self._insert(bytes(self._pending[:READ_CHUNK]))
            del self._pending[:READ_CHUNK]

    def _insert(self, piece: bytes) -> None:
        self._chunks.insert_one({"files_id": self._name, "n": self._written,
                                 "data": Binary(piece)})
        self._written += 1
        self._length += len(piece)

    def commit(self) -> None:
        if self._pending:
            self._insert(bytes(self._pending))
        # A sweep with a grace shorter than a stalled upload could have taken chunks away:
        # never record a file that would read back short (the caller aborts, deleting it).
        if self._chunks.count_documents({"files_id": self._name}) != self._written:
            raise Unavailable("the upload lost stored pieces while it was written: send it "
                              "again")
        self._files.insert_one({"_id": self._name, "filename": self._name,
                                "length": self._length, "chunkSize": READ_CHUNK,
                                "uploadDate": datetime.now(UTC)})

    def abort(self) -> None:
        self._chunks.delete_many({"files_id": self._name})


def open_storage(kind: str, upload_dir: Path, db: Database) -> Storage:
    if kind == "local":
        return LocalStorage(upload_dir)
    if kind == "gridfs":
        return GridFSStorage(db)
    raise SystemExit(f"UPLOAD_STORAGE must be 'local' or 'gridfs', not {kind!r}")
