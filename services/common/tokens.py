"""Access-token verification with the auth service's public keys (JWKS), shared by every service."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt

from services.common.errors import Unauthenticated

ALGORITHM = "RS256"


# The roles an access token's `role` claim may name.
USER_ROLE = "user"
ADMIN_ROLE = "admin"
ROLES = (USER_ROLE, ADMIN_ROLE)


@dataclass(frozen=True)
class Caller:
    user_id: str
    username: str
    role: str = USER_ROLE
    # The session (`sid` claim) whose refresh token this access token came with.
    session_id: str = ""

    @property
    def is_admin(self) -> bool:
        return self.role == ADMIN_ROLE


class TokenVerifier:
    """Verifies RS256 access tokens against a JWKS that `fetch_jwks` returns.

    Keys are cached; an unknown `kid` (a rotated key) triggers one refetch, at most every
    `refetch_interval` seconds, so a flood of bad tokens cannot hammer the auth service.
    """

    def __init__(
        self,
        fetch_jwks: Callable[[], list[dict[str, Any]]],
        issuer: str,
        audience: str,
        refetch_interval: float = 10.0,
    ) -> None:
        self._fetch_jwks = fetch_jwks
        self._issuer = issuer
        self._audience = audience
        self._refetch_interval = refetch_interval
        self._keys: dict[str, Any] = {}
        self._fetched_at = float("-inf")
        self._lock = threading.Lock()

    def _key(self, kid: str) -> Any:
        with self._lock:
            stale = time.monotonic() - self._fetched_at > self._refetch_interval
            if kid not in self._keys and stale:
                self._fetched_at = time.monotonic()
                self._keys = {k["kid"]: jwt.PyJWK(k).key for k in self._fetch_jwks()}
            return self._keys.get(kid)

    def verify(self, token: str) -> Caller:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Unauthenticated("malformed access token") from None
        if header.get("alg") != ALGORITHM:
            raise Unauthenticated(f"access token must be signed with {ALGORITHM}")
        key = self._key(str(header.get("kid", "")))
        if key is None:
            raise Unauthenticated("access token signed by an unknown key")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                issuer=self._issuer,
                audience=self._audience,
                options={"require": ["exp", "iat", "sub", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("access token expired; log in again") from None
        except jwt.PyJWTError as exc:
            raise Unauthenticated(f"invalid access token: {exc}") from None
        role = claims.get("role", USER_ROLE)
        if role not in ROLES:
            raise Unauthenticated(f"invalid access token: unknown role {str(role)[:20]!r}")
        return Caller(user_id=claims["sub"], username=claims.get("username", ""), role=role,
                      session_id=str(claims.get("sid", "")))


def bearer_token(metadata: dict[str, str]) -> str:
    header = metadata.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("missing bearer token: send 'authorization: Bearer <access_token>'")
    return token.strip()
