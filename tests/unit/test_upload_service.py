"""UploadService on in-memory records and storage: the size limit mid-stream, what a refused or
failed upload leaves behind (nothing), the task request, reading files back, and the per-user
quotas: stored bytes, uploads in progress (slots under leases) and tasks not ended."""

from __future__ import annotations

import hashlib
import itertools
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime
from typing import Any

import grpc
import pytest

from services.common.errors import (
    InvalidArgument,
    LimitReached,
    NotFound,
    TooLarge,
    Unavailable,
)
from services.upload.records import UploadedFile
from services.upload.service import StorageQuota, UploadService
from services.upload.task_client import TaskClient
from services.upload.upload_slots import UploadSlots
from services.worker.csv_source import CsvLimits
from services.worker.operation_spec import OperationSpec
from tests.unit.fakes import Clock, FakeFiles, FakeSlotStore, FakeStorage

LIMIT = 100
QUOTA = 250  # two and a half files at the limit
CONCURRENT = 2
PENDING = 4
LEASE = 30
RETENTION = 7 * 86400
CSV = b"id,title\n1,Heat\n2,Ran\n"
CSV_LIMITS = CsvLimits(max_row_chars=1 << 20, max_header_chars=1 << 16, max_columns=256)


class Uploads:
    """The upload service on fakes. It is its own task service: one that counts each user's
    tasks not ended, as the real one does, and refuses more than PENDING."""

    def __init__(self) -> None:
        self.clock = Clock()
        self.files = FakeFiles()
        self.storage = FakeStorage()
        self.slot_store = FakeSlotStore()
        self.slots = self.replica()
        self.task_requests: list[tuple[UploadedFile, str, bool]] = []
        self.quota_checks: list[tuple[str, int]] = []
        self.active_tasks: Counter[str] = Counter()
        self.task_service_down = False
        self.service = UploadService(self.files, self.storage, self, LIMIT, slots=self.slots,
                                     quota=StorageQuota(QUOTA, RETENTION),
                                     csv_limits=CSV_LIMITS)

    def replica(self) -> UploadSlots:
        """Slots as one more upload service process sees them (the same records)."""
        return UploadSlots(self.slot_store, per_user=CONCURRENT, lease_seconds=LEASE,
                           clock=self.clock)

    def check_quota(self, owner: str, incoming: int) -> None:
        self.quota_checks.append((owner, incoming))
        if self.active_tasks[owner] + incoming > PENDING:
            raise LimitReached(f"too many tasks at once: {self.active_tasks[owner]} active")

    def create(self, file: UploadedFile, username: str, by_admin: bool) -> str:
        if self.task_service_down:
            raise Unavailable("the task service could not create the task (UNAVAILABLE)")
        if self.active_tasks[file.owner] >= PENDING:
            raise LimitReached("too many tasks at once")
        self.active_tasks[file.owner] += 1
        self.task_requests.append((file, username, by_admin))
        return f"task-{len(self.task_requests)}"

    def create_operation(self, file: UploadedFile, spec: OperationSpec, username: str) -> str:
        raise AssertionError("uploads start no operations")

    def assert_nothing_kept(self) -> None:
        assert self.storage.files == {}
        assert self.storage.open_writers == 0
        assert all(f.deleted for f in self.files.files.values())
        assert self.task_requests == []
        assert self.slot_store.slots == {}  # the upload's slot is free again


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
    assert file.task_id == stored.task_id and file.header.columns == ("id", "title")
    assert uploads.task_requests == [(replace(file, task_id=""), "alice", False)]


def test_an_administrators_upload_is_imported_as_an_administrators(uploads: Uploads) -> None:
    uploads.service.upload("u0", "fixes.csv", _pieces(CSV), username="root", by_admin=True)
    (_, username, by_admin), = uploads.task_requests
    assert (username, by_admin) == ("root", True)


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


class _Refusing(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode) -> None:
        self._code = code

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return "too many tasks at once: 6 not ended"


class _TaskStub:
    def __init__(self, code: grpc.StatusCode) -> None:
        self.code = code

    def CreateTask(self, request: Any, timeout: float, wait_for_ready: bool) -> Any:
        raise _Refusing(self.code)


