"""Issue 10, items 5, 8, 9, 12 and 14, replayed against the real stack while a second user works
(tests/integration/bystander.py): floods of watches, formulas in the errors export, client input
that gave 500, guessable ids, and files and keys that anyone could read.

The watch flood goes through the gateway until the task service's per-user bound; the
server-wide bound is then reached over gRPC straight to the task service, so that the gateway's
per-user rate limit (test_abuse_gateway) cannot be what answers.
"""

from __future__ import annotations

import base64
import csv
import io
import itertools
import json
import re
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import jwt
import pytest
import requests
from bson import ObjectId
from pymongo import MongoClient
from pymongo.collection import Collection

from devstack.stack import ROOT, Stack, free_port
from marquee.task.v1 import task_pb2, task_pb2_grpc
from marquee.upload.v1 import upload_pb2
from services.common.access import SERVICE_KEY_HEADER
from tests.integration.bystander import SMALL_CSV, Bystander
from tests.integration.conftest import Api, User

RANDOM_ID = re.compile(r"[0-9a-f]{32}")
NOT_UTF8 = b"\x0a\x02\xff\xfe"  # a request whose field 1, a string, is not UTF-8


def _user_id(user: User) -> str:
    return str(jwt.decode(user.token, options={"verify_signature": False})["sub"])


@pytest.fixture(scope="module")
def tasks(stack: Stack) -> Iterator[Collection]:
    client: MongoClient = MongoClient(stack.env["MONGO_URI"])
    yield client[stack.settings.mongo_db]["task_tasks"]
    client.close()


def _waiting_task(tasks: Collection, user: User, task_id: Any = None) -> str:
    """A task of `user` that stays `pending` for the length of a test: stored as the task
    service stores one, but never enqueued (the stall sweep would take a minute to notice)."""
    now = datetime.now(UTC).replace(tzinfo=None)
    doc: dict[str, Any] = {
        "_id": task_id or uuid.uuid4().hex, "user": _user_id(user), "username": user.username,
        "kind": "ingest_csv", "file_id": "none", "file_path": "none.csv",
        "original_name": "waiting.csv", "bytes_total": 1, "status": "pending", "progress": {},
        "rejected_sample": [], "error": "", "attempts": 0, "cancel_requested": False,
        "file_deleted": False, "created_at": now, "created_ns": time.time_ns(),
        "updated_at": now, "requeued_at": now}
    tasks.insert_one(doc)
    return str(doc["_id"])


