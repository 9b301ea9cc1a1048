"""The users collection: the only code that knows how users are stored."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from bson import ObjectId
from pymongo import ASCENDING, ReturnDocument
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError


class UserExists(Exception):
    """The username or the email (`field`) belongs to a user already."""

    def __init__(self, field: str) -> None:
        super().__init__(field)
        self.field = field


class UserRepository:
    def __init__(self, db: Database) -> None:
        self._users = db["auth_users"]

    def ensure_indexes(self) -> None:
        # Unique indexes make the database, not a read-then-write check, decide a race.
        self._users.create_index([("username_key", ASCENDING)], unique=True, name="username_unique")
        self._users.create_index([("email_key", ASCENDING)], unique=True, name="email_unique")

    def add(self, *, username: str, email: str, name: str, password_hash: bytes) -> str:
        """Returns the new user's id; raises UserExists when the username or email (either
        compared without case) is taken."""
        doc = {
            "username": username,
            "username_key": username.lower(),
            "email": email,
            "email_key": email.lower(),
            "name": name,
            "password_hash": password_hash,
            "created_at": datetime.now(UTC),
        }
        try:
            return str(self._users.insert_one(doc).inserted_id)
        except DuplicateKeyError as exc:
            # The error names the unique index that refused the user.
            raise UserExists("email" if "email" in str(exc) else "username") from None

    def by_username(self, username: str) -> dict[str, Any] | None:
        return self._users.find_one({"username_key": username.lower()})

    def by_id(self, user_id: str) -> dict[str, Any] | None:
        if not ObjectId.is_valid(user_id):
            return None
        return self._users.find_one({"_id": ObjectId(user_id)})


class LoginFailureRepository:
    """Failed logins per username (lower case), for the login throttle. A record keeps its
    count, the end of its lock (unix seconds) and `expires_at`, when it is forgotten: a later
    failure starts again from zero, and a TTL index deletes it."""

    def __init__(self, db: Database) -> None:
        self._failures = db["auth_login_failures"]

    def ensure_indexes(self) -> None:
        self._failures.create_index([("expires_at", ASCENDING)], expireAfterSeconds=0,
                                    name="expires")

    def locked_until(self, key: str) -> float | None:
        doc = self._failures.find_one({"_id": key}, {"locked_until": 1})
        return None if doc is None else doc.get("locked_until")

    def add_failure(self, key: str, now: float, forget_at: float) -> int:
        # The TTL monitor runs only every minute: an expired record is dropped here first.
        self._failures.delete_one({"_id": key, "expires_at": {"$lt": _date(now)}})
        update = {"$inc": {"failures": 1}, "$max": {"expires_at": _date(forget_at)}}
        try:
            return self._count(key, update)
        except DuplicateKeyError:  # another replica created the record first: count on it
            return self._count(key, update)

    def lock(self, key: str, until: float, forget_at: float) -> None:
        self._failures.update_one(
            {"_id": key}, {"$max": {"locked_until": until, "expires_at": _date(forget_at)}})

    def clear(self, key: str) -> None:
        self._failures.delete_one({"_id": key})

    def _count(self, key: str, update: dict[str, Any]) -> int:
        doc = self._failures.find_one_and_update(
            {"_id": key}, update, upsert=True, return_document=ReturnDocument.AFTER)
        assert doc is not None  # an upsert returning the document after it always has one
        return int(doc["failures"])


def _date(unix_seconds: float) -> datetime:
    return datetime.fromtimestamp(unix_seconds, UTC)
