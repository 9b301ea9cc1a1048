"""Sessions on the real stack: refresh tokens from register and login, rotation over REST and
native gRPC through the gateway, a replayed token ending its session, the concurrent refresh
race, logout and logout everywhere, /auth/me, and expiry (a second auth process with short
lifetimes, on the stack's database and signing key, so that its tokens pass the stack's Envoy)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import grpc
import jwt
import pytest
import requests
from grpc_health.v1 import health_pb2, health_pb2_grpc

from devstack.stack import ROOT, Stack, free_port
from marquee.auth.v1 import auth_pb2, auth_pb2_grpc
from tests.integration.conftest import Api, User, log_lines

# The lifetimes of the short-lived auth process (the stack runs with the defaults).
ACCESS_TTL, REFRESH_TTL, SESSION_MAX = 2, 4, 10


@pytest.fixture(scope="module")
def client(stack: Stack) -> Api:
    """A client of its own address (X-Forwarded-For; the stack trusts one hop), so that this
    module's logins and refreshes do not eat into the per-address budget of the others."""
    own = Api(stack.gateway_url)
    own.http.headers["X-Forwarded-For"] = "198.51.100.21"
    return own


def _refresh(api: Api, refresh_token: str) -> requests.Response:
    return api.post("/auth/refresh", json={"refresh_token": refresh_token})


def _claims(access_token: str) -> dict[str, object]:
    return dict(jwt.decode(access_token, options={"verify_signature": False}))


def test_register_and_login_start_sessions_with_refresh_tokens(client: Api) -> None:
    user = client.register("sess")
    r = client.post("/auth/login", json={"username": user.username, "password": user.password})
    assert r.status_code == 201
    body = r.json()
    assert set(body) == {"message", "access_token", "token_type", "expires_in", "refresh_token",
                         "refresh_expires_in"}
    assert body["expires_in"] == 900 and body["refresh_expires_in"] == 604800
    assert body["refresh_token"] != user.refresh_token and len(body["refresh_token"]) == 43
    registered, logged_in = _claims(user.token), _claims(body["access_token"])
    assert registered["role"] == logged_in["role"] == "user"
    assert registered["sid"] and logged_in["sid"] and registered["sid"] != logged_in["sid"]


def test_refresh_rotates_and_a_replayed_token_ends_the_session(client: Api,
                                                               stack: Stack) -> None:
    user = client.register("rot")
    r = _refresh(client, user.refresh_token)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 900
    assert 0 < body["refresh_expires_in"] <= 604800
    assert body["refresh_token"] != user.refresh_token
    assert _claims(body["access_token"])["sid"] == _claims(user.token)["sid"]
    me = client.get("/auth/me", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert me.status_code == 200 and me.json()["username"] == user.username

    replayed = _refresh(client, user.refresh_token)
    assert replayed.status_code == 401 and "already used" in replayed.json()["message"]
    newer = _refresh(client, body["refresh_token"])  # the token the replay's victim holds
    assert newer.status_code == 401 and "session has ended" in newer.json()["message"]
    sid = _claims(user.token)["sid"]
    events = [e for e in log_lines(stack, "auth") if e.get("event") == "refresh_token_reuse"]
    assert any(e["session_id"] == sid and e["level"] == "warning" and e["user_id"]
               for e in events), events


def test_refresh_over_native_grpc_through_the_gateway(client: Api,
                                                      gateway_channel: grpc.Channel) -> None:
    user = client.register("grpcr")
    auth = auth_pb2_grpc.AuthServiceStub(gateway_channel)
    first = auth.Refresh(auth_pb2.RefreshRequest(refresh_token=user.refresh_token), timeout=15)
    second = auth.Refresh(auth_pb2.RefreshRequest(refresh_token=first.refresh_token), timeout=15)
    assert len({user.refresh_token, first.refresh_token, second.refresh_token}) == 3
    me = auth.GetMe(auth_pb2.GetMeRequest(), timeout=15,
                    metadata=(("authorization", f"Bearer {second.access_token}"),))
    assert me.username == user.username
    with pytest.raises(grpc.RpcError) as replayed:
        auth.Refresh(auth_pb2.RefreshRequest(refresh_token=first.refresh_token), timeout=15)
    assert replayed.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.RpcError) as after:
        auth.Refresh(auth_pb2.RefreshRequest(refresh_token=second.refresh_token), timeout=15)
    assert after.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_of_two_concurrent_refreshes_with_one_token_exactly_one_succeeds(client: Api) -> None:
    user = client.register("race")
    for _ in range(5):
        session = client.login(user.username, user.password)
        start = threading.Barrier(2)

        def refresh(token: str = session.refresh_token, start: threading.Barrier = start
                    ) -> int:
            start.wait()
            return _refresh(client, token).status_code

        with ThreadPoolExecutor(2) as pool:
            codes = sorted(pool.map(lambda _: refresh(), range(2)))
        assert codes == [200, 401]


@pytest.mark.parametrize(("token", "code", "message"), [
    ("", 400, "refresh_token is required"),
    ("x" * 300, 400, "at most 256 characters"),
    ("x" * 43, 401, "log in again"),
])
def test_a_missing_overlong_or_unknown_refresh_token(client: Api, token: str, code: int,
                                                     message: str) -> None:
    r = _refresh(client, token)
    assert r.status_code == code and message in r.json()["message"]


def _sessions(client: Api, count: int) -> tuple[User, list[str]]:
    user = client.register("out")
    tokens = [user.refresh_token] + [client.login(user.username, user.password).refresh_token
                                     for _ in range(count - 1)]
    return user, tokens


