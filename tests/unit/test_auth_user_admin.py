"""What administrators do with users (list, search, page, change a role, disable), the rule that
an enabled administrator always remains, and the administrator created at start from the
settings."""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import bcrypt
import pytest

from services.auth.admin_account import ensure_admin
from services.auth.repository import UserExists
from services.auth.sessions import Sessions
from services.auth.user_admin import UserAdmin
from services.common.errors import FailedPrecondition, InvalidArgument, NotFound
from tests.unit.fakes import FakeSessionStore, FakeUsers


@pytest.fixture
def users() -> FakeUsers:
    return FakeUsers()


@pytest.fixture
def admin(users: FakeUsers) -> UserAdmin:
    sessions = Sessions(FakeSessionStore(), users, refresh_ttl_seconds=60,
                        session_max_seconds=600, clock=time.time)
    return UserAdmin(users, sessions)


def _add(users: FakeUsers, username: str, role: str = "user") -> str:
    return users.add(username=username, email=f"{username.lower()}@example.com",
                     name=username, password_hash=b"", role=role)


def _list(admin: UserAdmin, **params: object) -> tuple[list[str], str, int]:
    defaults: dict[str, object] = {"page": None, "limit": None, "page_size": 0,
                                   "page_token": "", "search": ""}
    page = admin.list_users(**{**defaults, **params})  # type: ignore[arg-type]
    return [u.username for u in page.users], page.next_page_token, page.total


def test_users_are_listed_in_username_order_without_case(users: FakeUsers,
                                                         admin: UserAdmin) -> None:
    for name in ("carol", "Bob", "alice", "dave"):
        _add(users, name)
    assert _list(admin) == (["alice", "Bob", "carol", "dave"], "", 4)
    assert _list(admin, page=2, limit=3) == (["dave"], "", 4)


def test_page_tokens_continue_after_the_last_user(users: FakeUsers, admin: UserAdmin) -> None:
    for n in range(7):
        _add(users, f"user{n}")
    names, token, total = _list(admin, page_size=3)
    assert (names, total) == (["user0", "user1", "user2"], 7)
    _add(users, "user25")  # registered between two pages: in its place, once
    names, token, _ = _list(admin, page_size=3, page_token=token)
    assert names == ["user25", "user3", "user4"]
    assert _list(admin, page_size=3, page_token=token) == (["user5", "user6"], "", 8)


def test_search_matches_part_of_a_username_or_email_without_case(users: FakeUsers,
                                                                  admin: UserAdmin) -> None:
    _add(users, "Alice")
    _add(users, "malice")
    users.add(username="bob", email="BOB@Wonder.example", name="b", password_hash=b"")
    _add(users, "carol")
    assert _list(admin, search="ALIC") == (["Alice", "malice"], "", 2)
    assert _list(admin, search="wonder") == (["bob"], "", 1)
    assert _list(admin, search=".*") == ([], "", 0)  # matched as text, not as a pattern


