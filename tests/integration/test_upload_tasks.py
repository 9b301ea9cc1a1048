"""POST /files/upload, GET /task/{id}, GET /tasks: the contract's success and error paths."""

from __future__ import annotations

import time
from collections.abc import Iterator

import jwt
import pytest
import requests
from pymongo import MongoClient

from devstack.stack import Stack
from tests.integration.conftest import RETENTION_SECONDS, STORAGES, TEST_MAX_UPLOAD, Api, User

pytestmark = pytest.mark.parametrize("stack", STORAGES, indirect=True)

SMALL = (b"id,title,genre,original_language,overview,popularity,release_date,vote_average,"
         b"vote_count\n"
         b"9000001,Upload Test One,Drama,en,An overview,1.5,2001-02-03,6.5,10\n"
         b"9000002,Upload Test Two,\"Comedy,Drama\",fr,\"Quoted, with comma\",2.5,2002-03-04,"
         b"7.5,20\n")


def test_upload_returns_202_and_the_task_runs_to_done(api: Api) -> None:
    user = api.register()
    r = api.upload(user, SMALL, "small.csv")
    assert r.status_code == 202
    body = r.json()
    assert body["message"] == "File uploaded successfully. Please wait while it processes."
    task = api.wait_task(user, body["task_id"])
    assert task["task_id"] == body["task_id"]
    assert task["status"] == "done"
    assert (task["rows_read"], task["rows_imported"], task["rows_rejected"]) == (2, 2, 0)
    assert task["percent"] == 100.0
    assert task["original_name"] == "small.csv"
    assert task["created_at"] and task["started_at"] and task["finished_at"]


def test_upload_without_valid_token_is_401(api: Api) -> None:
    files = {"file": ("a.csv", SMALL, "text/csv")}
    assert api.post("/files/upload", files=files).status_code == 401
    r = api.post("/files/upload", files=files, headers={"Authorization": "Bearer x.y.z"})
    assert r.status_code == 401


def test_upload_without_file_field_is_400(api: Api) -> None:
    user = api.register()
    r = api.post("/files/upload", headers=user.headers,
                 files={"document": ("a.csv", SMALL, "text/csv")})
    assert r.status_code == 400
    assert "'file'" in r.json()["message"]
    r = api.post("/files/upload", headers=user.headers, data={"file": ""})
    assert r.status_code == 400


def test_upload_not_multipart_is_400(api: Api) -> None:
    user = api.register()
    r = api.post("/files/upload", headers={**user.headers, "Content-Type": "text/csv"},
                 data=SMALL)
    assert r.status_code == 400
    assert "multipart/form-data" in r.json()["message"]


def test_upload_empty_file_is_400(api: Api) -> None:
    user = api.register()
    r = api.upload(user, b"", "empty.csv")
    assert r.status_code == 400
    assert "empty" in r.json()["message"]
    assert api.get("/tasks", headers=user.headers).json() == []


def test_upload_over_the_limit_is_413_and_nothing_is_kept(api: Api) -> None:
    user = api.register()
    r = api.upload(user, b"x" * (TEST_MAX_UPLOAD + 1), "big.csv")
    assert r.status_code == 413
    assert api.get("/tasks", headers=user.headers).json() == []


def test_upload_just_over_the_file_limit_within_envoy_slack_is_413(api: Api) -> None:
    """The body fits Envoy's limit (file + multipart slack) but the file itself is too large:
    the upload service refuses it mid-stream, and the gateway still answers 413."""
    user = api.register()
    r = api.upload(user, b"y" * (TEST_MAX_UPLOAD + 10), "big.csv")
    assert r.status_code == 413, r.text
    assert "limit" in r.json()["message"]


