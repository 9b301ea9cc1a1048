"""Issue 10, items 10 and 11, the gateway's rate limits and its bound on REST bodies, replayed
against the real stack.

Tokens the services would refuse are refused by Envoy too (or, for a token without `kid`, which
Envoy cannot require, by the service behind it); a token in the query string is refused and never
logged; slow clients are cut off; floods get 429 while a bystander works normally.

The stack trusts one proxy hop (GATEWAY_XFF_TRUSTED_HOPS=1, see conftest), so these tests act as
other client addresses with X-Forwarded-For: the per-address limit is the same for every address,
and the rest of the suite, the bystander included, sends from 127.0.0.1 with a bucket of its own.
"""

from __future__ import annotations

import itertools
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import jwt
import pytest
import requests

from devstack.stack import Stack
from marquee.task.v1 import task_pb2, task_pb2_grpc
from marquee.upload.v1 import upload_pb2, upload_pb2_grpc
from services.auth.keys import load_or_create
from tests.integration.bystander import Bystander
from tests.integration.conftest import TEST_MAX_UPLOAD, Api, User, generated_csv, log_lines

ATTACKER = "203.0.113.7"  # documentation addresses (RFC 5737), claimed through X-Forwarded-For
NEIGHBOUR = "203.0.113.8"
BODY_SENDER = "203.0.113.9"
FLOOD_THREADS = 32
ENOUGH_REFUSALS = 40  # a flood stops once this many were refused, or after 4 x the limit
RATE_LIMITED_MESSAGE = "too many requests: retry after the number of seconds in Retry-After"


def _forge(stack: Stack, user: User, *, kid: bool = True, drop: tuple[str, ...] = (),
           **claims: Any) -> str:
    """A token signed with the stack's own key, as the auth service would issue for `user`,
    changed by `claims` and `drop`."""
    key = load_or_create(stack.data_dir / "keys" / "jwt-private.pem")
    now = int(time.time())
    body = {**jwt.decode(user.token, options={"verify_signature": False}),
            "iat": now, "exp": now + stack.settings.access_token_ttl_seconds,
            "jti": uuid.uuid4().hex, **claims}
    for name in drop:
        del body[name]
    return jwt.encode(body, key.private_key, algorithm="RS256",
                      headers={"kid": key.kid} if kid else None)


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _code(error: pytest.ExceptionInfo[grpc.RpcError]) -> grpc.StatusCode:
    return error.value.code()  # type: ignore[attr-defined,no-any-return]


# --- item 10: the gateway's token check ------------------------------------------------------


def test_the_gateway_refuses_tokens_that_the_services_refuse(api: Api, stack: Stack,
                                                             gateway_channel: grpc.Channel
                                                             ) -> None:
    user = api.register("jwt")
    ttl = stack.settings.access_token_ttl_seconds
    now = int(time.time())
    # The forging is right: a token like the auth service's passes, at its full lifetime too.
    assert api.get("/tasks", headers=_bearer(_forge(stack, user))).status_code == 200
    by_gateway = {
        "expired 30 s ago": _forge(stack, user, iat=now - ttl - 30, exp=now - 30),
        "without exp": _forge(stack, user, drop=("exp",)),
        "living 10 years": _forge(stack, user, exp=now + 10 * 365 * 86400),
        "living a minute longer than issued tokens": _forge(stack, user, exp=now + ttl + 60),
    }
    for name, token in by_gateway.items():
        r = api.get("/tasks", headers=_bearer(token))
        assert r.status_code == 401, (name, r.text)
        assert r.json()["status"] == 401, (name, r.text)  # Envoy's own answer, not a service's
        with pytest.raises(grpc.RpcError) as refused:
            task_pb2_grpc.TaskServiceStub(gateway_channel).ListTasks(
                task_pb2.ListTasksRequest(), metadata=(("authorization", f"Bearer {token}"),),
                timeout=10)
        assert _code(refused) == grpc.StatusCode.UNAUTHENTICATED, name
    # Envoy tries every key of the set on a token without `kid`; the service refuses it.
    r = api.get("/tasks", headers=_bearer(_forge(stack, user, kid=False)))
    assert r.status_code == 401 and r.json()["code"] == grpc.StatusCode.UNAUTHENTICATED.value[0]
    assert "unknown key" in r.json()["message"]


