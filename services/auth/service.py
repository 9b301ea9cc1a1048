"""Auth use cases: register, log in, issue and verify access tokens. Plain Python, no gRPC."""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass
from typing import Any

import bcrypt
import jwt

from services.auth.keys import SigningKey
from services.auth.repository import DuplicateKeyError, UserRepository
from services.common.errors import AlreadyExists, InvalidArgument, NotFound, Unauthenticated
from services.common.tokens import ALGORITHM, Caller, TokenVerifier

USERNAME = re.compile(r"^[A-Za-z0-9_.-]{3,32}$")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
MIN_PASSWORD = 6
MAX_PASSWORD_BYTES = 72  # bcrypt uses only the first 72 bytes; refuse rather than truncate


@dataclass(frozen=True)
class IssuedToken:
    access_token: str
    expires_in: int


class AuthService:
    def __init__(
        self,
        users: UserRepository,
        key: SigningKey,
        *,
        issuer: str,
        audience: str,
        ttl_seconds: int,
        bcrypt_rounds: int = 12,
    ) -> None:
        self._users = users
        self._key = key
        self._issuer = issuer
        self._audience = audience
        self._ttl = ttl_seconds
        self._rounds = bcrypt_rounds
        self.verifier = TokenVerifier(lambda: [key.jwk], issuer, audience)

    def register(self, *, username: str, password: str, email: str, name: str) -> IssuedToken:
        username, email, name = username.strip(), email.strip(), name.strip()
        _require({"username": username, "password": password, "email": email, "name": name})
        if not USERNAME.match(username):
            raise InvalidArgument(
                "username must be 3-32 characters: letters, digits, '_', '.' or '-'"
            )
        if len(password) < MIN_PASSWORD:
            raise InvalidArgument(f"password must be at least {MIN_PASSWORD} characters")
        if len(password.encode()) > MAX_PASSWORD_BYTES:
            raise InvalidArgument(f"password must be at most {MAX_PASSWORD_BYTES} bytes")
        if not EMAIL.match(email) or len(email) > 254:
            raise InvalidArgument("email must be an address like name@example.com")
        if len(name) > 200:
            raise InvalidArgument("name must be at most 200 characters")
        password_hash = bcrypt.hashpw(password.encode(), bcrypt.gensalt(self._rounds))
        try:
            user_id = self._users.add(
                username=username, email=email, name=name, password_hash=password_hash
            )
        except DuplicateKeyError as exc:
            field = "email" if "email" in str(exc) else "username"
            raise AlreadyExists(f"{field} is already taken") from None
        return self._issue(user_id, username)

    def login(self, *, username: str, password: str) -> IssuedToken:
        _require({"username": username.strip(), "password": password})
        user = self._users.by_username(username.strip())
        if user is None:
            raise NotFound(f"no user named {username.strip()!r}")
        if not bcrypt.checkpw(password.encode(), user["password_hash"]):
            raise Unauthenticated("wrong password")
        return self._issue(str(user["_id"]), user["username"])

    def verify(self, token: str) -> tuple[Caller, int]:
        """The token's caller and expiry (unix seconds); Unauthenticated when it is not valid."""
        if not token.strip():
            raise InvalidArgument("token is required")
        caller = self.verifier.verify(token.strip())
        claims = jwt.decode(token.strip(), options={"verify_signature": False})
        return caller, int(claims["exp"])

    def jwks(self) -> list[dict[str, Any]]:
        return [self._key.jwk]

    def _issue(self, user_id: str, username: str) -> IssuedToken:
        now = int(time.time())
        claims = {
            "sub": user_id,
            "username": username,
            "iss": self._issuer,
            "aud": self._audience,
            "iat": now,
            "exp": now + self._ttl,
            "jti": uuid.uuid4().hex,
        }
        token = jwt.encode(claims, self._key.private_key, algorithm=ALGORITHM,
                           headers={"kid": self._key.kid})
        return IssuedToken(access_token=token, expires_in=self._ttl)


def _require(fields: dict[str, str]) -> None:
    missing = [name for name, value in fields.items() if not value]
    if missing:
        raise InvalidArgument(f"missing required field{'s' if len(missing) > 1 else ''}: "
                              + ", ".join(missing))
