"""The CLI renews its access token with the stored refresh token, saves each rotated refresh
token at once, and never presents one that another process has already used."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import grpc
import pytest

from marquee.auth.v1 import auth_pb2, auth_pb2_grpc
from marquee_cli.connection import Connection
from marquee_cli.endpoint import parse_endpoint
from marquee_cli.errors import CliError
from marquee_cli.exit_codes import ExitCode
from marquee_cli.token_store import StoredSession, TokenStore
from tests.unit.test_cli_errors import FakeRpcError

URL = "http://127.0.0.1:8000"


class FakeAuth:
    def __init__(self, fail: grpc.StatusCode | None = None) -> None:
        self.presented: list[str] = []
        self.fail = fail

    def Refresh(self, request: auth_pb2.RefreshRequest, timeout: float) -> Any:
        self.presented.append(request.refresh_token)
        if self.fail:
            raise FakeRpcError(self.fail, "refresh token already used: the session has ended")
        n = len(self.presented)
        return auth_pb2.TokenResponse(access_token=f"access{n}", expires_in=900,
                                      refresh_token=f"refresh{n}", refresh_expires_in=86400)


class Done:
    def __init__(self, value: Any) -> None:
        self.value = value

    def result(self, timeout: float) -> Any:
        if isinstance(self.value, Exception):
            raise self.value
        return self.value

    def cancel(self) -> None:
        pass


class FakeMethod:
    """A unary method that answers UNAUTHENTICATED to the tokens in `refused`."""

    def __init__(self, refused: set[str] = frozenset()) -> None:  # type: ignore[assignment]
        self.tokens: list[str] = []
        self.refused = refused

    def future(self, request: Any, metadata: Any, timeout: float) -> Done:
        token = dict(metadata)["authorization"].removeprefix("Bearer ")
        self.tokens.append(token)
        if token in self.refused:
            return Done(FakeRpcError(grpc.StatusCode.UNAUTHENTICATED, "Jwt is expired"))
        return Done("ok")


def _connection(tmp_path: Path, session: StoredSession, auth: FakeAuth) -> Connection:
    store = TokenStore(tmp_path)
    store.put(URL, session)
    conn = Connection(parse_endpoint(URL), store)
    conn._stubs[auth_pb2_grpc.AuthServiceStub] = auth
    return conn


def _session(access: str, refresh: str, access_left: float) -> StoredSession:
    now = time.time()
    return StoredSession("alice", access, now + access_left, refresh, now + 86400)


def test_an_expired_access_token_is_renewed_before_the_call(tmp_path: Path) -> None:
    auth = FakeAuth()
    conn = _connection(tmp_path, _session("old", "refresh0", access_left=-5), auth)
    method = FakeMethod()
    assert conn.call(method, object()) == "ok"
    assert auth.presented == ["refresh0"]
    assert method.tokens == ["access1"]
    # Rotation: the new refresh token is what is stored now.
    stored = conn.store.get(URL)
    assert stored is not None and stored.refresh_token == "refresh1"


def test_unauthenticated_is_retried_once_with_a_renewed_token(tmp_path: Path) -> None:
    auth = FakeAuth()
    conn = _connection(tmp_path, _session("revoked", "refresh0", access_left=600), auth)
    method = FakeMethod(refused={"revoked"})
    assert conn.call(method, object()) == "ok"
    assert method.tokens == ["revoked", "access1"]
    assert auth.presented == ["refresh0"]


def test_a_refresh_made_by_another_process_is_used_not_repeated(tmp_path: Path) -> None:
    auth = FakeAuth()
    conn = _connection(tmp_path, _session("stale", "refresh0", access_left=-5), auth)
    # Another `marquee` refreshed between our read and our lock.
    conn.store.put(URL, _session("theirs", "refresh-theirs", access_left=600))
    renewed = conn.refresh("stale")
    assert renewed.access_token == "theirs"
    assert auth.presented == []


def test_a_refused_refresh_forgets_the_session(tmp_path: Path) -> None:
    auth = FakeAuth(fail=grpc.StatusCode.UNAUTHENTICATED)
    conn = _connection(tmp_path, _session("old", "refresh0", access_left=-5), auth)
    with pytest.raises(CliError) as err:
        conn.call(FakeMethod(), object())
    assert err.value.exit_code == ExitCode.UNAUTHENTICATED
    assert "marquee login" in err.value.message
    assert conn.store.get(URL) is None


def test_not_logged_in(tmp_path: Path) -> None:
    conn = Connection(parse_endpoint(URL), TokenStore(tmp_path))
    with pytest.raises(CliError) as err:
        conn.call(FakeMethod(), object())
    assert err.value.exit_code == ExitCode.UNAUTHENTICATED
    assert "not logged in" in err.value.message