def test_a_token_in_the_query_string_is_refused_and_never_logged(api: Api, stack: Stack) -> None:
    user = api.register("query")
    marker = uuid.uuid4().hex
    refused = {
        "/tasks": 400,  # the transcoder knows no `access_token` parameter
        "/movies": 400,
        f"/tasks/{marker}": 401,  # no route of the transcoder: Envoy wants a token header
        "/marquee.task.v1.TaskService/ListTasks": 401,
    }
    for path, status in refused.items():
        r = api.get(path, params={"access_token": user.token})
        assert r.status_code == status, (path, r.text)
    r = requests.post(api.url("/marquee.task.v1.TaskService/ListTasks"),
                      params={"access_token": user.token}, data=b"\0\0\0\0\0",
                      headers={"content-type": "application/grpc", "te": "trailers"}, timeout=10)
    assert r.headers["grpc-status"] == str(grpc.StatusCode.UNAUTHENTICATED.value[0])
    # Envoy writes its access log in batches: wait for the marked request's line.
    deadline = time.monotonic() + 30
    while not any(marker in str(line.get("path")) for line in log_lines(stack, "envoy")):
        assert time.monotonic() < deadline, "the access log never showed the request"
        time.sleep(0.5)
    assert stack.log_to is not None
    for log in stack.log_to.glob("*.log"):
        text = log.read_text(errors="replace")
        assert user.token not in text, f"the token is in {log.name}"
        assert f"{marker}?" not in text, f"a query string is in {log.name}"


# --- item 11: slow clients -------------------------------------------------------------------


def test_a_partial_request_line_is_closed_within_the_headers_timeout(stack: Stack) -> None:
    timeout = stack.settings.gateway_request_headers_timeout_seconds
    with socket.create_connection(("127.0.0.1", stack.ports["gateway"])) as conn:
        conn.sendall(b"GET /mov")
        started = time.monotonic()
        conn.settimeout(timeout + 30)
        answer = b""
        while chunk := conn.recv(4096):
            answer += chunk
        held = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert held < timeout + 3, f"the connection stayed open {held:.1f} s"


def test_envoy_limits_downstream_connections(stack: Stack) -> None:
    """Envoy warned at start that nothing limited client connections; the overload manager's
    monitor now does (checked live by hand: connections past the limit are closed at once)."""
    admin = f"http://127.0.0.1:{stack.ports['gateway_admin']}"
    (bootstrap,) = [c["bootstrap"] for c in
                    requests.get(f"{admin}/config_dump", timeout=10).json()["configs"]
                    if "bootstrap" in c]
    monitors = bootstrap["overload_manager"]["resource_monitors"]
    (limit,) = [m["typed_config"]["max_active_downstream_connections"] for m in monitors
                if m["name"] == "envoy.resource_monitors.global_downstream_max_connections"]
    assert int(limit) == stack.settings.gateway_max_connections
    assert stack.log_to is not None
    log = (stack.log_to / "envoy.log").read_text(errors="replace")
    assert "no configured limit to the number of allowed active downstream connections" \
        not in log


def test_a_trickled_upload_is_cut_off_and_hurts_no_one(api: Api, stack: Stack,
                                                      gateway_channel: grpc.Channel) -> None:
    grace = stack.settings.upload_min_rate_grace_seconds
    user = api.register("trickle")

    def trickle() -> Iterator[bytes]:
        yield (b'--b0\r\nContent-Disposition: form-data; name="file"; filename="slow.csv"\r\n'
               b"Content-Type: text/csv\r\n\r\nid,title\n")
        for _ in range(grace * 20):
            time.sleep(0.5)
            yield b"1"

    def trickle_native() -> Iterator[upload_pb2.UploadFileRequest]:
        yield upload_pb2.UploadFileRequest(
            metadata=upload_pb2.FileMetadata(filename="slow.csv"))
        for _ in range(grace * 20):
            time.sleep(0.5)
            yield upload_pb2.UploadFileRequest(chunk=b"1")

    with Bystander(api) as bystander:
        started = time.monotonic()
        r = requests.post(api.url("/files/upload"), data=trickle(), timeout=grace * 20, headers={
            **user.headers, "Content-Type": "multipart/form-data; boundary=b0"})
        rest_took = time.monotonic() - started
        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as refused:
            upload_pb2_grpc.UploadServiceStub(gateway_channel).UploadFile(
                trickle_native(), metadata=user.metadata, timeout=grace * 20)
        native_took = time.monotonic() - started
    assert r.status_code == 408 and "too slow" in r.json()["message"], r.text
    assert _code(refused) == grpc.StatusCode.DEADLINE_EXCEEDED
    for took in (rest_took, native_took):
        assert took < grace + 10, f"a trickled upload lasted {took:.1f} s"
    assert api.get("/tasks", headers=user.headers).json() == []
    bystander.assert_unharmed()


