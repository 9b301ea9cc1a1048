"""Sessions and their rotating refresh tokens. Plain Python, no gRPC, no Mongo.

A login starts a session, which lasts at most `session_max_seconds` from then. Each refresh
token is random, stored only as its SHA-256, works once and lives `refresh_ttl_seconds` (never
past its session's end). A refresh uses the token up and hands out the session's next one.
A used token presented again is what a stolen copy looks like, whichever of the two holders
presents it: the whole session ends, so the token the other holder got from it stops working
too (the OAuth 2.0 security BCP's reuse detection), and the event is logged. Two refreshes with
one token at once are decided by the store's atomic `use_token`: one gets the next token, the
other counts as a reuse. Records of used tokens are kept until their session's end, so a reuse
is recognised for as long as the session could have lasted.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn, Protocol

from services.auth.profiles import require_enabled
from services.common.errors import InvalidArgument, Unauthenticated
from services.common.ids import random_id

log = logging.getLogger(__name__)

# A token this service issues is 43 characters; a longer one is refused unread.
MAX_REFRESH_TOKEN_CHARS = 256
REFRESH_TOKEN_BYTES = 32


@dataclass(frozen=True)
class Session:
    id: str
    user_id: str
    ends_at: float  # unix seconds: the absolute end
    ended: bool  # logged out, revoked on reuse, or its user disabled


@dataclass(frozen=True)
class RefreshToken:
    token_hash: str
    session_id: str
    user_id: str
    expires_at: float  # unix seconds
    used: bool


@dataclass(frozen=True)
class RefreshGrant:
    refresh_token: str
    expires_in: int
    session_id: str


class SessionStore(Protocol):
    """Sessions and refresh tokens: SessionRepository, or an in-memory fake in the unit tests.
    Times are unix seconds."""

    def start(self, session_id: str, user_id: str, now: float, ends_at: float) -> None: ...

    def get(self, session_id: str) -> Session | None: ...

    def end(self, session_id: str, now: float, reason: str) -> bool:
        """Ends the session; False when it had ended already (or is unknown)."""
        ...

    def end_all(self, user_id: str, now: float, reason: str) -> int:
        """Ends every session of the user still open; returns how many."""
        ...

    def add_token(self, token_hash: str, session_id: str, user_id: str, expires_at: float,
                  keep_until: float) -> None: ...

    def token(self, token_hash: str) -> RefreshToken | None: ...

    def use_token(self, token_hash: str, now: float) -> bool:
        """Marks the token used, atomically: True for exactly one caller, however many race."""
        ...


class SessionUsers(Protocol):
    def by_id(self, user_id: str) -> dict[str, Any] | None: ...


class Sessions:
    def __init__(self, store: SessionStore, users: SessionUsers, *, refresh_ttl_seconds: int,
                 session_max_seconds: int, clock: Callable[[], float]) -> None:
        self._store = store
        self._users = users
        self._ttl = refresh_ttl_seconds
        self._max = session_max_seconds
        self._clock = clock

    def start(self, user_id: str) -> RefreshGrant:
        now = self._clock()
        session_id = random_id()
        ends_at = now + self._max
        self._store.start(session_id, user_id, now, ends_at)
        return self._grant(session_id, user_id, now, ends_at)

    def rotate(self, raw_token: str) -> tuple[dict[str, Any], RefreshGrant]:
        """The token's user (as stored now, for the access token's claims) and the session's
        next refresh token. Unauthenticated when the token or its session no longer works,
        PermissionDenied when the user is disabled."""
        token = self._known(raw_token)
        if token.used:
            self._reused(token)
        user = self._users.by_id(token.user_id)
        if user is None:
            raise Unauthenticated("this account no longer exists")
        require_enabled(user)
        now = self._clock()
        session = self._live_session(token.session_id, now)
        if token.expires_at <= now:
            raise Unauthenticated("refresh token expired; log in again")
        if not self._store.use_token(token.token_hash, now):
            self._reused(token)  # a refresh with the same token got there first
        return user, self._grant(session.id, session.user_id, now, session.ends_at)

    def end(self, raw_token: str) -> int:
        """Ends the token's session (logout); how many sessions that ended, 0 or 1."""
        token = self._known(raw_token)
        if token.used:
            self._reused(token)
        return int(self._store.end(token.session_id, self._clock(), "logout"))

    def end_all(self, user_id: str, reason: str) -> int:
        return self._store.end_all(user_id, self._clock(), reason)

    def _known(self, raw_token: str) -> RefreshToken:
        if len(raw_token) > MAX_REFRESH_TOKEN_CHARS:
            raise InvalidArgument(
                f"refresh_token must be at most {MAX_REFRESH_TOKEN_CHARS} characters: send the "
                "refresh_token that login, register or refresh returned")
        raw_token = raw_token.strip()
        if not raw_token:
            raise InvalidArgument("refresh_token is required")
        token = self._store.token(_hash(raw_token))
        if token is None:
            raise Unauthenticated("refresh token is not valid or its session is over; log in "
                                  "again")
        return token

    def _live_session(self, session_id: str, now: float) -> Session:
        session = self._store.get(session_id)
        if session is None or session.ended:
            raise Unauthenticated("this session has ended (logged out or revoked); log in again")
        if session.ends_at <= now:
            raise Unauthenticated(f"this session reached its maximum lifetime ({self._max} "
                                  "seconds from the login); log in again")
        return session

    def _reused(self, token: RefreshToken) -> NoReturn:
        self._store.end(token.session_id, self._clock(), "refresh token reused")
        log.warning("security event: a used refresh token was presented again; its session is "
                    "revoked", extra={"event": "refresh_token_reuse", "user_id": token.user_id,
                                      "session_id": token.session_id})
        raise Unauthenticated("this refresh token was already used, so its session has been "
                              "ended for safety; log in again")

    def _grant(self, session_id: str, user_id: str, now: float, ends_at: float) -> RefreshGrant:
        raw_token = secrets.token_urlsafe(REFRESH_TOKEN_BYTES)
        expires_at = min(now + self._ttl, ends_at)
        self._store.add_token(_hash(raw_token), session_id, user_id, expires_at,
                              keep_until=ends_at)
        return RefreshGrant(refresh_token=raw_token, expires_in=int(expires_at - now),
                            session_id=session_id)


def _hash(raw_token: str) -> str:
    return hashlib.sha256(raw_token.encode()).hexdigest()
