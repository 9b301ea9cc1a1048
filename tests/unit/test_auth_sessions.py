"""Sessions on in-memory repositories and a clock the tests move: rotating refresh tokens, reuse
detection, the token's and the session's lifetimes, logout, disabled accounts and roles taken
from the account at each refresh."""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass

import jwt
import pytest

from services.auth import keys
from services.auth.keys import SigningKey
from services.auth.service import AuthService, IssuedToken
from services.auth.sessions import MAX_REFRESH_TOKEN_CHARS, Sessions
from services.auth.throttle import LoginThrottle, ThrottlePolicy
from services.auth.user_admin import UserAdmin
from services.common.errors import InvalidArgument, PermissionDenied, Unauthenticated
from tests.unit.fakes import FakeFailedLogins, FakeSessionStore, FakeUsers

ACCESS_TTL = 900
REFRESH_TTL = 3600
SESSION_MAX = 4 * 3600
PASSWORD = "pa55word"


class Clock:
    """Unix seconds, from the real time (access tokens are verified against it); tests move it
    instead of sleeping, and only by less than an access token lives when they verify one."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@dataclass
class Auth:
    service: AuthService
    admin: UserAdmin
    users: FakeUsers
    store: FakeSessionStore
    clock: Clock

    def register(self, username: str = "alice") -> IssuedToken:
        return self.service.register(username=username, password=PASSWORD,
                                     email=f"{username}@example.com", name=username.title())

    def claims(self, issued: IssuedToken) -> dict[str, object]:
        return dict(jwt.decode(issued.access_token, options={"verify_signature": False}))


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> SigningKey:
    return keys.load_or_create(tmp_path_factory.mktemp("keys") / "jwt.pem")


@pytest.fixture
def auth(key: SigningKey) -> Auth:
    users, store, clock = FakeUsers(), FakeSessionStore(), Clock()
    sessions = Sessions(store, users, refresh_ttl_seconds=REFRESH_TTL,
                        session_max_seconds=SESSION_MAX, clock=clock)
    service = AuthService(users, key, sessions=sessions, issuer="marquee-test",
                          audience="marquee", ttl_seconds=ACCESS_TTL,
                          throttle=LoginThrottle(FakeFailedLogins(), ThrottlePolicy(), clock),
                          bcrypt_rounds=4, clock=clock)
    return Auth(service, UserAdmin(users, sessions), users, store, clock)


def test_login_and_register_start_a_session_with_a_refresh_token(auth: Auth) -> None:
    registered = auth.register()
    logged_in = auth.service.login(username="alice", password=PASSWORD)
    for issued in (registered, logged_in):
        assert issued.expires_in == ACCESS_TTL
        assert issued.refresh_expires_in == REFRESH_TTL
        assert len(issued.refresh_token) == 43  # 32 random bytes, URL-safe base64
        claims = auth.claims(issued)
        assert claims["role"] == "user" and claims["sid"] in auth.store.sessions
    assert auth.claims(registered)["sid"] != auth.claims(logged_in)["sid"]
    caller, _ = auth.service.verify(logged_in.access_token)
    assert caller.session_id == auth.claims(logged_in)["sid"]


def test_refresh_tokens_are_stored_only_as_sha256_hashes(auth: Auth) -> None:
    issued = auth.register()
    stored = set(auth.store.tokens)
    assert issued.refresh_token not in stored
    assert hashlib.sha256(issued.refresh_token.encode()).hexdigest() in stored


def test_a_refresh_rotates_the_token_within_the_session(auth: Auth) -> None:
    first = auth.register()
    second = auth.service.refresh(first.refresh_token)
    third = auth.service.refresh(second.refresh_token)
    assert len({first.refresh_token, second.refresh_token, third.refresh_token}) == 3
    assert len({auth.claims(t)["sid"] for t in (first, second, third)}) == 1
    assert auth.claims(third)["sub"] == auth.claims(first)["sub"]
    assert auth.service.verify(third.access_token)[0].username == "alice"


def test_a_used_token_presented_again_ends_the_session(auth: Auth,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    first = auth.register()
    second = auth.service.refresh(first.refresh_token)
    with caplog.at_level(logging.WARNING), pytest.raises(Unauthenticated, match="already used"):
        auth.service.refresh(first.refresh_token)
    # The token the other holder got from it is dead too: the session is over.
    with pytest.raises(Unauthenticated, match="session has ended"):
        auth.service.refresh(second.refresh_token)
    event = next(r for r in caplog.records if getattr(r, "event", "") == "refresh_token_reuse")
    assert event.levelno == logging.WARNING
    assert event.__dict__["session_id"] == auth.claims(first)["sid"]
    assert event.__dict__["user_id"] == auth.claims(first)["sub"]
    # Other sessions of the same user go on.
    other = auth.service.login(username="alice", password=PASSWORD)
    assert auth.service.refresh(other.refresh_token).refresh_token


def test_of_two_refreshes_with_one_token_only_the_first_to_use_it_wins(auth: Auth) -> None:
    """The loser passed every check before the winner used the token up (as when both run at
    once); the store's atomic use decides, and the loser counts as a reuse."""
    first = auth.register()
    used_by_the_other = auth.store.use_token
    raced: list[bool] = []

    def use_after_the_other(token_hash: str, now: float) -> bool:
        if not raced:
            raced.append(used_by_the_other(token_hash, now))  # the other refresh, first
        return used_by_the_other(token_hash, now)

    auth.store.use_token = use_after_the_other  # type: ignore[method-assign]
    with pytest.raises(Unauthenticated, match="already used"):
        auth.service.refresh(first.refresh_token)
    assert raced == [True]