def test_logout_ends_that_session_only(client: Api) -> None:
    _, (first, second) = _sessions(client, 2)
    r = client.post("/auth/logout", json={"refresh_token": first})
    assert r.status_code == 200 and r.json() == {"message": "Logged out", "sessions_ended": 1}
    assert _refresh(client, first).status_code == 401
    assert _refresh(client, second).status_code == 200


def test_logout_everywhere_ends_every_session_of_the_bearer(client: Api) -> None:
    user, tokens = _sessions(client, 3)
    other = client.register("bystander")
    assert client.post("/auth/logout", json={"all": True}).status_code == 401
    assert client.post("/auth/logout", json={"all": True},
                       headers={"Authorization": "Bearer not-a-jwt"}).status_code == 401
    r = client.post("/auth/logout", json={"all": True}, headers=user.headers)
    assert r.status_code == 200 and r.json()["sessions_ended"] == 3
    for token in tokens:
        assert _refresh(client, token).status_code == 401
    assert _refresh(client, other.refresh_token).status_code == 200
    # As documented: an access token already issued works until it expires.
    assert client.get("/auth/me", headers=user.headers).status_code == 200


def test_me_is_the_callers_profile(client: Api) -> None:
    user = client.register("me")
    r = client.get("/auth/me", headers=user.headers)
    assert r.status_code == 200
    me = r.json()
    assert set(me) == {"id", "username", "email", "name", "role", "created_at", "disabled"}
    assert (me["id"], me["username"], me["email"], me["role"], me["disabled"]) == (
        _claims(user.token)["sub"], user.username, f"{user.username}@example.com", "user", False)
    assert abs(datetime.fromisoformat(me["created_at"]).timestamp() - time.time()) < 60
    assert client.get("/auth/me").status_code == 401


# --- expiry -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def short_lived_auth(stack: Stack) -> Iterator[auth_pb2_grpc.AuthServiceStub]:
    """A second auth process with short lifetimes, on the stack's database and signing key."""
    addr = f"127.0.0.1:{free_port()}"
    env = {**stack.env, "AUTH_ADDR": addr, "ACCESS_TOKEN_TTL_SECONDS": str(ACCESS_TTL),
           "REFRESH_TOKEN_TTL_SECONDS": str(REFRESH_TTL), "SESSION_MAX_SECONDS": str(SESSION_MAX)}
    assert stack.log_to is not None
    with open(stack.log_to / "auth-short-lived.log", "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "services.auth"], env=env, cwd=ROOT,
                                   stdout=log, stderr=subprocess.STDOUT)
    try:
        with grpc.insecure_channel(addr) as channel:
            _wait_serving(channel, process)
            yield auth_pb2_grpc.AuthServiceStub(channel)
    finally:
        process.terminate()
        process.wait(15)


def _wait_serving(channel: grpc.Channel, process: subprocess.Popen[bytes]) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, "the short-lived auth process exited"
        try:
            health.Check(health_pb2.HealthCheckRequest(), timeout=1)
            return
        except grpc.RpcError:
            time.sleep(0.2)
    raise AssertionError("the short-lived auth process did not start within 30 s")


def test_refresh_alone_keeps_a_client_working_until_the_session_ends(
        client: Api, short_lived_auth: auth_pb2_grpc.AuthServiceStub) -> None:
    """Several access-token lifetimes on refresh alone; an idle session's refresh token
    expires; the busy one ends at its absolute lifetime, however often it refreshed."""
    user = client.register("expiry")
    auth = short_lived_auth
    login = auth_pb2.LoginRequest(username=user.username, password=user.password)
    busy, idle = auth.Login(login, timeout=15), auth.Login(login, timeout=15)
    started = time.monotonic()
    assert (busy.expires_in, busy.refresh_expires_in) == (ACCESS_TTL, REFRESH_TTL)

    def me(access_token: str) -> int:
        return client.get("/auth/me",
                          headers={"Authorization": f"Bearer {access_token}"}).status_code

    time.sleep(ACCESS_TTL + 0.5)
    assert me(busy.access_token) == 401  # expired: only a refresh helps now
    refreshes, worked_until, idle_checked = 0, 0.0, False
    while True:
        try:
            busy = auth.Refresh(auth_pb2.RefreshRequest(refresh_token=busy.refresh_token),
                                timeout=15)
        except grpc.RpcError as ended:
            assert ended.code() == grpc.StatusCode.UNAUTHENTICATED
            assert "maximum lifetime" in str(ended.details())
            break
        refreshes += 1
        left = SESSION_MAX - (time.monotonic() - started)
        assert busy.refresh_expires_in <= min(REFRESH_TTL, left + 1)
        assert me(busy.access_token) == 200
        worked_until = time.monotonic() - started
        if not idle_checked and worked_until > REFRESH_TTL + 0.5:
            with pytest.raises(grpc.RpcError) as expired:
                auth.Refresh(auth_pb2.RefreshRequest(refresh_token=idle.refresh_token),
                             timeout=15)
            assert expired.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert "refresh token expired; log in again" in str(expired.value.details())
            idle_checked = True
        time.sleep(1.5)
        assert time.monotonic() - started < SESSION_MAX + 5, "the session did not end"
    assert idle_checked, "the idle session was never checked"
    assert worked_until > 3 * ACCESS_TTL and refreshes >= 4
    assert time.monotonic() - started >= SESSION_MAX - 1
