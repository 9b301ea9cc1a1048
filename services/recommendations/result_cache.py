"""The recommendations' Redis keys: each computed list (`recommendations:result:<key>`, with a
TTL), and the claim that makes one request, of any number alike, start its computation
(`recommendations:claim:<key>` -> the run id, set only if absent, so that it is decided by
Redis in one step and not by a read followed by a write).

The key is a digest of the user, the criteria, the limit, and the versions of the three inputs
(the user's preferences, the user's votes, the catalog): a change to any of them makes a new
key, so an old result is never read again and simply expires."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import redis

from services.common.errors import Unavailable
from services.recommendations.criteria import Criteria

PREFIX = "recommendations:"
# Delete the claim only while it still names this run (a later run may hold it by now).
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) " \
           "else return 0 end"


def cache_key(user_id: str, criteria: Criteria, limit: int,
              versions: tuple[int, str, int]) -> str:
    """The digest of everything a result depends on; `versions` are (preferences, votes,
    catalog)."""
    text = json.dumps({"user": user_id, "criteria": criteria.as_key(), "limit": limit,
                       "versions": list(versions)}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


class ResultCache:
    def __init__(self, client: redis.Redis, ttl_seconds: int, claim_seconds: int) -> None:
        self._redis = client
        self._ttl = ttl_seconds
        self._claim_seconds = claim_seconds

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except redis.RedisError as exc:
            raise Unavailable(f"the recommendations cache cannot be reached ({what})") from exc

    def get(self, key: str) -> list[dict[str, Any]] | None:
        raw = self._call("read", self._redis.get, f"{PREFIX}result:{key}")
        return None if raw is None else list(json.loads(raw))

    def put(self, key: str, recommendations: list[dict[str, Any]]) -> None:
        self._call("write", self._redis.set, f"{PREFIX}result:{key}",
                   json.dumps(recommendations, separators=(",", ":")), ex=self._ttl)

    def claim(self, key: str, run_id: str) -> bool:
        """Whether this run is now the one computing `key` (it expires, so that a run lost to
        a crash does not hold the key for ever)."""
        return bool(self._call("claim", self._redis.set, f"{PREFIX}claim:{key}", run_id,
                               nx=True, ex=self._claim_seconds))

    def claimant(self, key: str) -> str | None:
        raw = self._call("claim", self._redis.get, f"{PREFIX}claim:{key}")
        return None if raw is None else raw.decode() if isinstance(raw, bytes) else str(raw)

    def release(self, key: str, run_id: str) -> None:
        self._call("release", self._redis.eval, _RELEASE, 1, f"{PREFIX}claim:{key}", run_id)
