"""The administrator on the real stack: the account made from MARQUEE_ADMIN_*, GET /admin/users
(search, pages), PATCH /admin/users/{user_id} (role, disabled), the admin level enforced at the
gateway and at the auth service's own port, disabled accounts, and the last-admin rule."""

from __future__ import annotations

import uuid
from typing import Any

import grpc
import jwt
import pytest
import requests

from devstack.stack import Stack
from marquee.auth.v1 import auth_pb2, auth_pb2_grpc
from tests.integration.conftest import ADMIN_USERNAME, Api, User


@pytest.fixture(scope="module")
def client(stack: Stack) -> Api:
    """A client of its own address (X-Forwarded-For; the stack trusts one hop), so that this
    module's logins do not eat into the per-address budget of the others."""
    own = Api(stack.gateway_url)
    own.http.headers["X-Forwarded-For"] = "198.51.100.22"
    return own


def _patch(api: Api, admin: User, user_id: str, **body: Any) -> requests.Response:
    return api.http.patch(api.url(f"/admin/users/{user_id}"), json=body, headers=admin.headers,
                          timeout=60)


def _id(user: User) -> str:
    return str(jwt.decode(user.token, options={"verify_signature": False})["sub"])


def _role(user: User) -> str:
    return str(jwt.decode(user.token, options={"verify_signature": False})["role"])


def _refreshed(api: Api, user: User) -> User:
    r = api.post("/auth/refresh", json={"refresh_token": user.refresh_token})
    assert r.status_code == 200, r.text
    return User(user.username, user.password, r.json()["access_token"],
                r.json()["refresh_token"])


def test_the_admin_from_the_settings_can_log_in_as_admin(admin: User) -> None:
    assert admin.username == ADMIN_USERNAME and _role(admin) == "admin"


def test_users_are_listed_searched_and_paged(client: Api, admin: User) -> None:
    tag = uuid.uuid4().hex[:8]
    names = sorted(client.register(f"L{tag}").username for _ in range(5))
    r = client.get("/admin/users", headers=admin.headers, params={"search": tag.upper()})
    assert r.status_code == 200, r.text
    body = r.json()
    assert [u["username"] for u in body["users"]] == sorted(names, key=str.lower)
    assert body["total_size"] == 5 and body["next_page_token"] == ""
    first = body["users"][0]
    assert set(first) == {"id", "username", "email", "name", "role", "created_at", "disabled"}
    assert (first["role"], first["disabled"]) == ("user", False)
    # The email matches too, without case.
    by_email = client.get("/admin/users", headers=admin.headers,
                          params={"search": f"{names[0].upper()}@EXAMPLE"}).json()
    assert [u["username"] for u in by_email["users"]] == [names[0]]
    # Pages by token, then by number, cover the same users in the same order.
    seen, token = [], ""
    while True:
        page = client.get("/admin/users", headers=admin.headers,
                          params={"search": tag, "page_size": 2, "page_token": token}).json()
        seen += [u["username"] for u in page["users"]]
        token = page["next_page_token"]
        if not token:
            break
    numbered = [u["username"] for p in (1, 2, 3) for u in client.get(
        "/admin/users", headers=admin.headers,
        params={"search": tag, "limit": 2, "page": p}).json()["users"]]
    assert seen == numbered == [u["username"] for u in body["users"]]


@pytest.mark.parametrize(("params", "message"), [
    ({"search": "x" * 101}, "search must be at most 100 characters"),
    ({"search": "a\x00b"}, "search must not contain control"),
    ({"limit": 1000}, "limit must be an integer from 1 to 100"),
    ({"page_token": "garbage"}, "page_token is not valid"),
    ({"search": "(.*)+$"}, ""),  # matched as text: no pattern runs, nothing matches
])
def test_list_parameters_are_checked(client: Api, admin: User, params: dict[str, Any],
                                     message: str) -> None:
    r = client.get("/admin/users", headers=admin.headers, params=params)
    if message:
        assert r.status_code == 400 and message in r.json()["message"]
    else:
        assert r.status_code == 200 and r.json()["users"] == []


