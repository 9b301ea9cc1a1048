"""Auth use cases: register, log in, refresh and log out (sessions.py keeps the sessions), the
caller's profile, issue and verify access tokens. Plain Python, no gRPC."""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import bcrypt
import jwt

from services.auth import fields
from services.auth.email_address import normalise_email
from services.auth.keys import SigningKey
from services.auth.password_work import PasswordWork
from services.auth.profiles import (
    UserProfile,
    is_disabled,
    profile_of,
    require_enabled,
    role_of,
)
from services.auth.repository import UserExists
from services.auth.sessions import RefreshGrant, Sessions
from services.auth.throttle import LoginThrottle
from services.common.access import require_enabled_admin
from services.common.errors import AlreadyExists, InvalidArgument, NotFound, Unauthenticated
from services.common.tokens import ALGORITHM, USER_ROLE, Caller, TokenVerifier

# Longer than any token this service issues (about 800 characters): not worth decoding.
MAX_TOKEN_CHARS = 8192


class Users(Protocol):
    """The users: UserRepository, or an in-memory fake in the unit tests."""

    def add(self, *, username: str, email: str, name: str, password_hash: bytes) -> str:
        """The new user's id; raises UserExists when the username or the email, compared
        without case, is taken."""
        ...

    def by_username(self, username: str) -> dict[str, Any] | None:
        """The user (`_id`, `username`, `password_hash`...) whatever the case of `username`."""
        ...

    def by_id(self, user_id: str) -> dict[str, Any] | None:
        """The user with this id; None for an id that names no user (or is not an id)."""
        ...


@dataclass(frozen=True)
class IssuedToken:
    access_token: str
    expires_in: int
    refresh_token: str
    refresh_expires_in: int


class AuthService:
    def __init__(
        self,
        users: Users,
        key: SigningKey,
        *,
        sessions: Sessions,
        issuer: str,
        audience: str,
        ttl_seconds: int,
        throttle: LoginThrottle,
        bcrypt_rounds: int = 12,
        password_min_chars: int = 8,
        clock: Callable[[], float] = time.time,
        passwords: PasswordWork | None = None,
    ) -> None:
        self._users = users
        self._key = key
        self._sessions = sessions
        self._clock = clock
        self._issuer = issuer
        self._audience = audience
        self._ttl = ttl_seconds
        self._throttle = throttle
        self._rounds = bcrypt_rounds
        self._password_min_chars = password_min_chars
        self._passwords = passwords or PasswordWork()
        # Checked in place of a stored hash when the name is unknown, so that an unknown name
        # takes as long as a wrong password (5 ms against 250 ms told which names exist).
        self._unknown_user_hash = bcrypt.hashpw(secrets.token_bytes(16),
                                                bcrypt.gensalt(bcrypt_rounds))
        self.verifier = TokenVerifier(lambda: [key.jwk], issuer, audience)

    def register(self, *, username: str, password: str, email: str, name: str) -> IssuedToken:
        username, email, name = username.strip(), email.strip(), name.strip()
        _require({"username": username, "password": password, "email": email, "name": name})
        fields.check_new_username(username)
        fields.check_new_password(password, self._password_min_chars)
        email = normalise_email(email)
        fields.check_display_name(name)
        password_hash = self._passwords.hash(password.encode(), self._rounds)
        try:
            user_id = self._users.add(
                username=username, email=email, name=name, password_hash=password_hash
            )
        except UserExists as exc:
            raise AlreadyExists(f"{exc.field} is already taken") from None
        return self._issue(user_id, username, USER_ROLE, self._sessions.start(user_id))

    def login(self, *, username: str, password: str) -> IssuedToken:
        """Throttled while the username is locked by failed logins, whatever the password.
        A disabled account is refused only once the password is right, so that nobody without
        the password learns that the account is disabled."""
        username = username.strip()
        _require({"username": username, "password": password})
        fields.check_login_username(username)
        fields.check_login_password(password)
        self._throttle.check(username)
        user = self._users.by_username(username)
        stored_hash = self._unknown_user_hash if user is None else user["password_hash"]
        if not self._passwords.check(password.encode(), stored_hash) or user is None:
            self._throttle.failed(username)
            if user is None:  # the contract's 404; the name is at most 32 characters
                raise NotFound(f"no user named {username!r}")
            raise Unauthenticated("wrong password")
        self._throttle.succeeded(username)
        require_enabled(user)
        user_id = str(user["_id"])
        return self._issue(user_id, user["username"], role_of(user),
                           self._sessions.start(user_id))

    def refresh(self, refresh_token: str) -> IssuedToken:
        """A new pair for a refresh token, which is used up. The role comes from the account as
        stored now, so a role change takes effect at the next refresh."""
        user, grant = self._sessions.rotate(refresh_token)
        return self._issue(str(user["_id"]), user["username"], role_of(user), grant)

    def logout(self, refresh_token: str) -> int:
        """Ends the refresh token's session; returns how many sessions ended (0 or 1)."""
        return self._sessions.end(refresh_token)

    def logout_everywhere(self, access_token: str) -> int:
        """Ends every session of the access token's user; returns how many were open."""
        if len(access_token) > MAX_TOKEN_CHARS:
            raise Unauthenticated("malformed access token")
        caller = self.verifier.verify(access_token)
        return self._sessions.end_all(caller.user_id, "logout everywhere")

    def me(self, caller: Caller) -> UserProfile:
        user = self._users.by_id(caller.user_id)
        if user is None:
            raise NotFound("your account no longer exists")
        return profile_of(user)

    def verify(self, token: str) -> tuple[Caller, int]:
        """The token's caller and expiry (unix seconds); Unauthenticated when it is not valid."""
        if not token.strip():
            raise InvalidArgument("token is required")
        if len(token) > MAX_TOKEN_CHARS:
            raise Unauthenticated("malformed access token")
        caller = self.verifier.verify(token.strip())
        claims = jwt.decode(token.strip(), options={"verify_signature": False})
        return caller, int(claims["exp"])

    def account_status(self, user_id: str) -> tuple[bool, str, bool]:
        """(exists, role, disabled) of the account as stored now."""
        user = self._users.by_id(user_id)
        if user is None:
            return False, "", False
        return True, role_of(user), is_disabled(user)

    def confirm_admin(self, caller: Caller) -> None:
        exists, role, disabled = self.account_status(caller.user_id)
        require_enabled_admin(exists=exists, role=role, disabled=disabled)

    def jwks(self) -> list[dict[str, Any]]:
        return [self._key.jwk]

    def _issue(self, user_id: str, username: str, role: str, grant: RefreshGrant
               ) -> IssuedToken:
        now = int(self._clock())
        claims = {
            "sub": user_id,
            "username": username,
            "role": role,
            "sid": grant.session_id,
            "iss": self._issuer,
            "aud": self._audience,
            "iat": now,
            "exp": now + self._ttl,
            "jti": uuid.uuid4().hex,
        }
        token = jwt.encode(claims, self._key.private_key, algorithm=ALGORITHM,
                           headers={"kid": self._key.kid})
        return IssuedToken(access_token=token, expires_in=self._ttl,
                           refresh_token=grant.refresh_token,
                           refresh_expires_in=grant.expires_in)


def _require(fields: dict[str, str]) -> None:
    missing = [name for name, value in fields.items() if not value]
    if missing:
        raise InvalidArgument(f"missing required field{'s' if len(missing) > 1 else ''}: "
                              + ", ".join(missing))
