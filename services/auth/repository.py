"""The auth service's collections: the only code that knows how users, failed logins, sessions
and refresh tokens are stored."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from bson import ObjectId
from pymongo import ASCENDING, ReturnDocument
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from services.auth.sessions import RefreshToken, Session
from services.auth.user_pages import UserListQuery
from services.common.tokens import ADMIN_ROLE, USER_ROLE

# What a user listing shows; never the password hash.
_PROFILE_FIELDS = {"username": 1, "email": 1, "name": 1, "role": 1, "disabled": 1,
                   "created_at": 1, "username_key": 1}


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

    def add(self, *, username: str, email: str, name: str, password_hash: bytes,
            role: str = USER_ROLE) -> str:
        """Returns the new user's id; raises UserExists when the username or email (either
        compared without case) is taken."""
        doc = {
            "username": username,
            "username_key": username.lower(),
            "email": email,
            "email_key": email.lower(),
            "name": name,
            "password_hash": password_hash,
            "role": role,
            "disabled": False,
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

    def make_admin(self, username: str, password_hash: bytes) -> bool:
        """Makes the user of this name (any case) an enabled administrator with this password;
        False when there is none."""
        result = self._users.update_one(
            {"username_key": username.lower()},
            {"$set": {"password_hash": password_hash, "role": ADMIN_ROLE, "disabled": False}})
        return result.matched_count == 1

    def update(self, user_id: str, changes: dict[str, Any]) -> dict[str, Any] | None:
        """Sets `changes` (role, disabled) on the user; returns the user as it was before, or
        None when no user has this id."""
        if not ObjectId.is_valid(user_id):
            return None
        return self._users.find_one_and_update({"_id": ObjectId(user_id)}, {"$set": changes},
                                               return_document=ReturnDocument.BEFORE)

    def count_enabled_admins(self) -> int:
        return self._users.count_documents({"role": ADMIN_ROLE, "disabled": {"$ne": True}})

    def page(self, query: UserListQuery) -> list[dict[str, Any]]:
        """Up to query.limit users in username order (username_key is unique: a stable order)."""
        where = _matching(query.search)
        if query.after is not None:
            where = {**where, "username_key": {"$gt": query.after}}
        cursor = self._users.find(where, _PROFILE_FIELDS).sort("username_key", ASCENDING)
        return list(cursor.skip(query.skip).limit(query.limit))

    def count(self, search: str) -> int:
        return self._users.count_documents(_matching(search))


def _matching(search: str) -> dict[str, Any]:
    """Users whose username or email contains `search` (lower case): the keys are lower-cased
    copies, so no case-insensitive regex is needed, and the text is escaped, so it is matched
    as it is, never run as a pattern."""
    if not search:
        return {}
    pattern = {"$regex": re.escape(search)}
    return {"$or": [{"username_key": pattern}, {"email_key": pattern}]}


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


class SessionRepository:
    """Sessions (`auth_sessions`) and their refresh tokens (`auth_refresh_tokens`, by the
    token's SHA-256). Both are kept until the session's absolute end, when a TTL index deletes
    them: a used token's record must outlive it to recognise a reuse for as long as the session
    could have lasted."""

    def __init__(self, db: Database) -> None:
        self._sessions = db["auth_sessions"]
        self._tokens = db["auth_refresh_tokens"]

    def ensure_indexes(self) -> None:
        self._sessions.create_index([("user_id", ASCENDING)], name="by_user")
        self._sessions.create_index([("ends_at", ASCENDING)], expireAfterSeconds=0,
                                    name="expires")
        self._tokens.create_index([("keep_until", ASCENDING)], expireAfterSeconds=0,
                                  name="expires")

    def start(self, session_id: str, user_id: str, now: float, ends_at: float) -> None:
        self._sessions.insert_one({"_id": session_id, "user_id": user_id,
                                   "created_at": _date(now), "ends_at": _date(ends_at),
                                   "ended_at": None})

    def get(self, session_id: str) -> Session | None:
        doc = self._sessions.find_one({"_id": session_id})
        if doc is None:
            return None
        return Session(id=doc["_id"], user_id=doc["user_id"], ends_at=_unix(doc["ends_at"]),
                       ended=doc.get("ended_at") is not None)

    def end(self, session_id: str, now: float, reason: str) -> bool:
        result = self._sessions.update_one({"_id": session_id, "ended_at": None},
                                           _ending(now, reason))
        return result.modified_count == 1

    def end_all(self, user_id: str, now: float, reason: str) -> int:
        result = self._sessions.update_many({"user_id": user_id, "ended_at": None},
                                            _ending(now, reason))
        return result.modified_count

    def add_token(self, token_hash: str, session_id: str, user_id: str, expires_at: float,
                  keep_until: float) -> None:
        self._tokens.insert_one({"_id": token_hash, "session_id": session_id, "user_id": user_id,
                                 "expires_at": _date(expires_at), "keep_until": _date(keep_until),
                                 "used": False})

    def token(self, token_hash: str) -> RefreshToken | None:
        doc = self._tokens.find_one({"_id": token_hash})
        if doc is None:
            return None
        return RefreshToken(token_hash=doc["_id"], session_id=doc["session_id"],
                            user_id=doc["user_id"], expires_at=_unix(doc["expires_at"]),
                            used=bool(doc["used"]))

    def use_token(self, token_hash: str, now: float) -> bool:
        # One conditional update: the database lets exactly one of racing refreshes match.
        result = self._tokens.update_one({"_id": token_hash, "used": False},
                                         {"$set": {"used": True, "used_at": _date(now)}})
        return result.modified_count == 1


def _ending(now: float, reason: str) -> dict[str, Any]:
    return {"$set": {"ended_at": _date(now), "end_reason": reason}}


def _date(unix_seconds: float) -> datetime:
    return datetime.fromtimestamp(unix_seconds, UTC)


def _unix(date: datetime) -> float:
    """Unix seconds of a date the database handed back (naive, in UTC)."""
    return date.replace(tzinfo=UTC).timestamp()
