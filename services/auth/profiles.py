"""A stored user as the API shows it, and what an account's state allows. Users stored before
roles existed have no `role` or `disabled`: they are enabled users."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from services.common.errors import PermissionDenied
from services.common.tokens import USER_ROLE

DISABLED_MESSAGE = "this account is disabled; ask an administrator"


@dataclass(frozen=True)
class UserProfile:
    id: str
    username: str
    email: str
    name: str
    role: str
    created_at: str  # RFC 3339, UTC
    disabled: bool


def role_of(user: dict[str, Any]) -> str:
    return str(user.get("role", USER_ROLE))


def is_disabled(user: dict[str, Any]) -> bool:
    return bool(user.get("disabled", False))


def require_enabled(user: dict[str, Any]) -> None:
    """Raises PermissionDenied for a disabled account: it may not log in or refresh."""
    if is_disabled(user):
        raise PermissionDenied(DISABLED_MESSAGE)


def profile_of(user: dict[str, Any]) -> UserProfile:
    """The profile of a stored user; never its password hash."""
    return UserProfile(id=str(user["_id"]), username=user["username"], email=user["email"],
                       name=user["name"], role=role_of(user),
                       created_at=_rfc3339(user.get("created_at")), disabled=is_disabled(user))


def _rfc3339(when: datetime | None) -> str:
    if when is None:
        return ""
    # Mongo hands back naive datetimes that are UTC.
    aware = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    return aware.isoformat(timespec="milliseconds").replace("+00:00", "Z")
