"""AuthService on in-memory repositories: registration rules, login and its throttle, the
tokens, and bounds on hostile input (linear time, never a crash)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from pathlib import Path

import bcrypt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.auth import keys
from services.auth.keys import SigningKey
from services.auth.service import AuthService
from services.auth.sessions import Sessions
from services.auth.throttle import LoginThrottle, ThrottlePolicy
from services.common.errors import (
    AlreadyExists,
    DomainError,
    InvalidArgument,
    NotFound,
    Throttled,
    Unauthenticated,
)
from services.common.tokens import Caller
from tests.unit.fakes import FakeFailedLogins, FakeSessionStore, FakeUsers

TTL = 900
ROUNDS = 4  # bcrypt's minimum: the rules under test do not depend on the cost
POLICY = ThrottlePolicy(max_failures=5, window_seconds=900, lock_seconds=30,
                        max_lock_seconds=900)


class Clock:
    """Unix seconds that the tests move instead of sleeping. It starts at the real time, since
    the access tokens it stamps are verified against the real time."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> SigningKey:
    return keys.load_or_create(tmp_path_factory.mktemp("keys") / "jwt.pem")


def _service(key: SigningKey, users: FakeUsers | None = None, ttl: int = TTL,
             clock: Clock | None = None) -> AuthService:
    users, clock = users or FakeUsers(), clock or Clock()
    sessions = Sessions(FakeSessionStore(), users, refresh_ttl_seconds=3600,
                        session_max_seconds=7200, clock=clock)
    return AuthService(users, key, sessions=sessions, issuer="marquee-test",
                       audience="marquee", ttl_seconds=ttl,
                       throttle=LoginThrottle(FakeFailedLogins(), POLICY, clock),
                       bcrypt_rounds=ROUNDS, clock=clock)


@pytest.fixture
def users() -> FakeUsers:
    return FakeUsers()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def auth(key: SigningKey, users: FakeUsers, clock: Clock) -> AuthService:
    return _service(key, users, clock=clock)


def _register(auth: AuthService, username: str = "Alice", email: str = "alice@example.com",
              password: str = "pa55word") -> str:
    return auth.register(username=username, password=password, email=email,
                         name="Alice A.").access_token


def test_register_issues_a_token_for_the_new_user(auth: AuthService) -> None:
    before = int(time.time())
    issued = auth.register(username=" Alice ", password="pa55word", email="alice@example.com",
                           name="Alice")
    assert issued.expires_in == TTL
    caller, expires_at = auth.verify(issued.access_token)
    assert caller.username == "Alice"  # trimmed
    assert caller.user_id
    assert before + TTL <= expires_at <= int(time.time()) + TTL


def test_the_password_is_stored_only_as_a_bcrypt_hash(auth: AuthService, users: FakeUsers
                                                      ) -> None:
    _register(auth)
    user = users.by_username("alice")
    assert user is not None
    assert b"pa55word" not in user["password_hash"]
    assert bcrypt.checkpw(b"pa55word", user["password_hash"])


@pytest.mark.parametrize(("username", "email", "taken"), [
    ("alice", "other@example.com", "username"),  # usernames compare without case
    ("bob", "ALICE@example.com", "email"),  # so do emails
])
def test_a_taken_username_or_email_is_refused(auth: AuthService, username: str, email: str,
                                              taken: str) -> None:
    _register(auth, username="Alice", email="alice@example.com")
    with pytest.raises(AlreadyExists, match=f"^{taken} is already taken$"):
        _register(auth, username=username, email=email)


@pytest.mark.parametrize(("fields", "message"), [
    ({"username": ""}, "missing required field: username"),
    ({"password": "", "email": " "}, "missing required fields: password, email"),
    ({"username": "al"}, "username must be 3-32 characters"),
    ({"username": "al ice"}, "username must be 3-32 characters"),
    ({"username": "u" * 1_000_000}, "username must be 3-32 characters"),
    ({"password": "1234567"}, "password must be at least 8 characters"),
    ({"password": "é" * 40}, "password must be at most 72 bytes"),  # 40 characters, 80 bytes
    ({"password": "x" * 1_000_000}, "password must be at most 72 bytes"),
    ({"email": "alice.example.com"}, "email must be an address"),
    ({"email": "a@" + "." * 60_000 + "@"}, "email must be at most 254 characters"),
    ({"email": "alice@ex\u0430mple.com"}, "email mixes alphabets"),  # a Cyrillic letter a
    ({"email": "al\u200bice@example.com"}, "email must not contain spaces, control or"),
    ({"name": "x" * 201}, "name must be at most 200 characters"),
    ({"name": "Alice\nAdmin"}, "name must not contain control characters"),
])
def test_registration_rules(auth: AuthService, users: FakeUsers, fields: dict[str, str],
                            message: str) -> None:
    params = {"username": "alice", "password": "pa55word", "email": "a@example.com",
              "name": "Alice", **fields}
    with pytest.raises(InvalidArgument, match=message):
        auth.register(**params)
    assert users.by_username("alice") is None


