"""The users collection: the only code that knows how users are stored."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pymongo import ASCENDING
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError


class UserRepository:
    def __init__(self, db: Database) -> None:
        self._users = db["auth_users"]

    def ensure_indexes(self) -> None:
        # Unique indexes make the database, not a read-then-write check, decide a race.
        self._users.create_index([("username_key", ASCENDING)], unique=True, name="username_unique")
        self._users.create_index([("email_key", ASCENDING)], unique=True, name="email_unique")

    def add(self, *, username: str, email: str, name: str, password_hash: bytes) -> str:
        """Returns the new user's id; raises DuplicateKeyError naming the taken field."""
        doc = {
            "username": username,
            "username_key": username.lower(),
            "email": email,
            "email_key": email.lower(),
            "name": name,
            "password_hash": password_hash,
            "created_at": datetime.now(UTC),
        }
        return str(self._users.insert_one(doc).inserted_id)

    def by_username(self, username: str) -> dict[str, Any] | None:
        return self._users.find_one({"username_key": username.lower()})


__all__ = ["DuplicateKeyError", "UserRepository"]