def _until_the_bystander_did_everything(bystander: Bystander, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while {"login", "upload", "upload task", "movies"} - {s.name for s in bystander.steps}:
        assert time.monotonic() < deadline, f"the bystander got nowhere: {bystander.steps}"
        time.sleep(0.2)


def _no_5xx(response: requests.Response) -> requests.Response:
    assert response.status_code < 500, f"{response.status_code} {response.text[:300]}"
    return response


# --- item 5: floods of watches ---------------------------------------------------------------

@dataclass
class Watches:
    """Watches held open, REST and gRPC, closed on exit."""

    api: Api
    closing: ExitStack
    # Each open REST watch's line reader: one dropped half-way closes its connection.
    readers: list[Iterator[Any]] = field(default_factory=list)

    def rest(self, user: User, task_id: str) -> requests.Response:
        """A REST watch: open (its first line read), or the refusal."""
        r = requests.get(self.api.url(f"/task/{task_id}/watch"), headers=user.headers,
                         stream=True, timeout=30)
        if r.status_code == 200:
            self.closing.callback(r.close)
            self.readers.append(r.iter_lines())
            assert json.loads(next(self.readers[-1]))["task_id"] == task_id
        return r

    def grpc(self, stub: task_pb2_grpc.TaskServiceStub, user: User, task_id: str
             ) -> grpc.RpcError | None:
        """A gRPC watch: None once open (its first message read), or the refusal."""
        call = stub.WatchTask(task_pb2.WatchTaskRequest(task_id=task_id),
                              metadata=user.metadata, timeout=60)
        try:
            next(call)
        except grpc.RpcError as refused:
            return refused
        self.closing.callback(call.cancel)
        return None


def test_a_flood_of_watches_is_bounded_and_holds_up_no_one(api: Api, stack: Stack,
                                                           tasks: Collection) -> None:
    per_user, total = stack.settings.task_streams_per_user, stack.settings.task_streams_total
    attacker = api.register("watcher")
    target = _waiting_task(tasks, attacker)
    direct = grpc.insecure_channel(f"127.0.0.1:{stack.ports['task']}")
    stub = task_pb2_grpc.TaskServiceStub(direct)
    with Bystander(api) as bystander, ExitStack() as closing:
        watches = Watches(api, closing)
        # 40 watches from one user, as in the report: the first per_user open, the rest 429.
        answers = [watches.rest(attacker, target) for _ in range(40)]
        assert [r.status_code for r in answers] == [200] * per_user + [429] * (40 - per_user)
        assert "too many open streams" in answers[-1].json()["message"]
        # Others fill the server-wide bound; past it, anyone's next watch is refused.
        helpers = [api.register("watcher") for _ in range((total - per_user) // per_user)]
        for helper in helpers:
            task_id = _waiting_task(tasks, helper)
            assert all(watches.grpc(stub, helper, task_id) is None for _ in range(per_user))
        late = api.register("late")
        refused = watches.grpc(stub, late, _waiting_task(tasks, late))
        assert refused is not None and refused.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "try again in a moment" in (refused.details() or "")
        r = _no_5xx(api.get(f"/task/{_waiting_task(tasks, late)}/watch", headers=late.headers))
        assert r.status_code == 429 and "try again in a moment" in r.json()["message"]
        # Every stream slot is taken, and nothing else waits: another user's reads answer in
        # their usual time (they waited 20 s and more when watches took every thread; the bound
        # leaves room for a machine shared with other work), the workers' internal calls too,
        # and the bystander's uploads are ingested.
        for _ in range(10):
            started = time.monotonic()
            assert api.get("/tasks", headers=late.headers).status_code == 200
            assert time.monotonic() - started < 2.5
        with pytest.raises(grpc.RpcError) as claim:
            stub.ClaimTask(task_pb2.ClaimTaskRequest(task_id=uuid.uuid4().hex, worker_id="w"),
                           metadata=((SERVICE_KEY_HEADER, stack.settings.service_key()),),
                           timeout=2)
        assert claim.value.code() == grpc.StatusCode.NOT_FOUND
        _until_the_bystander_did_everything(bystander)
    bystander.assert_unharmed()
    direct.close()
    # The watches are closed: their slots came back.
    deadline = time.monotonic() + 10
    while True:
        with api.http.get(api.url(f"/task/{target}/watch"), headers=attacker.headers,
                          stream=True, timeout=30) as r:
            if r.status_code == 200:
                break
        assert time.monotonic() < deadline, "closed watches kept their slots"
        time.sleep(0.2)


# --- item 8: formulas in the errors export ---------------------------------------------------

FORMULAS = ["=1+1", "+1+1", "-1+1", "@SUM(1)", "=cmd|' /C calc'!A0", "\t=1+1"]


def test_the_errors_export_opens_in_a_spreadsheet_as_text(api: Api) -> None:
    user = api.register("formula")
    header = SMALL_CSV.splitlines()[0]
    # One field each, where the header has nine: every row is rejected, its text kept as raw.
    content = "\n".join([header, *FORMULAS]) + "\n"
    with Bystander(api) as bystander:
        task = api.wait_task(user, api.upload_ok(user, content.encode(), "formulas.csv"), 60)
        assert task["status"] == "done" and task["rows_rejected"] == len(FORMULAS), task
        r = _no_5xx(api.get(f"/task/{task['task_id']}/errors", headers=user.headers))
    bystander.assert_unharmed()
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert r.text.startswith('"line","reason","raw"')
    exported = list(csv.DictReader(io.StringIO(r.text, newline="")))
    assert [e["raw"] for e in exported] == ["'" + formula for formula in FORMULAS]
    for cell in (value for row in exported for value in row.values()):
        assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), cell


# --- item 9: client input that gave 500 ------------------------------------------------------

def _multipart(user: User, api: Api, filename: bytes, boundary: str = "XyZzy42"
               ) -> requests.Response:
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\""
            .encode() + filename + b"\"\r\nContent-Type: text/csv\r\n\r\n"
            + SMALL_CSV.format(id=930_000_001).encode() + f"\r\n--{boundary}--\r\n".encode())
    return api.post("/files/upload", data=body, headers={
        **user.headers, "Content-Type": f"multipart/form-data; boundary={boundary}"})


def _token(payload: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")


def test_hostile_input_gets_a_4xx_that_says_what_is_wrong(api: Api) -> None:
    user = api.register("hostile")
    fingerprint = [None, "", "release_date", "asc"]
    expected = {  # path -> (status, a piece of the message)
        "/task/%FF": (400, "UTF-8"), "/task/%C3%28/watch": (400, "UTF-8"),
        "/task/%FF/errors": (400, "UTF-8"), "/movies/%FF": (400, "UTF-8"),
        "/v1/movies/%FF": (400, "UTF-8"), "/movies?language=%FF": (400, "UTF-8"),
        "/movies?page_token=%FF": (400, "UTF-8"),
        "/task/not-an-id": (404, "no task"), "/task/" + "a" * 4000: (404, "no task"),
        "/task/" + str(ObjectId()): (404, "no task"), "/task/" + uuid.uuid4().hex: (404, "no task"),
        "/movies?page_token=" + base64.urlsafe_b64encode(b"[" * 5000).decode():
            (400, "page_token is not valid"),
        "/movies?page_token=" + _token({"q": fingerprint, "v": [[[[]]]], "id": "1"}):
            (400, "page_token is not valid"),
        "/movies?page_token=" + _token({"q": fingerprint, "v": {"$date": 10**30}, "id": 1}):
            (400, "page_token is not valid"),
        "/v1/movies?sort_field=rating&page_token=" + _token(
            {"q": [None, "", "rating", "asc"], "v": 10**30, "id": "1"}): (200, ""),
        # Over the gateway's 16 KiB of request headers: Envoy's own 431. (Under it, the token
        # above once met gRPC's default 8 KiB metadata limit at the service: a random 429.)
        "/movies?page_token=" + "A" * 20_000: (431, ""),
        "/movies?page=0": (400, "page"), "/movies?page=-5": (400, "page"),
        "/movies?page=1000001": (400, "page"), "/movies?page=99999999999": (400, "page"),
        "/movies?limit=0": (400, "limit"), "/movies?limit=100000": (400, "limit"),
        "/movies?year=-1": (400, "year"), "/movies?year=100000": (400, "year"),
    }
    with Bystander(api) as bystander:
        for path, (status, message) in expected.items():
            r = _no_5xx(api.get(path, headers=user.headers))
            assert (r.status_code, message in r.text) == (status, True), (path, r.text[:300])
        long_name = _no_5xx(_multipart(user, api, b"x" * 5000))
        assert long_name.status_code == 400
        assert "send a shorter file name" in long_name.json()["message"]
        long_boundary = _no_5xx(_multipart(user, api, b"m.csv", boundary="b" * 200))
        assert long_boundary.status_code == 400 and "boundary" in long_boundary.json()["message"]
        latin1 = _no_5xx(_multipart(user, api, "été.csv".encode("latin-1")))
        assert latin1.status_code == 202, latin1.text
        task = api.wait_task(user, latin1.json()["task_id"], 60)
        assert task["original_name"] == "\ufffdt\ufffd.csv" and task["status"] == "done"
    bystander.assert_unharmed()


def test_native_grpc_requests_that_are_not_utf8_are_invalid_argument(
        api: Api, gateway_channel: grpc.Channel) -> None:
    user = api.register("grpcutf")
    get_task = gateway_channel.unary_unary("/marquee.task.v1.TaskService/GetTask")
    with pytest.raises(grpc.RpcError) as refused:
        get_task(NOT_UTF8, metadata=user.metadata, timeout=10)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
    # An upload whose file name (in its first message) is not UTF-8.
    name = upload_pb2.UploadFileRequest(
        metadata=upload_pb2.FileMetadata(filename="AB")).SerializeToString()
    upload = gateway_channel.stream_unary("/marquee.upload.v1.UploadService/UploadFile")
    with pytest.raises(grpc.RpcError) as refused_upload:
        upload(iter([name.replace(b"AB", b"\xff\xfe"),
                     upload_pb2.UploadFileRequest(chunk=b"id\n1\n").SerializeToString()]),
               metadata=user.metadata, timeout=10)
    assert refused_upload.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]


# --- item 12: guessable ids ------------------------------------------------------------------

def test_task_ids_are_random_and_tasks_list_newest_first(api: Api, tasks: Collection) -> None:
    owner, other = api.register("ids"), api.register("ids")
    with Bystander(api) as bystander:
        old = _waiting_task(tasks, owner, task_id=ObjectId())  # from before random ids
        created = [api.upload_ok(owner, SMALL_CSV.format(id=931_000_000 + n).encode())
                   for n in range(4)]
        assert all(RANDOM_ID.fullmatch(task_id) for task_id in created), created
        assert all(abs(int(a, 16) - int(b, 16)) > 2**64 for a, b in itertools.pairwise(created))
        listed = [t["task_id"] for t in api.get("/tasks", headers=owner.headers).json()]
        assert listed == [*reversed(created), old]
        assert api.get(f"/task/{old}", headers=owner.headers).json()["original_name"] == \
            "waiting.csv"
        for task_id in (created[0], old):  # another user's task: 403, as the contract says
            for path in (f"/task/{task_id}", f"/task/{task_id}/watch",
                         f"/task/{task_id}/errors"):
                assert api.get(path, headers=other.headers).status_code == 403
            assert api.post(f"/task/{task_id}/cancel", headers=other.headers).status_code == 403
        assert api.get(f"/task/{uuid.uuid4().hex}", headers=owner.headers).status_code == 404
        for task_id in created:
            api.wait_task(owner, task_id, 60)
        files = [api.get(f"/task/{t}", headers=owner.headers).json()["file_id"] for t in created]
        assert all(RANDOM_ID.fullmatch(file_id) for file_id in files), files
    bystander.assert_unharmed()


# --- item 14: private files, long keys -------------------------------------------------------

def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_uploads_keys_and_the_database_are_private(api: Api, stack: Stack) -> None:
    user = api.register("private")
    api.wait_task(user, api.upload_ok(user, SMALL_CSV.format(id=932_000_001).encode()), 60)
    data = stack.data_dir
    assert _mode(data) == 0o700
    uploads = stack.settings.upload_dir
    assert _mode(uploads) == 0o700
    stored = list(uploads.glob("*.csv"))
    assert stored and all(_mode(f) == 0o600 for f in stored)
    assert _mode(data / "keys") == 0o700
    assert all(_mode(f) == 0o600 for f in (data / "keys").iterdir())
    made_by_the_stack = [p for d in ("mongo", "redis") for p in (data / d).rglob("*")]
    assert made_by_the_stack
    readable = [p for p in made_by_the_stack if _mode(p) & 0o077]
    assert not readable, f"readable by others: {readable[:5]}"


@pytest.mark.parametrize("key", ["", "short", "x" * 31])
def test_a_service_with_a_short_key_refuses_to_start(stack: Stack, key: str) -> None:
    env = {**stack.env, "SERVICE_KEY": key, "GRPC_LISTEN": f"127.0.0.1:{free_port()}"}
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "services.task"], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "must be at least 32" in done.stderr, done.stderr[-500:]
    assert time.monotonic() - started < 30