def test_login_accepts_any_case_of_the_name_and_issues_the_registered_one(auth: AuthService
                                                                          ) -> None:
    registered, _ = auth.verify(_register(auth, username="Alice"))
    issued = auth.login(username=" ALICE ", password="pa55word")
    caller, _ = auth.verify(issued.access_token)
    assert caller == Caller(user_id=registered.user_id, username="Alice", role="user",
                            session_id=caller.session_id)
    assert caller.session_id and caller.session_id != registered.session_id  # a new session


def test_login_with_a_wrong_password_or_an_unknown_name(auth: AuthService) -> None:
    _register(auth)
    with pytest.raises(Unauthenticated, match="wrong password"):
        auth.login(username="alice", password="pa55wore")
    with pytest.raises(NotFound, match="no user named 'nobody'"):
        auth.login(username="nobody", password="pa55word")
    with pytest.raises(InvalidArgument, match="missing required field: password"):
        auth.login(username="alice", password="")


def test_tokens_that_are_expired_foreign_or_altered_are_refused(key: SigningKey,
                                                                tmp_path: Path) -> None:
    users = FakeUsers()
    expired = _register(_service(key, users, ttl=-10))
    with pytest.raises(Unauthenticated, match="expired"):
        _service(key, users).verify(expired)
    other_key = keys.load_or_create(tmp_path / "other.pem")
    foreign = _register(_service(other_key), username="mallory", email="m@example.com")
    with pytest.raises(Unauthenticated, match="unknown key"):
        _service(key, users).verify(foreign)
    auth = _service(key, users)
    carol = _register(auth, username="carol", email="c@example.com").split(".")
    dave = _register(auth, username="dave", email="d@example.com").split(".")
    with pytest.raises(Unauthenticated, match="invalid access token"):
        auth.verify(".".join([carol[0], dave[1], carol[2]]))  # dave's claims, carol's signature
    with pytest.raises(InvalidArgument, match="token is required"):
        auth.verify("  ")


def test_the_email_is_stored_in_its_canonical_form(auth: AuthService, users: FakeUsers
                                                   ) -> None:
    # Full-width ALICE and E, which NFKC reads as the ASCII letters.
    _register(auth, email=" \uff21\uff2c\uff29\uff23\uff25@\uff25xample.COM ")
    user = users.by_username("alice")
    assert user is not None and user["email"] == "ALICE@example.com"
    with pytest.raises(AlreadyExists, match=r"^email is already taken$"):
        _register(auth, username="bob", email="alice@EXAMPLE.com")


# --- login: hostile input, timing, throttle -------------------------------------------------

def test_login_with_a_password_over_72_bytes_is_a_client_error(auth: AuthService) -> None:
    _register(auth)
    with pytest.raises(InvalidArgument, match="password must be at most 72 bytes"):
        auth.login(username="alice", password="p" * 73)


def test_an_overlong_username_is_refused_without_being_quoted(auth: AuthService) -> None:
    with pytest.raises(InvalidArgument) as refused:
        auth.login(username="u" * 1_000_000, password="pa55word")
    assert str(refused.value) == "username must be at most 32 characters"


def test_an_unknown_name_costs_the_same_bcrypt_check_as_a_wrong_password(
        auth: AuthService, monkeypatch: pytest.MonkeyPatch) -> None:
    _register(auth)
    checked: list[bytes] = []
    real_check = bcrypt.checkpw

    def counting_check(password: bytes, hashed: bytes) -> bool:
        checked.append(hashed)
        return real_check(password, hashed)

    monkeypatch.setattr(bcrypt, "checkpw", counting_check)
    with pytest.raises(Unauthenticated):
        auth.login(username="alice", password="wrong-password")
    with pytest.raises(NotFound):
        auth.login(username="nobody", password="wrong-password")
    assert len(checked) == 2
    assert bcrypt.checkpw(b"wrong-password", checked[0]) is False  # alice's real hash...
    assert checked[1] != checked[0] and checked[1][:7] == checked[0][:7]  # ...and one as costly


def _fail(auth: AuthService, times: int, username: str = "alice") -> None:
    for _ in range(times):
        with pytest.raises((Unauthenticated, NotFound)):
            auth.login(username=username, password="wrong-password")


def test_failed_logins_lock_the_name_even_against_the_right_password(auth: AuthService,
                                                                       clock: Clock) -> None:
    _register(auth)
    _fail(auth, 5)
    with pytest.raises(Throttled) as locked:
        auth.login(username="ALICE", password="pa55word")  # any case of the name
    assert locked.value.retry_after == 30
    assert str(locked.value) == ("too many failed logins for this username: try again in 30 "
                                 "seconds")
    clock.now += 29
    with pytest.raises(Throttled, match="try again in 1 seconds"):
        auth.login(username="alice", password="pa55word")
    clock.now += 1
    assert auth.login(username="alice", password="pa55word").access_token