@pytest.mark.parametrize("code, refusal, message", [
    (grpc.StatusCode.RESOURCE_EXHAUSTED, LimitReached, "too many tasks at once: 6 not ended"),
    (grpc.StatusCode.UNAVAILABLE, Unavailable, r"could not create the task \(UNAVAILABLE\)"),
    (grpc.StatusCode.INTERNAL, Unavailable, r"could not create the task \(INTERNAL\)"),
])
def test_the_task_client_says_why_a_task_was_not_created(
        code: grpc.StatusCode, refusal: type[Exception], message: str) -> None:
    # What the upload service answers, and whether it keeps the file, turns on these two.
    client = TaskClient(grpc.insecure_channel("127.0.0.1:9"))
    client._stub = _TaskStub(code)  # type: ignore[assignment]
    file = UploadedFile(id="f1", owner="u1", original_name="m.csv", file_path="f1", size_bytes=3,
                        sha256="", created_at=datetime(2026, 1, 1))
    with pytest.raises(refusal, match=message):
        client.create(file, "ann", by_admin=False)
    with pytest.raises(refusal, match=message):
        client.create_operation(file, OperationSpec(operation="dedupe"), "ann")


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
    ids = [uploads.service.upload(f"u{n}", "m.csv", iter([CSV])).file_id for n in range(20)]
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    assert len(set(ids)) == len(ids)
    # 128 random bits: one id says nothing about the next.
    assert all(abs(int(a, 16) - int(b, 16)) > 2**64 for a, b in itertools.pairwise(ids))


# --- quotas: stored bytes -----------------------------------------------------------------------

def _unread(data: bytes, read: list[bytes]) -> Iterator[bytes]:
    """`data` in pieces, noting each piece as the upload takes it."""
    for piece in _pieces(data):
        read.append(piece)
        yield piece


def test_uploads_fill_the_storage_quota_and_the_next_is_refused_before_it_is_read(
        uploads: Uploads) -> None:
    uploads.service.upload("u1", "a.csv", _pieces(b"a" * LIMIT))
    uploads.service.upload("u1", "b.csv", _pieces(b"b" * LIMIT))
    uploads.service.upload("u1", "c.csv", _pieces(b"c" * (QUOTA - 2 * LIMIT)))
    kept = dict(uploads.storage.files)
    read: list[bytes] = []
    with pytest.raises(TooLarge) as refused:
        uploads.service.upload("u1", "d.csv", _unread(b"d" * 10, read))
    assert read == []
    assert str(refused.value) == (
        f"this upload would pass your storage quota: your stored files take {QUOTA} of the "
        f"{QUOTA} bytes one user may keep, so an upload may have 0 bytes now; files are deleted "
        "7 days after their task ended (DELETE /files/{file_id} deletes one now)")
    assert uploads.storage.files == kept and len(uploads.task_requests) == 3
    assert uploads.slot_store.slots == {}
    # Another user's quota is their own.
    assert uploads.service.upload("u2", "e.csv", _pieces(CSV)).size_bytes == len(CSV)


def test_a_file_over_the_room_left_is_refused_mid_stream_with_the_quota_message(
        uploads: Uploads) -> None:
    uploads.service.upload("u1", "a.csv", _pieces(b"a" * LIMIT))
    uploads.service.upload("u1", "b.csv", _pieces(b"b" * LIMIT))
    room = QUOTA - 2 * LIMIT
    read: list[bytes] = []
    with pytest.raises(TooLarge, match=f"so an upload may have {room} bytes now"):
        uploads.service.upload("u1", "c.csv", _unread(b"c" * LIMIT, read))
    assert room < len(b"".join(read)) <= room + 7  # stopped at the piece that passed the room
    assert len(uploads.storage.files) == 2 and uploads.storage.open_writers == 0
    assert uploads.service.upload("u1", "d.csv", _pieces(b"d" * room)).size_bytes == room


def test_deleted_and_expired_files_give_their_room_back(uploads: Uploads) -> None:
    first = uploads.service.upload("u1", "a.csv", _pieces(b"a" * LIMIT))
    uploads.service.upload("u1", "b.csv", _pieces(b"b" * LIMIT))
    with pytest.raises(TooLarge):
        uploads.service.upload("u1", "c.csv", _pieces(b"c" * LIMIT))
    uploads.service.delete(first.file_id)  # what the retention sweep does
    assert uploads.service.upload("u1", "c.csv", _pieces(b"c" * LIMIT)).size_bytes == LIMIT


def test_a_file_that_passes_the_quota_with_one_recorded_meanwhile_is_not_kept(
        uploads: Uploads) -> None:
    """Two uploads of one user stream at once, each within the room they were given: the one
    recorded second finds the quota passed, and is discarded."""
    def with_another_upload_ending_meanwhile() -> Iterator[bytes]:
        yield b"x" * 45
        uploads.service.upload("u1", "other.csv", _pieces(b"o" * LIMIT))
        yield b"x" * 45

    uploads.service.upload("u1", "a.csv", _pieces(b"a" * LIMIT))
    with pytest.raises(TooLarge, match="your stored files take 200 of the 250 bytes"):
        uploads.service.upload("u1", "late.csv", with_another_upload_ending_meanwhile())
    stored = [f for f in uploads.files.files.values() if not f.deleted]
    assert sorted(f.original_name for f in stored) == ["a.csv", "other.csv"]
    assert sum(f.size_bytes for f in stored) <= QUOTA
    assert len(uploads.storage.files) == 2 and len(uploads.task_requests) == 2


