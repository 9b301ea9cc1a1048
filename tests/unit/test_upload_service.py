"""UploadService on in-memory records and storage: the size limit mid-stream, what a refused or
failed upload leaves behind (nothing), the task request, and reading files back."""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterator

import pytest

from services.common.errors import InvalidArgument, NotFound, TooLarge, Unavailable
from services.upload.records import UploadedFile
from services.upload.service import UploadService
from tests.unit.fakes import FakeFiles, FakeStorage

LIMIT = 100
CSV = b"id,title\n1,Heat\n2,Ran\n"


class Uploads:
    def __init__(self) -> None:
        self.files = FakeFiles()
        self.storage = FakeStorage()
        self.task_requests: list[tuple[UploadedFile, str]] = []
        self.task_service_down = False
        self.service = UploadService(self.files, self.storage, self._create_task, LIMIT)

    def _create_task(self, file: UploadedFile, username: str) -> str:
        if self.task_service_down:
            raise ConnectionError("task service unreachable")
        self.task_requests.append((file, username))
        return f"task-{len(self.task_requests)}"

    def assert_nothing_kept(self) -> None:
        assert self.storage.files == {}
        assert self.storage.open_writers == 0
        assert all(f.deleted for f in self.files.files.values())
        assert self.task_requests == []


@pytest.fixture
def uploads() -> Uploads:
    return Uploads()


def _pieces(data: bytes, size: int = 7) -> Iterator[bytes]:
    return (data[i : i + size] for i in range(0, len(data), size))


def test_an_upload_is_stored_recorded_and_handed_to_the_task_service(uploads: Uploads) -> None:
    stored = uploads.service.upload("u1", "C:\\exports\\movies.csv", _pieces(CSV),
                                    username="alice")
    assert stored.task_id == "task-1"
    assert stored.size_bytes == len(CSV)
    assert stored.sha256 == hashlib.sha256(CSV).hexdigest()
    file = uploads.service.get(stored.file_id)
    assert (file.owner, file.original_name, file.size_bytes) == ("u1", "movies.csv", len(CSV))
    assert not file.deleted
    assert uploads.storage.files[file.file_path] == CSV
    assert file.file_path == f"{stored.file_id}.csv"  # a generated name, not the client's
    assert uploads.task_requests == [(file, "alice")]


def test_a_file_of_exactly_the_limit_is_accepted_and_one_byte_more_is_not(uploads: Uploads
                                                                         ) -> None:
    assert uploads.service.upload("u1", "m.csv", _pieces(b"x" * LIMIT)).size_bytes == LIMIT
    with pytest.raises(TooLarge):
        uploads.service.upload("u1", "m.csv", _pieces(b"x" * (LIMIT + 1)))


def test_a_file_over_the_limit_is_refused_before_the_rest_is_read(uploads: Uploads) -> None:
    sent: list[bytes] = []

    def endless() -> Iterator[bytes]:
        while True:
            sent.append(b"x" * 30)
            yield sent[-1]

    with pytest.raises(TooLarge, match=f"larger than the limit of {LIMIT} bytes"):
        uploads.service.upload("u1", "big.csv", endless())
    assert len(sent) == 4  # 120 bytes: the chunk that crossed the limit is the last one read
    uploads.assert_nothing_kept()
    assert uploads.files.files == {}


def test_an_empty_file_is_refused(uploads: Uploads) -> None:
    with pytest.raises(InvalidArgument, match="file is empty"):
        uploads.service.upload("u1", "empty.csv", iter([b"", b""]))
    uploads.assert_nothing_kept()
    assert uploads.files.files == {}


def test_a_client_that_goes_away_mid_upload_leaves_nothing(uploads: Uploads) -> None:
    def cut_off() -> Iterator[bytes]:
        yield b"id,title\n"
        raise ConnectionResetError("client went away")

    with pytest.raises(ConnectionResetError):
        uploads.service.upload("u1", "m.csv", cut_off())
    uploads.assert_nothing_kept()
    assert uploads.files.files == {}


def test_a_file_whose_task_cannot_be_created_is_discarded(uploads: Uploads) -> None:
    uploads.task_service_down = True
    with pytest.raises(Unavailable, match="could not be created, so it was discarded"):
        uploads.service.upload("u1", "m.csv", _pieces(CSV))
    uploads.assert_nothing_kept()
    (record,) = uploads.files.files.values()  # the record stays, marked deleted
    assert record.deleted


def test_a_file_reads_back_from_an_offset(uploads: Uploads) -> None:
    file_id = uploads.service.upload("u1", "m.csv", _pieces(CSV)).file_id
    assert b"".join(uploads.service.read(file_id, 0)) == CSV
    assert b"".join(uploads.service.read(file_id, 9)) == CSV[9:]
    assert b"".join(uploads.service.read(file_id, len(CSV))) == b""
    for offset in (-1, len(CSV) + 1):
        with pytest.raises(InvalidArgument, match=f"offset must be between 0 and {len(CSV)}"):
            uploads.service.read(file_id, offset)


def test_a_deleted_file_keeps_its_record_but_not_its_bytes(uploads: Uploads) -> None:
    file_id = uploads.service.upload("u1", "m.csv", _pieces(CSV)).file_id
    assert uploads.service.delete(file_id).deleted
    assert uploads.storage.files == {}
    assert uploads.service.get(file_id).deleted
    with pytest.raises(NotFound, match="was deleted"):
        uploads.service.read(file_id, 0)
    with pytest.raises(NotFound, match="no file with id 'nope'"):
        uploads.service.delete("nope")


def test_file_ids_are_random_not_counted(uploads: Uploads) -> None:
    ids = [uploads.service.upload("u1", "m.csv", iter([CSV])).file_id for _ in range(20)]
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    assert len(set(ids)) == len(ids)
    # 128 random bits: one id says nothing about the next.
    assert all(abs(int(a, 16) - int(b, 16)) > 2**64 for a, b in itertools.pairwise(ids))