def test_each_failure_after_a_lock_doubles_it_up_to_the_cap(auth: AuthService,
                                                             clock: Clock) -> None:
    _register(auth)
    _fail(auth, 5)
    waits = []
    for _ in range(7):
        with pytest.raises(Throttled) as locked:
            auth.login(username="alice", password="wrong-password")
        waits.append(locked.value.retry_after)
        clock.now += locked.value.retry_after
        _fail(auth, 1)
    assert waits == [30, 60, 120, 240, 480, 900, 900]


def test_a_login_that_gets_in_forgets_the_failures(auth: AuthService) -> None:
    _register(auth)
    _fail(auth, 4)
    auth.login(username="alice", password="pa55word")
    _fail(auth, 4)
    assert auth.login(username="alice", password="pa55word").access_token


def test_failures_are_forgotten_after_a_quiet_window(auth: AuthService, clock: Clock) -> None:
    _register(auth)
    _fail(auth, 4)
    clock.now += 901
    _fail(auth, 4)
    assert auth.login(username="alice", password="pa55word").access_token


def test_unknown_names_are_locked_alike_and_other_names_are_not(auth: AuthService) -> None:
    _register(auth)
    _fail(auth, 5, username="nobody")
    with pytest.raises(Throttled):
        auth.login(username="nobody", password="wrong-password")
    assert auth.login(username="alice", password="pa55word").access_token


def test_a_locked_name_costs_no_bcrypt_check(auth: AuthService,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    _register(auth)
    _fail(auth, 5)
    monkeypatch.setattr(bcrypt, "checkpw", lambda *_: pytest.fail("checked while locked"))
    with pytest.raises(Throttled):
        auth.login(username="alice", password="pa55word")


def test_an_overlong_token_is_refused_unread(auth: AuthService) -> None:
    with pytest.raises(Unauthenticated, match=r"^malformed access token$"):
        auth.verify("e" * 100_000)


# --- properties: any input gets a domain answer, in time linear in its length --------------

FIELD = st.text(max_size=300) | st.sampled_from(["", " ", "alice", "a@b.co", "\u200b", "é" * 40])


@settings(max_examples=300, deadline=200)
@given(username=FIELD, password=FIELD, email=FIELD, name=FIELD)
def test_any_registration_is_answered_with_a_domain_error_or_a_token(
        key: SigningKey, username: str, password: str, email: str, name: str) -> None:
    try:
        issued = _service(key).register(username=username, password=password, email=email,
                                        name=name)
    except DomainError as exc:
        assert len(str(exc)) < 200  # a rule, not an echo of the input
    else:
        assert issued.access_token


@settings(max_examples=300, deadline=200)
@given(username=FIELD, password=FIELD)
def test_any_login_is_answered_with_a_domain_error(key: SigningKey, username: str,
                                                   password: str) -> None:
    with pytest.raises(DomainError) as refused:
        _service(key).login(username=username, password=password)
    assert len(str(refused.value)) < 400  # at most a 32-character name, each escaped as \U...


def _best_seconds(run: Callable[[], object], repeat: int = 5) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        with contextlib.suppress(DomainError):
            run()
        best = min(best, time.perf_counter() - started)
    return best


HOSTILE_FIELDS = {
    # The address that held the service for 18 s: a backtracking pattern over many dots.
    "email": lambda n: {"email": "a@" + "." * n + "@"},
    "username": lambda n: {"username": "u" * n},
    "password": lambda n: {"password": "é" * n},
    "name": lambda n: {"name": "n" * n},
}


@pytest.mark.parametrize("field", sorted(HOSTILE_FIELDS))
def test_refusing_a_long_field_takes_linear_time(auth: AuthService, field: str) -> None:
    """Doubling the input must not quadruple the time (the old email pattern took 4 s for 20 K
    characters and 16 s for 40 K)."""
    def register(n: int) -> Callable[[], object]:
        fields = {"username": "alice", "password": "pa55word", "email": "a@example.com",
                  "name": "Alice", **HOSTILE_FIELDS[field](n)}
        return lambda: auth.register(**fields)

    small, large = _best_seconds(register(20_000)), _best_seconds(register(40_000))
    assert large < 3 * small + 0.002, (small, large)


def test_refusing_a_long_login_takes_linear_time(auth: AuthService) -> None:
    def login(n: int) -> Callable[[], object]:
        return lambda: auth.login(username="u" * n, password="p" * n)

    small, large = _best_seconds(login(500_000)), _best_seconds(login(1_000_000))
    assert large < 3 * small + 0.002, (small, large)
