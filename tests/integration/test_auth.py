"""POST /auth/register, POST /auth/login, the JWKS, and tokens at the gateway."""

from __future__ import annotations

import base64
import json
import stat
import time
import uuid

import jwt
import pytest

from devstack.stack import Stack
from tests.integration.conftest import Api


def _body(name: str, **overrides: str) -> dict[str, str]:
    return {"username": name, "password": "pa55word", "email": f"{name}@example.com",
            "name": "Some One", **overrides}


def test_register_returns_201_with_message_and_token(api: Api) -> None:
    name = "reg" + uuid.uuid4().hex[:8]
    r = api.post("/auth/register", json=_body(name))
    assert r.status_code == 201
    body = r.json()
    assert body["message"] == "User registered successfully"
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["iss"] == "marquee" and claims["aud"] == "marquee"
    assert claims["exp"] - claims["iat"] == 900
    assert {"sub", "iat", "exp"} <= set(claims)
    assert jwt.get_unverified_header(body["access_token"])["alg"] == "RS256"


@pytest.mark.parametrize("field", ["username", "password", "email", "name"])
def test_register_missing_field_is_400_naming_it(api: Api, field: str) -> None:
    body = _body("miss" + uuid.uuid4().hex[:8])
    del body[field]
    r = api.post("/auth/register", json=body)
    assert r.status_code == 400
    assert field in r.json()["message"]


@pytest.mark.parametrize("field,value", [("email", "not-an-email"), ("password", "123"),
                                         ("username", "a b")])
def test_register_invalid_field_is_400_naming_it(api: Api, field: str, value: str) -> None:
    r = api.post("/auth/register", json=_body("inv" + uuid.uuid4().hex[:8], **{field: value}))
    assert r.status_code == 400
    assert field in r.json()["message"]


def test_register_taken_username_or_email_is_409(api: Api) -> None:
    name = "dup" + uuid.uuid4().hex[:8]
    assert api.post("/auth/register", json=_body(name)).status_code == 201
    again = api.post("/auth/register", json=_body(name.upper(), email="other@example.com"))
    assert again.status_code == 409 and "username" in again.json()["message"]
    same_email = api.post("/auth/register", json=_body("x" + name, email=f"{name}@example.com"))
    assert same_email.status_code == 409 and "email" in same_email.json()["message"]


def test_racing_registrations_have_one_winner(api: Api) -> None:
    from concurrent.futures import ThreadPoolExecutor

    name = "race" + uuid.uuid4().hex[:8]
    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(lambda _: api.post("/auth/register", json=_body(name)).status_code,
                              range(8)))
    assert sorted(codes) == [201] + [409] * 7


def test_login(api: Api) -> None:
    user = api.register()
    r = api.post("/auth/login", json={"username": user.username, "password": user.password})
    assert r.status_code == 201
    assert r.json()["message"] == "User logged in successfully"
    assert r.json()["access_token"]


@pytest.mark.parametrize("body,code", [
    ({"username": "someone"}, 400),
    ({"password": "whatever"}, 400),
    ({"username": "nobody-" + uuid.uuid4().hex[:6], "password": "whatever"}, 404),
])
def test_login_errors(api: Api, body: dict[str, str], code: int) -> None:
    r = api.post("/auth/login", json=body)
    assert r.status_code == code
    assert r.json()["message"]


def test_login_wrong_password_is_401(api: Api) -> None:
    user = api.register()
    r = api.post("/auth/login", json={"username": user.username, "password": "wrong-password"})
    assert r.status_code == 401


def test_jwks_is_public_and_verifies_tokens(api: Api) -> None:
    user = api.register()
    r = api.get("/.well-known/jwks.json")
    assert r.status_code == 200
    keys = r.json()["keys"]
    header = jwt.get_unverified_header(user.token)
    key = next(k for k in keys if k["kid"] == header["kid"])
    claims = jwt.decode(user.token, jwt.PyJWK(key).key, algorithms=["RS256"], audience="marquee")
    assert claims["username"] == user.username


def test_verify_endpoint(api: Api) -> None:
    user = api.register()
    r = api.post("/auth/verify", json={"token": user.token})
    assert r.status_code == 200 and r.json()["valid"] is True
    assert r.json()["username"] == user.username
    assert api.post("/auth/verify", json={"token": "garbage"}).status_code == 401


def _forge(token: str, **claims: object) -> str:
    """The same token with changed claims and the original (now wrong) signature."""
    head, payload, sig = token.split(".")
    data = json.loads(base64.urlsafe_b64decode(payload + "=="))
    data.update(claims)
    forged = base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()
    return f"{head}.{forged}.{sig}"


def test_protected_routes_refuse_missing_bad_and_forged_tokens(api: Api) -> None:
    user = api.register()
    for headers in ({}, {"Authorization": "Bearer nonsense"},
                    {"Authorization": "Bearer " + _forge(user.token, sub="someone-else")},
                    {"Authorization": "Bearer " + _forge(user.token, exp=int(time.time()) - 5)}):
        for path in ("/movies", "/tasks", "/task/0123456789abcdef01234567"):
            r = api.get(path, headers=headers)
            assert r.status_code == 401, (path, headers, r.text)
            assert r.json()["message"]
    assert api.get("/movies", headers=user.headers).status_code == 200


def test_signing_key_is_created_private(stack: Stack) -> None:
    key = stack.data_dir / "keys" / "jwt-private.pem"
    assert key.exists()
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