def test_a_user_is_refused_every_admin_route_at_the_gateway_and_at_the_service(
        client: Api, stack: Stack, gateway_channel: grpc.Channel) -> None:
    user = client.register("plain")
    r = client.get("/admin/users", headers=user.headers)
    assert r.status_code == 403 and r.json() == {"message": "RBAC: access denied", "status": 403}
    assert _patch(client, user, _id(user), role="admin").status_code == 403
    assert client.get("/admin/users").status_code == 401
    with grpc.insecure_channel(f"127.0.0.1:{stack.ports['auth']}") as direct:
        for channel in (gateway_channel, direct):
            stub = auth_pb2_grpc.AuthServiceStub(channel)
            for call, request in ((stub.ListUsers, auth_pb2.ListUsersRequest()),
                                  (stub.UpdateUser, auth_pb2.UpdateUserRequest(
                                      user_id=_id(user), role="admin"))):
                with pytest.raises(grpc.RpcError) as refused:
                    call(request, metadata=user.metadata, timeout=15)
                assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    me = client.get("/auth/me", headers=user.headers).json()
    assert me["role"] == "user"


def test_a_role_change_takes_effect_at_the_next_refresh(client: Api, admin: User) -> None:
    user = client.register("promo")
    r = _patch(client, admin, _id(user), role="admin")
    assert r.status_code == 200 and (r.json()["role"], r.json()["disabled"]) == ("admin", False)
    assert client.get("/admin/users", headers=user.headers).status_code == 403  # old claims
    promoted = _refreshed(client, user)
    assert _role(promoted) == "admin"
    assert client.get("/admin/users", headers=promoted.headers).status_code == 200
    assert _patch(client, admin, _id(user), role="user").json()["role"] == "user"
    # The admin token in hand still says admin, but the services check the account at once.
    r = client.get("/admin/users", headers=promoted.headers)
    assert r.status_code == 403 and "no longer an administrator" in r.json()["message"]
    assert _role(_refreshed(client, promoted)) == "user"


def test_a_disabled_user_cannot_log_in_or_refresh(client: Api, admin: User) -> None:
    user = client.register("off")
    r = _patch(client, admin, _id(user), disabled=True)
    assert r.status_code == 200 and (r.json()["role"], r.json()["disabled"]) == ("user", True)
    login = client.post("/auth/login", json={"username": user.username,
                                             "password": user.password})
    refresh = client.post("/auth/refresh", json={"refresh_token": user.refresh_token})
    for refused in (login, refresh):
        assert refused.status_code == 403
        assert refused.json()["message"] == "this account is disabled; ask an administrator"
    assert _patch(client, admin, _id(user), disabled=False).json()["disabled"] is False
    # Enabled again: a new login works, the sessions that disabling ended stay ended.
    assert client.login(user.username, user.password).token
    assert client.post("/auth/refresh",
                       json={"refresh_token": user.refresh_token}).status_code == 401


def test_bad_updates(client: Api, admin: User) -> None:
    user = client.register("bad")
    r = _patch(client, admin, _id(user), role="superuser")
    assert r.status_code == 400 and r.json()["message"] == "role must be one of: user, admin"
    for unknown in ("0" * 24, "not-an-id"):
        r = _patch(client, admin, unknown, role="user")
        assert r.status_code == 404 and r.json()["message"] == "no user has this id"


def test_the_last_admin_cannot_demote_or_disable_himself(client: Api, admin: User) -> None:
    admins = client.get("/admin/users", headers=admin.headers,
                        params={"search": ADMIN_USERNAME}).json()["users"]
    assert [u["role"] for u in admins if u["username"] == ADMIN_USERNAME] == ["admin"]
    for change in ({"role": "user"}, {"disabled": True}):
        r = _patch(client, admin, _id(admin), **change)
        assert r.status_code == 400, r.text
        assert "no enabled administrator" in r.json()["message"]
    assert client.get("/admin/users", headers=admin.headers).status_code == 200
    # With a second admin, the first may step down, and the second may restore him.
    deputy = client.register("deputy")
    _patch(client, admin, _id(deputy), role="admin")
    deputy = _refreshed(client, deputy)
    assert _patch(client, admin, _id(admin), role="user").json()["role"] == "user"
    assert _patch(client, deputy, _id(admin), role="admin").json()["role"] == "admin"
    assert _patch(client, admin, _id(deputy), role="user").status_code == 200
