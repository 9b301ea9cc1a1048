"""The real stack (embedded MongoDB-protocol server, valkey, the services, a Celery worker and
Envoy), started once per test session on free loopback ports, and clients that drive it."""

from __future__ import annotations

import csv
import io
import json
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
import requests
from pymongo import MongoClient

from devstack.stack import Stack, free_ports

# The shared movie CSVs live beside the project (../shared/data) unless MARQUEE_TEST_DATA says.
DATA = Path(os.environ.get("MARQUEE_TEST_DATA",
                           Path(__file__).resolve().parents[3] / "shared" / "data"))
TMDB = DATA / "tmdb-top10k.csv"
TEST_MAX_UPLOAD = 16 * 1024 * 1024
STORED_BYTES_QUOTA = 2 * TEST_MAX_UPLOAD
STORAGES = ["local", "gridfs"]
# The administrator the stack creates at its first start (MARQUEE_ADMIN_*).
ADMIN_USERNAME = "root"
ADMIN_PASSWORD = "admin-" + uuid.uuid4().hex
RETENTION_SECONDS = 8
ORPHAN_GRACE_SECONDS = 10


def tmdb_rows() -> list[list[str]]:
    with open(TMDB, newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


def generated_csv(rows: int, id_base: int) -> bytes:
    """`rows` TMDB movies (repeated as needed) under fresh ids id_base, id_base+1, ..."""
    source = tmdb_rows()
    header, body = source[0], source[2:]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    for i in range(rows):
        row = list(body[i % len(body)])
        row[0] = str(id_base + i)
        writer.writerow(row)
    return out.getvalue().encode()


def catalog_count(stack: Stack, lo: int, hi: int) -> int:
    """How many of the ids lo..hi-1 (all of one length) are in the catalog, counted in the
    database itself."""
    assert len(str(lo)) == len(str(hi - 1))
    client: MongoClient = MongoClient(stack.env["MONGO_URI"])
    try:
        movies = client[stack.settings.mongo_db]["catalog_movies"]
        ids = movies.find({"_id": {"$gte": str(lo), "$lte": str(hi - 1)}}, {"_id": 1})
        return sum(1 for d in ids if len(d["_id"]) == len(str(lo)))  # "650001" sorts inside
    finally:
        client.close()


def log_lines(stack: Stack, name: str) -> list[dict[str, Any]]:
    assert stack.log_to is not None
    lines = []
    for raw in (stack.log_to / f"{name}.log").read_text(errors="replace").splitlines():
        if raw.startswith("{"):
            lines.append(json.loads(raw))
    return lines


@pytest.fixture(scope="session", params=["local"])
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[Stack]:
    """One stack per storage backend; modules that concern stored files run on both with
    `pytestmark = pytest.mark.parametrize("stack", STORAGES, indirect=True)`."""
    data_dir = tmp_path_factory.mktemp(f"marquee-{request.param}")
    # Two worker processes of two pool slots each share the queue, as in a deployment.
    s = Stack(data_dir, ports=free_ports(), log_to=data_dir / "logs",
              workers=2,
              extra_env={"BCRYPT_ROUNDS": "4", "MAX_UPLOAD_BYTES": str(TEST_MAX_UPLOAD),
                         "MARQUEE_ADMIN_USERNAME": ADMIN_USERNAME,
                         "MARQUEE_ADMIN_EMAIL": "root@example.com",
                         "MARQUEE_ADMIN_PASSWORD": ADMIN_PASSWORD,
                         # Short leases so that lost workers are noticed within seconds, and
                         # batches that commit well within one: the embedded database stores
                         # ~200 new movies a second with the search indexes here, so a cancel,
                         # which waits for the batches in flight (PIPELINE_DEPTH + 1), waits
                         # ~4 s at 250 rows a batch (13 s was measured at 500).
                         "TASK_LEASE_SECONDS": "6", "TASK_SWEEP_SECONDS": "2",
                         "INGEST_BATCH_SIZE": "250",
                         "FILE_RETENTION_SECONDS": str(RETENTION_SECONDS),
                         "UPLOAD_ORPHAN_GRACE_SECONDS": str(ORPHAN_GRACE_SECONDS),
                         "WORKER_CONCURRENCY": "2",
                         # Every operation's blocks are parsed by processes of its own, whatever
                         # the file's size, as only big files' are by default.
                         "OPERATION_PARALLEL_MIN_BYTES": "0",
                         # The gateway's limits (test_abuse_gateway). Its tests claim other client
                         # addresses through X-Forwarded-For, so one trusted hop. The rate limits
                         # sit well above what the rest of the suite sends in a minute to the
                         # auth methods from 127.0.0.1 (about 50) or as one user (all users
                         # together: about 400), yet a flood passes them within seconds.
                         # Slow clients are cut off soon enough to wait for.
                         "GATEWAY_XFF_TRUSTED_HOPS": "1",
                         "GATEWAY_AUTH_RATE_LIMIT": "150", "GATEWAY_AUTH_RATE_WINDOW_SECONDS": "60",
                         "GATEWAY_USER_RATE_LIMIT": "600", "GATEWAY_USER_RATE_WINDOW_SECONDS": "60",
                         "GATEWAY_REQUEST_HEADERS_TIMEOUT_SECONDS": "3",
                         "UPLOAD_MIN_RATE_GRACE_SECONDS": "3",
                         # A username locked by failed logins is free again soon enough to wait
                         # for (test_abuse_auth); the doubling and the cap are unit-tested.
                         "LOGIN_LOCK_SECONDS": "3",
                         # Per-user quotas (test_abuse_quotas), low enough to reach quickly and
                         # above what any other module needs: test_concurrency has 3 uploads of
                         # a user at once, test_abuse_services 5 tasks of a user not ended
                         # (one never is), test_memory 15 MB stored by one user. A slot whose
                         # upload service died is free again within seconds.
                         "UPLOAD_MAX_CONCURRENT_PER_USER": "3",
                         "TASK_MAX_PENDING_PER_USER": "6",
                         "UPLOAD_MAX_STORED_BYTES_PER_USER": str(STORED_BYTES_QUOTA),
                         "UPLOAD_SLOT_LEASE_SECONDS": "6",
                         "TASK_MAX_STORED_REJECTIONS": "1000",
                         # Small enough for a flood of cached pages to fill it in seconds.
                         "REDIS_MAXMEMORY_BYTES": str(16 << 20),
                         # With MONGO_URI/REDIS_URL set, the same tests run on real servers.
                         "MONGO_DB": f"marquee_test_{uuid.uuid4().hex[:8]}",
                         "UPLOAD_STORAGE": request.param})
    s.start()
    print(f"\nstack logs: {data_dir / 'logs'}")
    yield s
    s.stop()


@dataclass
class User:
    username: str
    password: str
    token: str
    # The session's refresh token, as register or login returned it.
    refresh_token: str = ""

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    @property
    def metadata(self) -> tuple[tuple[str, str]]:
        return (("authorization", f"Bearer {self.token}"),)


class Api:
    """A REST client for the gateway, as a user would drive it."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.http = requests.Session()

    def url(self, path: str) -> str:
        return self.base + path

    def post(self, path: str, **kw: Any) -> requests.Response:
        return self.http.post(self.url(path), timeout=60, **kw)

    def get(self, path: str, **kw: Any) -> requests.Response:
        return self.http.get(self.url(path), timeout=60, **kw)

    def register(self, prefix: str = "user", headers: dict[str, str] | None = None) -> User:
        username = f"{prefix}{uuid.uuid4().hex[:10]}"
        password = "s3cret-" + uuid.uuid4().hex[:6]
        r = self.post("/auth/register", json={"username": username, "password": password,
                                               "email": f"{username}@example.com",
                                               "name": username.title()}, headers=headers)
        assert r.status_code == 201, r.text
        return User(username, password, r.json()["access_token"], r.json()["refresh_token"])

    def login(self, username: str, password: str, headers: dict[str, str] | None = None
              ) -> User:
        r = self.post("/auth/login", json={"username": username, "password": password},
                      headers=headers)
        assert r.status_code == 201, r.text
        return User(username, password, r.json()["access_token"], r.json()["refresh_token"])

    def upload(self, user: User, content: bytes, filename: str = "movies.csv"
               ) -> requests.Response:
        return self.post("/files/upload", headers=user.headers,
                         files={"file": (filename, content, "text/csv")})

    def upload_ok(self, user: User, content: bytes, filename: str = "movies.csv") -> str:
        r = self.upload(user, content, filename)
        assert r.status_code == 202, r.text
        return str(r.json()["task_id"])

    def wait_task(self, user: User, task_id: str, timeout: float = 300) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r = self.get(f"/task/{task_id}", headers=user.headers)
            assert r.status_code == 200, r.text
            task = r.json()
            if task["status"] in ("done", "failed", "cancelled"):
                return dict(task)
            time.sleep(0.2)
        raise AssertionError(f"task {task_id} did not end within {timeout}s: {task}")

    def all_movies(self, user: User, **params: Any) -> list[dict[str, Any]]:
        movies: list[dict[str, Any]] = []
        page = 1
        while True:
            r = self.get("/movies", headers=user.headers,
                         params={**params, "limit": 1000, "page": page})
            assert r.status_code == 200, r.text
            movies.extend(r.json())
            if len(r.json()) < 1000:
                return movies
            page += 1


@pytest.fixture(scope="session")
def api(stack: Stack) -> Api:
    return Api(stack.gateway_url)


@pytest.fixture(scope="module")
def admin(api: Api) -> User:
    """The administrator the stack created from MARQUEE_ADMIN_PASSWORD, logged in per module:
    a token from the session's start expired (15 min) before the last modules ran."""
    return api.login(ADMIN_USERNAME, ADMIN_PASSWORD)


@pytest.fixture(scope="session")
def gateway_channel(stack: Stack) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(f"127.0.0.1:{stack.ports['gateway']}") as channel:
        yield channel


@pytest.fixture(scope="session")
def tmdb_ingested(api: Api) -> dict[str, Any]:
    """The shared TMDB file, uploaded once and ingested to the end."""
    owner = api.register("tmdb")
    task_id = api.upload_ok(owner, TMDB.read_bytes(), "tmdb-top10k.csv")
    task = api.wait_task(owner, task_id)
    assert task["status"] == "done", task
    return {"owner": owner, "task": task}


# Modules that read the whole catalog run before those that pour volume into it. The attacks
# run early, while the services answer at their usual speed: a flood has to outrun the rate
# limits' refill, and the bystander's /movies has to answer within its bound.
MODULE_ORDER = ["test_auth", "test_abuse_gateway", "test_upload_tasks", "test_grpc", "test_movies",
                "test_abuse_auth", "test_abuse_services", "test_abuse_quotas", "test_abuse_worker",
                "test_messy_files", "test_progress", "test_concurrency", "test_crash_safety",
                "test_memory",
                # Last: its own users and address keep it off the others' data and rate
                # limits, but the tasks its uploads start still load the shared workers.
                "test_fuzz"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> tuple[bool, int]:
        module = item.nodeid.partition("::")[0].rpartition("/")[2].removesuffix(".py")
        known = module in MODULE_ORDER
        # gridfs-parametrised tests last, together, so each storage's stack starts once.
        return ("gridfs" in item.name, MODULE_ORDER.index(module) if known else -1)

    items.sort(key=rank)
