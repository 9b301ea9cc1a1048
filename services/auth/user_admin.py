"""What administrators do with users: list and search them, change a role, disable an account.
Plain Python, no gRPC. The caller is an enabled administrator by the time these run (the access
interceptor confirms it with the stored account)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from services.auth.profiles import UserProfile, is_disabled, profile_of, role_of
from services.auth.sessions import Sessions
from services.auth.user_pages import UserListQuery, encode_token, list_query
from services.common.errors import FailedPrecondition, InvalidArgument, NotFound
from services.common.tokens import ADMIN_ROLE, ROLES


class AdminUsers(Protocol):
    """The users: UserRepository, or an in-memory fake in the unit tests."""

    def by_id(self, user_id: str) -> dict[str, Any] | None: ...

    def update(self, user_id: str, changes: dict[str, Any]) -> dict[str, Any] | None:
        """Sets the fields; returns the user as it was before, None for an unknown id."""
        ...

    def count_enabled_admins(self) -> int: ...

    def page(self, query: UserListQuery) -> list[dict[str, Any]]:
        """Up to query.limit users matching query.search, after query.after or skipping
        query.skip, in username order (without case)."""
        ...

    def count(self, search: str) -> int: ...


@dataclass(frozen=True)
class UserPage:
    users: list[UserProfile]
    next_page_token: str
    total: int


class UserAdmin:
    def __init__(self, users: AdminUsers, sessions: Sessions) -> None:
        self._users = users
        self._sessions = sessions

    def list_users(self, *, page: int | None, limit: int | None, page_size: int,
                   page_token: str, search: str) -> UserPage:
        query = list_query(page=page, limit=limit, page_size=page_size, page_token=page_token,
                           search=search)
        # One more than the page holds tells whether there is a next page.
        found = self._users.page(UserListQuery(search=query.search, limit=query.limit + 1,
                                               skip=query.skip, after=query.after))
        users = found[:query.limit]
        next_token = (encode_token(query.search, users[-1]["username_key"])
                      if len(found) > query.limit else "")
        return UserPage(users=[profile_of(u) for u in users], next_page_token=next_token,
                        total=self._users.count(query.search))

    def update_user(self, user_id: str, *, role: str | None, disabled: bool | None
                    ) -> UserProfile:
        """Changes what is given. Disabling ends the user's sessions. FailedPrecondition when
        the change would leave no enabled administrator."""
        if role is not None and role not in ROLES:
            raise InvalidArgument(f"role must be one of: {', '.join(ROLES)}")
        changes: dict[str, Any] = {}
        if role is not None:
            changes["role"] = role
        if disabled is not None:
            changes["disabled"] = disabled
        before = self._users.update(user_id, changes) if changes else self._users.by_id(user_id)
        if before is None:
            raise NotFound("no user has this id")
        after = {**before, **changes}
        if _enabled_admin(before) and not _enabled_admin(after):
            self._keep_an_admin(user_id, before, changes)
        if changes.get("disabled"):
            self._sessions.end_all(user_id, "disabled by an administrator")
        return profile_of(after)

    def _keep_an_admin(self, user_id: str, before: dict[str, Any],
                       changes: dict[str, Any]) -> None:
        """Undoes the change if it left no enabled administrator. Each change is written before
        the count is read, so when the last two admins are demoted at once, whichever counts
        last sees both changes and undoes its own: there are never zero at rest."""
        if self._users.count_enabled_admins() > 0:
            return
        previous = {"role": role_of(before), "disabled": is_disabled(before)}
        self._users.update(user_id, {name: previous[name] for name in changes})
        raise FailedPrecondition("this would leave no enabled administrator: make another user "
                                 "an administrator first")


def _enabled_admin(user: dict[str, Any]) -> bool:
    return role_of(user) == ADMIN_ROLE and not is_disabled(user)