# --- quotas: uploads in progress ----------------------------------------------------------------

def test_a_user_with_every_slot_in_use_is_refused_before_the_upload_is_read(
        uploads: Uploads) -> None:
    read: list[bytes] = []
    with uploads.slots.hold("u1"), uploads.replica().hold("u1"):  # on two replicas
        with pytest.raises(LimitReached) as refused:
            uploads.service.upload("u1", "m.csv", _unread(CSV, read))
        assert str(refused.value) == (
            "too many uploads at once: you already have as many uploads in progress as one user "
            f"may ({CONCURRENT}); wait for one to finish and try again")
        assert read == []
        uploads.service.upload("u2", "m.csv", _pieces(CSV))  # others upload as before
    uploads.service.upload("u1", "m.csv", _pieces(CSV))  # and so does the user, once one ended


@pytest.mark.parametrize("fails", ["client leaves", "too large", "empty", "task service down"])
def test_an_upload_gives_its_slot_back_however_it_ends(uploads: Uploads, fails: str) -> None:
    def client_leaves() -> Iterator[bytes]:
        yield b"id,title\n"
        raise ConnectionResetError("client went away")

    chunks = {"client leaves": client_leaves(), "too large": _pieces(b"x" * (LIMIT + 1)),
              "empty": iter([b""]), "task service down": _pieces(CSV)}[fails]
    uploads.task_service_down = fails == "task service down"
    with pytest.raises((ConnectionResetError, TooLarge, InvalidArgument, Unavailable)):
        uploads.service.upload("u1", "m.csv", chunks)
    assert uploads.slot_store.slots == {}


def test_a_slot_held_by_a_dead_replica_frees_itself_when_its_lease_ends(uploads: Uploads
                                                                        ) -> None:
    dead, live = uploads.replica(), uploads.replica()
    # Entered and never left (kept referenced, or closing it would release): the process died
    # mid-upload, and nothing renews or releases its slot.
    died = dead.hold("u1")
    died.__enter__()
    running = live.hold("u1")
    running.__enter__()  # a long upload on a live replica
    for _ in range(2):  # the live replica's heartbeat keeps its lease while the upload runs
        uploads.clock.advance(live.renew_every())
        live.renew_held()
    with pytest.raises(LimitReached):  # within the dead one's lease
        uploads.service.upload("u1", "m.csv", _pieces(CSV))
    for _ in range(2):  # past it
        uploads.clock.advance(live.renew_every())
        live.renew_held()
    assert uploads.service.upload("u1", "m.csv", _pieces(CSV)).size_bytes == len(CSV)
    with uploads.slots.hold("u1"), pytest.raises(LimitReached):  # the live one still holds
        uploads.service.upload("u1", "m.csv", _pieces(CSV))


# --- quotas: tasks not ended --------------------------------------------------------------------

def test_a_user_at_the_pending_task_limit_is_refused_before_the_upload_is_read(
        uploads: Uploads) -> None:
    for n in range(PENDING):
        uploads.service.upload("u1", f"{n}.csv", _pieces(CSV))
    read: list[bytes] = []
    with pytest.raises(LimitReached, match="too many tasks at once"):
        uploads.service.upload("u1", "m.csv", _unread(CSV, read))
    assert read == [] and len(uploads.task_requests) == PENDING
    assert uploads.slot_store.slots == {}
    uploads.active_tasks["u1"] -= 1  # a task ended
    uploads.service.upload("u1", "m.csv", _pieces(CSV))


def test_the_task_check_counts_the_users_other_uploads_in_progress(uploads: Uploads) -> None:
    with uploads.replica().hold("u1"):
        uploads.service.upload("u1", "m.csv", _pieces(CSV))
    assert uploads.quota_checks == [("u1", 2)]


def test_a_file_whose_task_passes_the_limit_meanwhile_is_discarded_with_the_limits_message(
        uploads: Uploads) -> None:
    def while_other_uploads_end() -> Iterator[bytes]:
        yield CSV
        uploads.active_tasks["u1"] = PENDING  # the user's other uploads created their tasks

    with pytest.raises(LimitReached, match="too many tasks at once"):  # 429, not 503
        uploads.service.upload("u1", "m.csv", while_other_uploads_end())
    assert uploads.storage.files == {}
    assert all(f.deleted for f in uploads.files.files.values())
    assert uploads.slot_store.slots == {}
