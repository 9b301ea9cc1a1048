"""Issue 10, item 15, replayed against the real stack while a second user works
(tests/integration/bystander.py): a user who keeps uploading (tasks not ended, uploads at once,
stored bytes), a file of a rejected row every two bytes, a task list of hundreds, and a flood of
cached pages in the Redis that carries the jobs. Each is now bounded: the attacker gets a 429 or
a 413 that says which limit, where they stand and what to do, their earlier tasks still end,
and the bystander sees nothing. The stack runs with lowered limits (conftest.py).
"""

from __future__ import annotations

import re
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import jwt
import pytest
import redis
import requests
from bson import ObjectId
from pymongo import MongoClient
from pymongo.database import Database

from devstack.stack import REDIS_EVICTION_POLICY, Stack
from marquee.task.v1 import task_pb2, task_pb2_grpc
from marquee.upload.v1 import upload_pb2, upload_pb2_grpc
from services.task.server import NOT_STORED_HEADER
from tests.integration.bystander import Bystander
from tests.integration.conftest import Api, User, generated_csv

BOUNDARY = "quota-b0undary"
MIB = 1 << 20


def _user_id(user: User) -> str:
    return str(jwt.decode(user.token, options={"verify_signature": False})["sub"])


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


@pytest.fixture(scope="module")
def db(stack: Stack) -> Iterator[Database]:
    client: MongoClient = MongoClient(stack.env["MONGO_URI"])
    yield client[stack.settings.mongo_db]
    client.close()


def _eventually(what: str, condition: Callable[[], bool], seconds: float) -> float:
    """Waits for `condition`; returns how long it took."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < seconds, f"{what} did not happen in {seconds} s"
        time.sleep(0.1)
    return time.monotonic() - started


def _rejected_rows(count: int) -> bytes:
    """A file of `count` rows the worker rejects (one field where the header has two): seconds
    of a worker for a few tens of thousands, and nothing written to the catalog."""
    return b"id,title\n" + b"x\n" * count


def _all_end(api: Api, user: User, task_ids: list[str], status: str) -> None:
    for task_id in task_ids:
        task = api.wait_task(user, task_id, timeout=120)
        assert task["status"] == status, task


# --- tasks not ended, per user ---------------------------------------------------------------

def _waiting_tasks(db: Database, user: User, count: int) -> list[str]:
    """Tasks of `user` that stay `pending` for the length of a test: stored as the task service
    stores them, but never enqueued (the stall sweep would notice them after a minute)."""
    now = _now()
    docs = [{"_id": uuid.uuid4().hex, "user": _user_id(user), "username": user.username,
             "kind": "ingest_csv", "file_id": "none", "file_path": "none.csv",
             "original_name": "waiting.csv", "bytes_total": 1, "status": "pending",
             "progress": {}, "rejected_sample": [], "error": "", "attempts": 0,
             "cancel_requested": False, "file_deleted": True, "created_at": now,
             "created_ns": time.time_ns(), "updated_at": now, "requeued_at": now}
            for _ in range(count)]
    db["task_tasks"].insert_many(docs)
    return [str(d["_id"]) for d in docs]


def test_a_user_at_the_pending_task_limit_gets_429_and_their_tasks_still_end(
        api: Api, stack: Stack) -> None:
    limit = stack.settings.task_max_pending_per_user
    attacker = api.register("pending")
    data = _rejected_rows(20_000)  # seconds of a worker each: the uploads outrun the ingestion
    accepted: list[str] = []
    with Bystander(api) as bystander:
        for _ in range(3 * limit):
            r = api.upload(attacker, data)
            if r.status_code != 202:
                break
            accepted.append(r.json()["task_id"])
        assert r.status_code == 429, r.text
        message = r.json()["message"]
        assert re.fullmatch(
            r"too many tasks at once: you have \d+ tasks pending or processing, and one user "
            rf"may have {limit}; wait for one to end \(GET /tasks shows them\) and upload again",
            message), message
        assert len(accepted) >= limit
        _all_end(api, attacker, accepted, "done")
        assert api.upload(attacker, data).status_code == 202  # their tasks ended: room again
    bystander.assert_unharmed()


def test_a_native_upload_at_the_pending_task_limit_is_refused_before_its_bytes(
        api: Api, stack: Stack, db: Database, gateway_channel: grpc.Channel) -> None:
    attacker = api.register("pending")
    waiting = _waiting_tasks(db, attacker, stack.settings.task_max_pending_per_user)
    sent = 0

    def sixteen_mib() -> Iterator[upload_pb2.UploadFileRequest]:
        """A MiB every 0.2 s, so that what is sent before the answer is not what the flow
        control windows between here and the service hold (a few MiB), but what the service
        read before it refused."""
        nonlocal sent
        yield upload_pb2.UploadFileRequest(metadata=upload_pb2.FileMetadata(filename="big.csv"))
        for _ in range(16):
            time.sleep(0.2)
            sent += 1
            yield upload_pb2.UploadFileRequest(chunk=b"x" * MIB)

    with Bystander(api) as bystander, pytest.raises(grpc.RpcError) as refused:
        upload_pb2_grpc.UploadServiceStub(gateway_channel).UploadFile(
            sixteen_mib(), metadata=attacker.metadata, timeout=60)
    bystander.assert_unharmed()
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED  # type: ignore[attr-defined]
    assert "too many tasks at once" in refused.value.details()  # type: ignore[attr-defined]
    assert sent <= 2, sent  # refused on the metadata, before the file
    assert db["upload_files"].count_documents({"owner": _user_id(attacker)}) == 0
    db["task_tasks"].update_many({"_id": {"$in": waiting}},
                                 {"$set": {"status": "cancelled", "finished_at": _now()}})


# --- uploads in progress, per user -----------------------------------------------------------

def _uploads_in_progress(db: Database, user: User) -> int:
    """The user's upload slots held under a live lease, as the upload services see them."""
    return db["upload_slots"].count_documents({"owner": _user_id(user),
                                               "expires_at": {"$gt": _now()}})


