"""Local storage writes uploads with O_DIRECT through an aligned buffer: every byte must come
back, in order, at the exact size, whatever the sizes of the pieces written."""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from pathlib import Path

import pytest

from services.upload.storage import DIRECT_IO_ALIGN, WRITE_BUFFER, LocalStorage

SIZES = [
    [1],
    [DIRECT_IO_ALIGN],
    [WRITE_BUFFER],
    [WRITE_BUFFER, 1],
    [3 * WRITE_BUFFER + 17],  # one piece larger than the buffer
    [4095, 4097, 1, WRITE_BUFFER - 1, 70_000, 2 * WRITE_BUFFER],
    [],
]


def _pieces(sizes: list[int]) -> list[bytes]:
    return [os.urandom(n) for n in sizes]


@pytest.mark.parametrize("sizes", SIZES, ids=lambda s: "+".join(map(str, s)) or "empty")
def test_stored_file_has_exactly_the_bytes_written(tmp_path: Path, sizes: list[int]) -> None:
    storage = LocalStorage(tmp_path)
    pieces = _pieces(sizes)
    writer = storage.writer("f.csv")
    for piece in pieces:
        writer.write(piece)
    writer.commit()
    assert (tmp_path / "f.csv").read_bytes() == b"".join(pieces)
    assert b"".join(storage.read("f.csv", offset=min(5, sum(sizes)))) == b"".join(pieces)[5:]
    assert not list(tmp_path.glob("*.part"))


def test_aborted_write_leaves_nothing(tmp_path: Path) -> None:
    writer = LocalStorage(tmp_path).writer("f.csv")
    writer.write(os.urandom(WRITE_BUFFER + 5))
    assert (tmp_path / "f.csv.part").exists()
    writer.abort()
    assert list(tmp_path.iterdir()) == []


def test_file_systems_that_refuse_o_direct_are_written_through_the_cache(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_open = os.open
    direct = getattr(os, "O_DIRECT", 0)

    def refusing_open(path: Path, flags: int, mode: int = 0o777) -> int:
        if flags & direct:
            raise OSError(errno.EINVAL, "Invalid argument")  # what such file systems answer
        return real_open(path, flags, mode)

    monkeypatch.setattr(os, "open", refusing_open)
    writer = LocalStorage(tmp_path).writer("f.csv")
    data = os.urandom(WRITE_BUFFER + 123)
    writer.write(data)
    writer.commit()
    assert (tmp_path / "f.csv").read_bytes() == data


@pytest.mark.skipif(not hasattr(os, "O_DIRECT"), reason="O_DIRECT is Linux only")
def test_a_file_system_that_refuses_the_alignment_at_write_gets_cached_writes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_write = os.write
    refused = []

    def refusing_write(fd: int, data: bytes) -> int:
        if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT:
            refused.append(len(data))
            raise OSError(errno.EINVAL, "Invalid argument")  # e.g. larger logical blocks
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", refusing_write)
    writer = LocalStorage(tmp_path).writer("f.csv")
    data = os.urandom(2 * WRITE_BUFFER + 99)
    writer.write(data)
    writer.commit()
    assert refused == [WRITE_BUFFER]  # only the first write, then O_DIRECT is off
    assert (tmp_path / "f.csv").read_bytes() == data


def test_abort_after_a_failed_commit_closes_nothing_twice(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    writer = LocalStorage(tmp_path).writer("f.csv")
    writer.write(b"id,title\n")

    def failing_rename(self: Path, target: Path) -> None:
        raise OSError(errno.EXDEV, "rename failed")

    monkeypatch.setattr(Path, "rename", failing_rename)
    with pytest.raises(OSError, match="rename failed"):
        writer.commit()
    reused = os.open(tmp_path / "other", os.O_WRONLY | os.O_CREAT)  # likely the same fd number
    try:
        writer.abort()
        os.fstat(reused)  # still open: abort did not close another file's descriptor
    finally:
        os.close(reused)
    assert not (tmp_path / "f.csv.part").exists()


def test_a_failed_write_is_reported_as_itself_and_abort_leaves_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    writer = LocalStorage(tmp_path).writer("f.csv")

    def disk_full(fd: int, data: bytes) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", disk_full)
    with pytest.raises(OSError, match="No space left"):
        try:
            writer.write(os.urandom(WRITE_BUFFER))
        except BaseException:
            writer.abort()  # while the error is being handled, as the upload service does
            raise
    assert list(tmp_path.iterdir()) == []


def test_uploads_are_readable_by_their_owner_only(tmp_path: Path) -> None:
    root = tmp_path / "uploads"
    storage = LocalStorage(root)
    writer = storage.writer("f.csv")
    writer.write(b"id,title\n")
    assert stat.S_IMODE((root / "f.csv.part").stat().st_mode) == 0o600
    writer.commit()
    assert stat.S_IMODE((root / "f.csv").stat().st_mode) == 0o600
    assert stat.S_IMODE(root.stat().st_mode) == 0o700


def test_an_existing_upload_directory_is_made_private(tmp_path: Path) -> None:
    root = tmp_path / "uploads"
    root.mkdir(mode=0o755)
    LocalStorage(root)
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