def test_an_unknown_empty_or_overlong_token_is_refused_before_any_lookup(auth: Auth) -> None:
    auth.register()
    with pytest.raises(Unauthenticated, match=r"not valid .*log in again"):
        auth.service.refresh("x" * 43)
    with pytest.raises(InvalidArgument, match="refresh_token is required"):
        auth.service.refresh("  ")
    auth.store.token = lambda _: pytest.fail("looked up")  # type: ignore[assignment]
    with pytest.raises(InvalidArgument, match=f"at most {MAX_REFRESH_TOKEN_CHARS} characters"):
        auth.service.refresh("x" * 1_000_000)


def test_a_refresh_token_expires_after_its_own_lifetime(auth: Auth) -> None:
    issued = auth.register()
    auth.clock.now += REFRESH_TTL - 1
    renewed = auth.service.refresh(issued.refresh_token)
    auth.clock.now += REFRESH_TTL
    with pytest.raises(Unauthenticated, match="refresh token expired; log in again"):
        auth.service.refresh(renewed.refresh_token)


def test_a_session_ends_at_its_absolute_lifetime_however_often_it_refreshes(auth: Auth) -> None:
    issued = auth.register()
    started = auth.clock.now
    while auth.clock.now + REFRESH_TTL / 2 < started + SESSION_MAX:
        auth.clock.now += REFRESH_TTL / 2
        issued = auth.service.refresh(issued.refresh_token)
        # Never promised past the session's end.
        assert auth.clock.now + issued.refresh_expires_in <= started + SESSION_MAX
    assert issued.refresh_expires_in < REFRESH_TTL
    auth.clock.now = started + SESSION_MAX
    with pytest.raises(Unauthenticated, match=r"maximum lifetime .*log in again"):
        auth.service.refresh(issued.refresh_token)


def test_logout_ends_the_session_of_the_token(auth: Auth) -> None:
    issued = auth.register()
    other = auth.service.login(username="alice", password=PASSWORD)
    renewed = auth.service.refresh(issued.refresh_token)
    assert auth.service.logout(renewed.refresh_token) == 1
    with pytest.raises(Unauthenticated, match="session has ended"):
        auth.service.refresh(renewed.refresh_token)
    assert auth.service.logout(renewed.refresh_token) == 0  # ended already
    assert auth.service.refresh(other.refresh_token).refresh_token  # another session


def test_logout_everywhere_ends_every_session_of_the_bearer(auth: Auth) -> None:
    sessions = [auth.register()] + [auth.service.login(username="alice", password=PASSWORD)
                                    for _ in range(2)]
    bob = auth.register("bob")
    assert auth.service.logout_everywhere(sessions[0].access_token) == 3
    for issued in sessions:
        with pytest.raises(Unauthenticated, match="session has ended"):
            auth.service.refresh(issued.refresh_token)
    assert auth.service.refresh(bob.refresh_token).refresh_token
    assert auth.service.logout_everywhere(sessions[0].access_token) == 0
    for bad in ("not-a-jwt", "e" * 100_000):
        with pytest.raises(Unauthenticated, match="malformed access token"):
            auth.service.logout_everywhere(bad)


def test_a_disabled_user_cannot_log_in_or_refresh_and_loses_every_session(auth: Auth) -> None:
    issued = auth.register()
    user_id = str(auth.claims(issued)["sub"])
    auth.admin.update_user(user_id, role=None, disabled=True)
    with pytest.raises(PermissionDenied, match=r"^this account is disabled; ask an administrator$"):
        auth.service.login(username="alice", password=PASSWORD)
    with pytest.raises(PermissionDenied, match="this account is disabled"):
        auth.service.refresh(issued.refresh_token)
    assert all(s.ended for s in auth.store.sessions.values())
    auth.admin.update_user(user_id, role=None, disabled=False)
    with pytest.raises(Unauthenticated, match="session has ended"):  # enabling revives none
        auth.service.refresh(issued.refresh_token)
    assert auth.service.login(username="alice", password=PASSWORD).refresh_token


def test_a_wrong_password_for_a_disabled_user_says_nothing_of_the_account(auth: Auth) -> None:
    auth.register()
    auth.admin.update_user(str(auth.users.by_username("alice")["_id"]),  # type: ignore[index]
                           role=None, disabled=True)
    with pytest.raises(Unauthenticated, match="wrong password"):
        auth.service.login(username="alice", password="wrong-password")


def test_a_role_change_takes_effect_at_the_next_refresh(auth: Auth) -> None:
    auth.users.add(username="root", email="root@example.com", name="Root", password_hash=b"",
                   role="admin")
    issued = auth.register()
    user_id = str(auth.claims(issued)["sub"])
    auth.admin.update_user(user_id, role="admin", disabled=None)
    assert auth.claims(issued)["role"] == "user"  # the token in hand keeps its claims
    promoted = auth.service.refresh(issued.refresh_token)
    assert auth.claims(promoted)["role"] == "admin"
    assert auth.service.verify(promoted.access_token)[0].is_admin
    auth.admin.update_user(user_id, role="user", disabled=None)
    assert auth.claims(auth.service.refresh(promoted.refresh_token))["role"] == "user"


def test_users_stored_before_roles_are_enabled_users(auth: Auth) -> None:
    user_id = auth.users.add_legacy("old")
    assert auth.service.account_status(user_id) == (True, "user", False)
    profile = auth.admin.update_user(user_id, role=None, disabled=None)
    assert (profile.role, profile.disabled) == ("user", False)


def test_me_is_the_callers_profile(auth: Auth) -> None:
    issued = auth.register()
    caller, _ = auth.service.verify(issued.access_token)
    me = auth.service.me(caller)
    assert (me.id, me.username, me.email, me.name, me.role, me.disabled) == (
        caller.user_id, "alice", "alice@example.com", "Alice", "user", False)
    assert me.created_at == "2024-05-01T12:00:00.000Z"