# --- rate limits -----------------------------------------------------------------------------


def _flood(send: Callable[[int], requests.Response], limit: int
           ) -> tuple[list[requests.Response], float]:
    """Calls `send(n)` from FLOOD_THREADS threads at once until ENOUGH_REFUSALS were refused or
    4 x `limit` were sent; the responses and the seconds. Each thread sends its next request as
    soon as the last one is answered, and refusals come back at once."""
    responses: list[requests.Response] = []
    lock = threading.Lock()
    numbers = itertools.count()

    def worker() -> None:
        while (n := next(numbers)) < 4 * limit:
            response = send(n)
            with lock:
                responses.append(response)
                if sum(r.status_code == 429 for r in responses) >= ENOUGH_REFUSALS:
                    return

    started = time.monotonic()
    with ThreadPoolExecutor(FLOOD_THREADS) as pool:
        for future in [pool.submit(worker) for _ in range(FLOOD_THREADS)]:
            future.result()
    return responses, time.monotonic() - started


def _assert_limited(responses: list[requests.Response], limit: int, window: int,
                    seconds: float) -> None:
    """Some were refused with the gateway's 429, no more passed than the bucket allows, and
    nothing failed."""
    assert not [r for r in responses if r.status_code >= 500], "the flood caused a 5xx"
    limited = [r for r in responses if r.status_code == 429]
    assert limited, f"nothing was rate limited: {len(responses)} requests in {seconds:.1f} s"
    passed = len(responses) - len(limited)
    assert passed <= limit + limit * seconds / window + FLOOD_THREADS, (passed, seconds)
    for r in limited:
        assert r.json() == {"status": 429, "message": RATE_LIMITED_MESSAGE}
        assert 1 <= int(r.headers["Retry-After"]) <= window
        assert r.headers["x-ratelimit-limit"] == str(limit)
        # The bucket refills steadily, so a token may arrive between the refusal and the
        # header (seen: "1" once under load).
        assert int(r.headers["x-ratelimit-remaining"]) <= 1


def test_a_login_flood_from_one_address_gets_429_and_hurts_no_one(api: Api,
                                                                 stack: Stack) -> None:
    """Login and register share the address's bucket; another address keeps its own. (The
    names differ on every attempt: limits per username are the auth service's.)"""
    limit = stack.settings.gateway_auth_rate_limit
    window = stack.settings.gateway_auth_rate_window_seconds
    victim = api.register("victim")

    def attack(n: int) -> requests.Response:
        headers = {"X-Forwarded-For": ATTACKER}
        name = f"flood{uuid.uuid4().hex[:10]}"
        if n % 4 == 3:
            return requests.post(api.url("/auth/register"), headers=headers, timeout=30,
                                 json={"username": name, "password": "pa55word-flood",
                                       "email": f"{name}@example.com", "name": "Flood"})
        return requests.post(api.url("/auth/login"), headers=headers, timeout=30,
                             json={"username": name, "password": f"guess{n}"})

    with Bystander(api) as bystander:
        responses, seconds = _flood(attack, limit)
        neighbour = requests.post(api.url("/auth/login"), headers={"X-Forwarded-For": NEIGHBOUR},
                                  json={"username": victim.username, "password": victim.password},
                                  timeout=30)
    _assert_limited(responses, limit, window, seconds)
    registrations = [r for r in responses if r.request.path_url == "/auth/register"]
    assert any(r.status_code == 429 for r in registrations), "registration was not limited"
    assert neighbour.status_code == 201, neighbour.text
    bystander.assert_unharmed()