@pytest.mark.parametrize(("params", "message"), [
    ({"search": "x" * 101}, "search must be at most 100 characters"),
    ({"search": "x" * 1_000_000}, "search must be at most 100 characters"),
    ({"search": "al\x00ice"}, "search must not contain control or invisible characters"),
    ({"limit": 101}, "limit must be an integer from 1 to 100"),
    ({"page": 0}, "page must be an integer"),
    ({"page_token": "garbage"}, "page_token is not valid"),
    ({"page_token": "e" * 100_000}, "page_token is not valid"),
    ({"page_token": "W1tbW1tbW1tbW1tbXV1dXV1dXV1dXV1d"}, "page_token is not valid"),  # [[[...]]]
    ({"limit": 5, "page_size": 6}, "give one of them"),
])
def test_list_parameters_are_bounded(admin: UserAdmin, params: dict[str, object],
                                     message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        _list(admin, **params)


def test_a_page_token_belongs_to_its_search(users: FakeUsers, admin: UserAdmin) -> None:
    for n in range(3):
        _add(users, f"user{n}")
    _, token, _ = _list(admin, search="user", limit=1)
    with pytest.raises(InvalidArgument, match="another search"):
        _list(admin, search="use", limit=1, page_token=token)


def test_update_changes_what_is_given_and_nothing_else(users: FakeUsers,
                                                       admin: UserAdmin) -> None:
    _add(users, "root", role="admin")
    user_id = _add(users, "alice")
    promoted = admin.update_user(user_id, role="admin", disabled=None)
    assert (promoted.role, promoted.disabled) == ("admin", False)
    disabled = admin.update_user(user_id, role=None, disabled=True)
    assert (disabled.role, disabled.disabled) == ("admin", True)
    assert admin.update_user(user_id, role=None, disabled=None) == disabled
    with pytest.raises(InvalidArgument, match=r"^role must be one of: user, admin$"):
        admin.update_user(user_id, role="superuser", disabled=None)
    for unknown in ("0" * 24, "not-an-id", "x" * 100_000, ""):
        with pytest.raises(NotFound, match=r"^no user has this id$"):
            admin.update_user(unknown, role="user", disabled=None)


@pytest.mark.parametrize("change", [{"role": "user", "disabled": None},
                                    {"role": None, "disabled": True}])
def test_the_last_enabled_admin_cannot_be_removed(users: FakeUsers, admin: UserAdmin,
                                                  change: dict[str, object]) -> None:
    root = _add(users, "root", role="admin")
    other = _add(users, "other", role="admin")
    admin.update_user(other, role=None, disabled=True)  # a disabled admin does not count
    with pytest.raises(FailedPrecondition, match="no enabled administrator"):
        admin.update_user(root, **change)  # type: ignore[arg-type]
    stored = users.by_id(root)
    assert stored is not None and (stored["role"], stored["disabled"]) == ("admin", False)
    admin.update_user(other, role=None, disabled=False)
    admin.update_user(root, **change)  # type: ignore[arg-type]
    assert users.count_enabled_admins() == 1


def test_the_last_two_admins_removed_at_once_stay(users: FakeUsers, admin: UserAdmin) -> None:
    """Both demotions are written before either counts, and both count before either undoes
    (the race the rule must survive): each sees no admin and undoes its own, so neither goes
    through, and there are never zero admins at rest."""
    first, second = _add(users, "first", role="admin"), _add(users, "second", role="admin")
    count, together = users.count_enabled_admins, threading.Barrier(2, timeout=5)

    def count_once_both_wrote() -> int:
        together.wait()
        seen = count()
        together.wait()
        return seen

    def demote(user_id: str) -> str:
        try:
            admin.update_user(user_id, role="user", disabled=None)
        except FailedPrecondition:
            return "refused"
        return "demoted"

    users.count_enabled_admins = count_once_both_wrote  # type: ignore[method-assign]
    with ThreadPoolExecutor(2) as pool:
        assert list(pool.map(demote, [first, second])) == ["refused", "refused"]
    assert count() == 2


# --- the administrator from the settings --------------------------------------------------

def _ensure(users: FakeUsers, password: str = "root-pa55word", **settings: str) -> None:
    ensure_admin(users, username=settings.get("username", "root"),
                 email=settings.get("email", "root@example.com"), password=password,
                 bcrypt_rounds=4, password_min_chars=8)


def test_the_admin_is_created_then_updated(users: FakeUsers,
                                           caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        _ensure(users)
    root = users.by_username("root")
    assert root is not None and root["role"] == "admin"
    assert bcrypt.checkpw(b"root-pa55word", root["password_hash"])
    users.update(root["_id"], {"role": "user", "disabled": True})
    _ensure(users, password="new-pa55word")
    root = users.by_username("ROOT")
    assert root is not None and (root["role"], root["disabled"]) == ("admin", False)
    assert bcrypt.checkpw(b"new-pa55word", root["password_hash"])
    assert "pa55word" not in caplog.text


def test_an_admin_created_by_another_replica_meanwhile_is_updated(users: FakeUsers) -> None:
    class RacingUsers(FakeUsers):
        def add(self, **user: object) -> str:  # type: ignore[override]
            super().add(**user)  # type: ignore[arg-type]  # the other replica, first
            raise UserExists("username")

    racing = RacingUsers()
    _ensure(racing)
    root = racing.by_username("root")
    assert root is not None and root["role"] == "admin"


@pytest.mark.parametrize(("settings", "message"), [
    ({"password": "sh0rt!"}, "MARQUEE_ADMIN_PASSWORD is not usable: password must be at least 8"),
    ({"username": "a b"}, "MARQUEE_ADMIN_USERNAME is not usable"),
    ({"email": "nowhere"}, "MARQUEE_ADMIN_EMAIL is not usable"),
    ({"email": "taken@example.com"}, "MARQUEE_ADMIN_EMAIL 'taken@example.com' belongs to another"),
])
def test_unusable_admin_settings_stop_the_service_saying_which(
        users: FakeUsers, settings: dict[str, str], message: str) -> None:
    users.add(username="someone", email="taken@example.com", name="s", password_hash=b"")
    with pytest.raises(SystemExit, match=message) as stopped:
        _ensure(users, **settings)
    assert "sh0rt!" not in str(stopped.value)