def test_chunked_upload_over_the_limit_is_413(api: Api) -> None:
    user = api.register()
    boundary = "XyZ"

    def body() -> Iterator[bytes]:
        yield (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
               f"filename=\"big.csv\"\r\n\r\n").encode()
        for _ in range(TEST_MAX_UPLOAD // (1 << 20) + 2):
            yield b"z" * (1 << 20)
        yield f"\r\n--{boundary}--\r\n".encode()

    try:
        r = requests.post(api.url("/files/upload"), data=body(), timeout=60,
                          headers={**user.headers,
                                   "Content-Type": f"multipart/form-data; boundary={boundary}"})
        assert r.status_code == 413
    except requests.ConnectionError:
        pass  # Envoy may answer 413 and close before the client finished sending
    assert api.get("/tasks", headers=user.headers).json() == []


def _user_id(user: User) -> str:
    return str(jwt.decode(user.token, options={"verify_signature": False})["sub"])


def test_task_errors_404_and_403(api: Api) -> None:
    owner, other = api.register(), api.register()
    task_id = api.upload_ok(owner, SMALL)
    r = api.get(f"/task/{task_id}", headers=owner.headers)
    assert r.status_code == 200
    assert (r.json()["user"], r.json()["user_id"]) == (owner.username, _user_id(owner))
    r = api.get(f"/task/{task_id}", headers=other.headers)
    assert r.status_code == 403 and r.json()["message"]
    for unknown in ("0123456789abcdef01234567", "not-an-id"):
        r = api.get(f"/task/{unknown}", headers=owner.headers)
        assert r.status_code == 404 and unknown in r.json()["message"]


def test_tasks_lists_only_the_callers_tasks(api: Api) -> None:
    alice, bob = api.register(), api.register()
    mine = {api.upload_ok(alice, SMALL, "a1.csv"), api.upload_ok(alice, SMALL, "a2.csv")}
    theirs = api.upload_ok(bob, SMALL, "b1.csv")
    r = api.get("/tasks", headers=alice.headers)
    assert r.status_code == 200
    tasks = r.json()
    assert isinstance(tasks, list)
    assert {t["task_id"] for t in tasks} == mine
    for t in tasks:
        assert {"task_id", "status", "file_path", "user", "user_id"} <= set(t)
        # The contract shows the owner's name as `user`; the id is beside it.
        assert (t["user"], t["user_id"]) == (alice.username, _user_id(alice))
        assert t["status"] in ("pending", "processing", "done", "failed")
    assert theirs not in {t["task_id"] for t in tasks}
    for task_id in mine:
        api.wait_task(alice, task_id)
    api.wait_task(bob, theirs)


def test_stored_file_uses_a_generated_name(api: Api) -> None:
    user = api.register()
    task_id = api.upload_ok(user, SMALL, "../../etc/passwd")
    task = api.wait_task(user, task_id)
    assert task["original_name"] == "passwd"
    assert "/" not in task["file_path"] and ".." not in task["file_path"]


def test_refused_uploads_leave_nothing_in_storage(api: Api, stack: Stack) -> None:
    user = api.register()
    assert api.upload(user, b"x" * (TEST_MAX_UPLOAD + 10)).status_code == 413
    assert api.upload(user, b"").status_code == 400
    client: MongoClient = MongoClient(stack.env["MONGO_URI"])
    try:
        db = client[stack.settings.mongo_db]
        records = {r["file_path"] for r in db["upload_files"].find()}
        if stack.settings.upload_storage == "gridfs":
            stored = {f["_id"] for f in db["upload_blobs.files"].find({}, {"_id": 1})}
            orphans = db["upload_blobs.chunks"].count_documents(
                {"files_id": {"$nin": list(stored)}})
            assert orphans == 0
        else:
            stored = {p.name for p in stack.settings.upload_dir.iterdir()}
    finally:
        client.close()
    # Every stored object has its record (files past retention are deleted meanwhile).
    assert stored <= records


def test_files_are_deleted_after_the_retention_period(api: Api, stack: Stack) -> None:
    user = api.register()
    task = api.wait_task(user, api.upload_ok(user, SMALL, "kept-for-a-while.csv"))
    assert task["status"] == "done" and task["file_deleted"] is False
    deadline = time.monotonic() + RETENTION_SECONDS + 20
    while not api.get(f"/task/{task['task_id']}", headers=user.headers).json()["file_deleted"]:
        assert time.monotonic() < deadline, "the file outlived its retention"
        time.sleep(0.5)
    client: MongoClient = MongoClient(stack.env["MONGO_URI"])
    try:
        db = client[stack.settings.mongo_db]
        record = db["upload_files"].find_one({"_id": task["file_id"]})
        assert record is not None and record["deleted"] is True
        if stack.settings.upload_storage == "gridfs":
            assert db["upload_blobs.files"].count_documents({"_id": record["file_path"]}) == 0
        else:
            assert not (stack.settings.upload_dir / record["file_path"]).exists()
    finally:
        client.close()