def test_a_user_flooding_the_api_gets_429_and_hurts_no_one(api: Api, stack: Stack,
                                                          gateway_channel: grpc.Channel) -> None:
    """Every route that needs a token draws on the user's bucket: REST and native gRPC alike.
    (Cheap requests, so that the flood outruns the refill whatever the catalog holds.)"""
    limit = stack.settings.gateway_user_rate_limit
    window = stack.settings.gateway_user_rate_window_seconds
    flooder = api.register("flooder")
    paths = ("/tasks", "/movies/no-such-movie", "/v1/tasks")

    def attack(n: int) -> requests.Response:
        return requests.get(api.url(paths[n % len(paths)]), headers=flooder.headers, timeout=30)

    with Bystander(api) as bystander:
        responses, seconds = _flood(attack, limit)
    _assert_limited(responses, limit, window, seconds)
    bystander.assert_unharmed()

    # Native gRPC: a burst of calls at once on one HTTP/2 connection.
    native = api.register("flooder")
    stub = task_pb2_grpc.TaskServiceStub(gateway_channel)
    calls = [stub.ListTasks.future(task_pb2.ListTasksRequest(), metadata=native.metadata,
                                   timeout=60) for _ in range(limit + 50)]
    codes = [call.code() for call in calls]
    assert set(codes) == {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}, set(codes)
    assert codes.count(grpc.StatusCode.OK) <= limit + FLOOD_THREADS


# --- request bodies --------------------------------------------------------------------------

MAX_ENVOY_MB = 150


def _envoy_mb(stack: Stack, field: str) -> float:
    """VmHWM (peak) or VmRSS (now) of Envoy, in MB."""
    popen = stack.procs["envoy"].popen
    assert popen is not None
    for line in Path(f"/proc/{popen.pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no {field} for Envoy")


def _login_body(username_bytes: int) -> Iterator[bytes]:
    """A JSON login whose username has `username_bytes` bytes, in pieces of 1 MiB."""
    yield b'{"username": "'
    for start in range(0, username_bytes, 1 << 20):
        yield b"u" * min(1 << 20, username_bytes - start)
    yield b'", "password": "whatever-1"}'


def test_an_oversized_rest_body_is_refused_before_envoy_holds_it(api: Api,
                                                                 stack: Stack) -> None:
    """The transcoder holds a JSON body whole until it ends, and every REST route took bodies up
    to the upload limit: a 100 MB login took Envoy from 75 to 526 MB (1 GiB limit), and here
    (16 MiB) four logins of 15 MiB at once took it from 69 to 313 MB. Every REST body but an
    upload's is now refused over GATEWAY_MAX_JSON_BODY_BYTES: up front when its Content-Length
    says so, else as it passes the limit. Uploads, which stream, keep MAX_UPLOAD_BYTES."""
    limit = stack.settings.gateway_max_json_body_bytes
    refusal = {"status": 413, "message": f"request body too large: at most {limit} bytes"}
    headers = {"Content-Type": "application/json", "X-Forwarded-For": BODY_SENDER}

    def login(body: bytes | Iterator[bytes]) -> requests.Response:
        return requests.post(api.url("/auth/login"), data=body, headers=headers, timeout=120)

    near_upload_limit = b"".join(_login_body(TEST_MAX_UPLOAD - (1 << 20)))
    uploader = api.register("bigbody")
    csv = generated_csv(6_000, 72_000_000)
    assert len(csv) > 2 * limit
    popen = stack.procs["envoy"].popen
    assert popen is not None
    Path(f"/proc/{popen.pid}/clear_refs").write_text("5")  # peak := the current RSS
    before = _envoy_mb(stack, "VmRSS")
    with Bystander(api) as bystander:
        whole = login(b"".join(_login_body(100_000_000)))  # with a Content-Length
        streamed = login(_login_body(100_000_000))  # chunked
        with ThreadPoolExecutor(4) as pool:
            at_once = list(pool.map(login, [near_upload_limit] * 4))
        peak = _envoy_mb(stack, "VmHWM")
        within = login(b"".join(_login_body(limit - 100)))
        upload = api.upload(uploader, csv)
    bystander.assert_unharmed()
    print(f"\nEnvoy RSS {before:.0f} MB, peak {peak:.0f} MB")
    for r in (whole, streamed, *at_once):
        assert r.status_code == 413 and r.json() == refusal, r.text
    assert peak < MAX_ENVOY_MB, f"Envoy grew from {before:.0f} to {peak:.0f} MB"
    assert peak < before + 30, f"Envoy grew from {before:.0f} to {peak:.0f} MB"  # was +245
    # A body within the limit reaches the service, and an upload over it streams as before.
    assert within.status_code == 400, within.text
    assert within.json()["message"] == "username must be at most 32 characters"
    assert upload.status_code == 202, upload.text
    task = api.wait_task(uploader, upload.json()["task_id"], timeout=120)
    assert task["status"] == "done" and task["rows_imported"] == 6_000, task