def _slow_upload(api: Api, user: User, data: bytes, seconds: float) -> requests.Response:
    """A REST upload that sends `data` over `seconds`, well above the minimum rate."""
    pieces = [data[i : i + 64 * 1024] for i in range(0, len(data), 64 * 1024)]

    def body() -> Iterator[bytes]:
        yield (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; "
               f"filename=\"slow.csv\"\r\nContent-Type: text/csv\r\n\r\n").encode()
        for piece in pieces:
            time.sleep(seconds / len(pieces))
            yield piece
        yield f"\r\n--{BOUNDARY}--\r\n".encode()

    return requests.post(api.url("/files/upload"), data=body(), timeout=120, headers={
        **user.headers, "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})


class SlowUploads:
    """`count` slow uploads of one user on threads, 600 movies each (about 210 KB: over 10 s,
    still above the minimum rate); `responses` once they are joined."""

    def __init__(self, api: Api, user: User, count: int, seconds: float) -> None:
        self.responses: list[requests.Response | Exception] = []

        def run(n: int) -> None:
            # Ids of their own: the catalog is slow to upsert one movie from several files at
            # once, and the point here is the uploads, not the catalog.
            data = generated_csv(600, 97_100_000 + 1000 * n)
            try:
                self.responses.append(_slow_upload(api, user, data, seconds))
            except requests.RequestException as exc:
                self.responses.append(exc)

        self._threads = [threading.Thread(target=run, args=(n,), daemon=True)
                         for n in range(count)]
        for thread in self._threads:
            thread.start()

    def join(self) -> None:
        for thread in self._threads:
            thread.join(150)

    def task_ids(self) -> list[str]:
        assert [getattr(r, "status_code", r) for r in self.responses] == [202] * len(
            self._threads)
        return [r.json()["task_id"] for r in self.responses if isinstance(r, requests.Response)]


def test_a_user_at_the_concurrent_upload_limit_gets_429_and_gets_the_slots_back(
        api: Api, stack: Stack, db: Database) -> None:
    limit = stack.settings.upload_max_concurrent_per_user
    attacker = api.register("parallel")
    with Bystander(api) as bystander:
        slow = SlowUploads(api, attacker, limit, seconds=6)
        _eventually("every slot taken", lambda: _uploads_in_progress(db, attacker) == limit, 10)
        r = api.upload(attacker, generated_csv(5, 97_200_000))
        assert r.status_code == 429, r.text
        assert r.json()["message"] == (
            "too many uploads at once: you already have as many uploads in progress as one user "
            f"may ({limit}); wait for one to finish and try again")
        slow.join()
        _all_end(api, attacker, slow.task_ids(), "done")
        assert _uploads_in_progress(db, attacker) == 0
        assert api.upload(attacker, generated_csv(5, 97_200_000)).status_code == 202
    bystander.assert_unharmed()


def _half_sent_upload(stack: Stack, user: User) -> socket.socket:
    """An upload whose client sent the headers and part of the body, and waits."""
    conn = socket.create_connection(("127.0.0.1", stack.ports["gateway"]), timeout=10)
    head = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"gone.csv\"\r\n\r\nid,title\n").encode()
    conn.sendall((f"POST /files/upload HTTP/1.1\r\nHost: localhost\r\n"
                  f"Authorization: Bearer {user.token}\r\n"
                  f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
                  f"Content-Length: {len(head) + MIB}\r\n\r\n").encode() + head)
    return conn


def test_a_client_that_goes_away_mid_upload_gives_its_slot_back_at_once(
        api: Api, stack: Stack, db: Database) -> None:
    limit = stack.settings.upload_max_concurrent_per_user
    attacker = api.register("vanish")
    with Bystander(api) as bystander:
        clients = [_half_sent_upload(stack, attacker) for _ in range(limit)]
        _eventually("every slot taken", lambda: _uploads_in_progress(db, attacker) == limit, 10)
        for client in clients:
            client.close()
        # Given back when the upload ends, well before its lease would have run out.
        took = _eventually("slots given back", lambda: _uploads_in_progress(db, attacker) == 0,
                           stack.settings.upload_slot_lease_seconds)
        assert took < stack.settings.upload_slot_lease_seconds / 2, took
        assert api.upload(attacker, generated_csv(5, 97_200_000)).status_code == 202
    bystander.assert_unharmed()


def test_the_slots_of_a_killed_upload_service_free_themselves_when_their_leases_end(
        api: Api, stack: Stack, db: Database) -> None:
    """The uploads in progress are counted in the database, under leases: a crash neither
    forgets them (another replica would let the user start more) nor keeps them for ever."""
    limit = stack.settings.upload_max_concurrent_per_user
    lease = stack.settings.upload_slot_lease_seconds
    attacker = api.register("crash")
    slow = SlowUploads(api, attacker, limit, seconds=10)
    _eventually("every slot taken", lambda: _uploads_in_progress(db, attacker) == limit, 10)
    stack.kill("upload", signal.SIGKILL)
    killed_at = time.monotonic()
    assert _uploads_in_progress(db, attacker) == limit  # still counted: nobody released them
    stack.wait_ready("upload")

    def accepted() -> bool:
        return bool(api.upload(attacker, generated_csv(5, 97_200_000)).status_code == 202)

    _eventually("an upload accepted again", accepted, lease + 20)
    # Not before the dead process's leases ended: renewed every lease / 3 until the kill, each
    # lasted at least 2/3 of a lease after it.
    assert time.monotonic() - killed_at >= lease * 2 / 3 - 0.5
    slow.join()
    assert all(not isinstance(r, requests.Response) or r.status_code >= 500
               for r in slow.responses), slow.responses


# --- stored bytes, per user ------------------------------------------------------------------

def _junk(size: int) -> bytes:
    """A file the worker refuses at once (binary), so that its task ends within a second and
    its bytes stay stored until the retention period ends."""
    return b"\0" * size


def _native_upload(channel: grpc.Channel, user: User, data: bytes) -> None:
    def messages() -> Iterator[upload_pb2.UploadFileRequest]:
        yield upload_pb2.UploadFileRequest(metadata=upload_pb2.FileMetadata(filename="n.csv"))
        for i in range(0, len(data), MIB):
            yield upload_pb2.UploadFileRequest(chunk=data[i : i + MIB])

    upload_pb2_grpc.UploadServiceStub(channel).UploadFile(messages(), metadata=user.metadata,
                                                          timeout=60)


def test_a_user_at_the_storage_quota_gets_413_until_their_files_expire(
        api: Api, stack: Stack, db: Database, gateway_channel: grpc.Channel) -> None:
    quota = stack.settings.upload_max_stored_bytes_per_user
    retention = stack.settings.file_retention_seconds
    attacker = api.register("hoarder")
    with Bystander(api) as bystander:
        first = [api.upload_ok(attacker, _junk(12 * MIB), f"junk{n}.csv") for n in range(2)]
        # Over the room left (8 MiB): refused mid-stream, with where the user stands.
        with pytest.raises(grpc.RpcError) as refused:
            _native_upload(gateway_channel, attacker, _junk(10 * MIB))
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED  # type: ignore[attr-defined]
        assert refused.value.details() == (  # type: ignore[attr-defined]
            f"this upload would pass your storage quota: your stored files take {24 * MIB} of "
            f"the {quota} bytes one user may keep, so an upload may have {quota - 24 * MIB} "
            f"bytes now; files are deleted {retention} seconds after their task ended "
            "(DELETE /files/{file_id} deletes one now)")
        last = api.upload_ok(attacker, _junk(quota - 24 * MIB), "junk-last.csv")  # to the byte
        r = api.upload(attacker, b"id,title\n1,Heat\n")
        assert r.status_code == 413, r.text
        assert f"your stored files take {quota} of the {quota} bytes" in r.json()["message"]
        _all_end(api, attacker, [*first, last], "failed")
        # Expired files no longer count.
        _eventually("the files expired", lambda: db["upload_files"].count_documents(
            {"owner": _user_id(attacker), "deleted": False}) == 0, retention + 20)
        assert api.upload(attacker, b"id,title\n1,Heat\n").status_code == 202
    bystander.assert_unharmed()


# --- rejected rows stored per task -----------------------------------------------------------

def test_a_file_of_rejected_rows_stores_the_first_and_counts_them_all(
        api: Api, stack: Stack, db: Database) -> None:
    keep = stack.settings.task_max_stored_rejections
    rows = 10 * keep
    attacker = api.register("rejects")
    data = _rejected_rows(rows)  # a rejected row every two bytes, as in the report
    with Bystander(api) as bystander:
        task = api.wait_task(attacker, api.upload_ok(attacker, data, "rejects.csv"), 120)
        r = api.get(f"/task/{task['task_id']}/errors", headers=attacker.headers)
    bystander.assert_unharmed()
    assert task["status"] == "done", task
    assert (task["rows_read"], task["rows_imported"], task["rows_rejected"]) == (rows, 0, rows)
    assert db["task_rejections"].count_documents({"task_id": task["task_id"]}) == keep
    assert r.status_code == 200, r.text
    assert r.headers[NOT_STORED_HEADER] == str(rows - keep)
    lines = r.text.splitlines()
    assert len(lines) == 1 + keep + 1  # the header, the rows kept, the note
    assert lines[1].startswith('"2","row has 1 fields but the header has 2')
    assert lines[keep].startswith(f'"{keep + 1}",')
    assert lines[-1] == (
        f'"","{rows - keep} more rejected rows were not stored: a task keeps its first {keep} '
        '(TASK_MAX_STORED_REJECTIONS); rows_rejected counts them all",""')


# --- the task list ---------------------------------------------------------------------------

def _ended_tasks(db: Database, user: User) -> list[Any]:
    """160 ended tasks of `user`: 20 from before random ids and `created_ns` (ObjectIds), in the
    same millisecond as 40 others, and 100 more a second apart. Returns their ids in the order
    the list must show them: newest first, `created_ns` next (missing lowest), then the id."""
    same_ms = _now().replace(microsecond=123000) - timedelta(days=1)
    docs: list[dict[str, Any]] = []

    def task(task_id: Any, created_at: datetime, created_ns: int | None) -> None:
        doc = {"_id": task_id, "user": _user_id(user), "username": user.username,
               "kind": "ingest_csv", "file_id": "none", "file_path": "none.csv",
               "original_name": "old.csv", "bytes_total": 1, "status": "done",
               "progress": {}, "rejected_sample": [], "error": "", "attempts": 1,
               "cancel_requested": False, "file_deleted": True, "created_at": created_at,
               "updated_at": created_at, "finished_at": created_at}
        if created_ns is not None:
            doc["created_ns"] = created_ns
        docs.append(doc)

    for _ in range(20):
        task(ObjectId(), same_ms, None)
    for n in range(40):
        task(uuid.uuid4().hex, same_ms, 1_000 + n % 7)  # ties on created_ns too
    for n in range(100):
        task(uuid.uuid4().hex, same_ms - timedelta(seconds=n + 1), 2_000 + n)
    db["task_tasks"].insert_many(docs)
    newest_first = sorted(docs, reverse=True, key=lambda d: (
        d["created_at"], "created_ns" in d, d.get("created_ns", 0),
        isinstance(d["_id"], ObjectId), str(d["_id"])))  # Mongo: strings before ObjectIds
    return [str(d["_id"]) for d in newest_first]


def _ids(tasks: list[dict[str, Any]]) -> list[str]:
    return [t["task_id"] for t in tasks]


def test_the_task_list_comes_in_pages(api: Api, stack: Stack, db: Database,
                                      gateway_channel: grpc.Channel) -> None:
    default, most = stack.settings.task_list_default_limit, stack.settings.task_list_max_limit
    attacker = api.register("lister")
    expected = _ended_tasks(db, attacker)
    with Bystander(api) as bystander:
        first = api.get("/tasks", headers=attacker.headers)
        assert first.status_code == 200 and _ids(first.json()) == expected[:default]
        second = api.get("/tasks", headers=attacker.headers,
                         params={"page_token": first.headers["x-next-page-token"]})
        assert _ids(second.json()) == expected[default : 2 * default]
        paged = api.get("/tasks", headers=attacker.headers, params={"page": 2, "limit": most})
        assert _ids(paged.json()) == expected[most : 2 * most]
        too_many = api.get("/tasks", headers=attacker.headers, params={"limit": most + 1})
        assert too_many.status_code == 400
        assert too_many.json()["message"] == \
            f"limit must be an integer from 1 to {most} (got {most + 1})"
        # Native gRPC: page_size and page_token (AIP-158) walk the whole list once.
        stub = task_pb2_grpc.TaskServiceStub(gateway_channel)
        seen: list[str] = []
        token = ""
        while True:
            page = stub.ListTasks(task_pb2.ListTasksRequest(page_size=33, page_token=token),
                                  metadata=attacker.metadata, timeout=30)
            seen += [t.task_id for t in page.tasks]
            if not (token := page.next_page_token):
                break
        assert seen == expected
        huge = stub.ListTasks(task_pb2.ListTasksRequest(page_size=10_000),
                              metadata=attacker.metadata, timeout=30)
        assert len(huge.tasks) == most
    bystander.assert_unharmed()


# --- the query cache -------------------------------------------------------------------------

# Kombu's own keys that carry a TTL: the lock around restoring unacknowledged messages, and
# the reply queues of remote-control commands (the workers' healthcheck ping). Evicting one
# costs a restore run twice or a ping unanswered; the jobs are in keys without a TTL.
KOMBU_VOLATILE = re.compile(r"unacked_mutex|.*\.reply\.celery\.pidbox")


def _long_movies(count: int, language: str) -> bytes:
    lines = ["id,title,original_language,overview,release_date,vote_average"]
    lines += [f"{97_300_000 + n},Long {n},{language},{'o' * 5000},2001-01-{1 + n % 28:02d},"
              f"{n % 10}" for n in range(count)]
    return ("\n".join(lines) + "\n").encode()


def test_the_query_cache_is_bounded_and_never_evicts_the_job_queue(
        api: Api, stack: Stack) -> None:
    if not stack.embedded_redis:
        pytest.skip("REDIS_URL names a Redis this stack did not start (or configure)")
    r = redis.Redis.from_url(stack.env["REDIS_URL"])
    assert r.config_get("maxmemory")["maxmemory"] == str(stack.settings.redis_maxmemory_bytes)
    assert r.config_get("maxmemory-policy")["maxmemory-policy"] == REDIS_EVICTION_POLICY
    attacker = api.register("cacher")
    task = api.wait_task(attacker, api.upload_ok(attacker, _long_movies(1000, "zq")), 120)
    assert task["status"] == "done" and task["rows_imported"] == 1000, task
    evicted_before = int(r.info("stats")["evicted_keys"])
    with Bystander(api) as bystander:
        # About 500 KB a page, 80 distinct pages: 40 MB of answers for a 16 MiB Redis.
        for path in ("/movies", "/v1/movies"):
            for sort_field in ("release_date", "rating"):
                for sort_order in ("asc", "desc"):
                    for page in range(1, 11):
                        answer = api.get(path, headers=attacker.headers, params={
                            "language": "zq", "limit": 100, "page": page,
                            "sort_field": sort_field, "sort_order": sort_order})
                        assert answer.status_code == 200, answer.text
        # A page over the size bound (about 1.5 MB) is answered, and not cached.
        big = api.get("/movies", headers=attacker.headers, params={"language": "zq",
                                                                 "limit": 300})
        assert big.status_code == 200 and len(big.json()) == 300
    bystander.assert_unharmed()
    memory, stats = r.info("memory"), r.info("stats")
    assert int(stats["evicted_keys"]) > evicted_before, "the flood never filled the cache"
    assert int(memory["used_memory"]) <= stack.settings.redis_maxmemory_bytes * 1.05
    pages = [key for key in r.scan_iter("catalog:page:*")]
    assert pages, "nothing was cached"
    assert max(r.strlen(key) for key in pages) <= stack.settings.catalog_cache_max_page_bytes
    # What the jobs need has no TTL, so it cannot be evicted; every cached page has one.
    for key in r.scan_iter("*"):
        name, ttl = key.decode(), r.ttl(key)
        if name.startswith("catalog:page:"):
            assert ttl > 0, name
        elif ttl != -2 and not KOMBU_VOLATILE.fullmatch(name):  # -2: gone meanwhile
            assert ttl == -1, name
    assert r.exists("catalog:version", "_kombu.binding.marquee") == 2
