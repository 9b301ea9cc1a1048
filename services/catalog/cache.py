"""Repeated browse queries served from Redis. Every import bumps a catalog version that is part
of each key, so a change to the movies invalidates all cached pages at once; old entries expire
on their own. When Redis is unreachable the catalog answers from the database.

The cache shares Redis with the job queue, so what it may take is bounded twice: a page over
`max_page_bytes` is not cached (it is answered all the same), and Redis runs with a maxmemory
and the `volatile-lru` policy, which evicts only keys with a TTL. Every page has one; the job
queue's keys and `catalog:version` have none, so they are never evicted to make room for pages
(REDIS_MAXMEMORY_BYTES; devstack/stack.py, docker-compose.yml)."""

from __future__ import annotations

import hashlib
import logging

import redis

log = logging.getLogger(__name__)

VERSION_KEY = "catalog:version"


class QueryCache:
    def __init__(self, client: redis.Redis, ttl_seconds: int = 300,
                 max_page_bytes: int = 1 << 20) -> None:
        self._redis = client
        self._ttl = ttl_seconds
        self._max_page_bytes = max_page_bytes

    def _key(self, query: str) -> str | None:
        try:
            version = int(self._redis.get(VERSION_KEY) or 0)
        except redis.RedisError as exc:
            log.warning("query cache unavailable", extra={"error": str(exc)})
            return None
        return f"catalog:page:{version}:{hashlib.sha1(query.encode()).hexdigest()}"

    def get(self, query: str) -> tuple[str | None, bytes | None]:
        """(the key to store the answer under, the cached answer if any)."""
        key = self._key(query)
        if key is None:
            return None, None
        try:
            return key, self._redis.get(key)  # type: ignore[return-value]
        except redis.RedisError:
            return key, None

    def put(self, key: str | None, value: bytes) -> None:
        if key is None or len(value) > self._max_page_bytes:
            return
        try:
            self._redis.set(key, value, ex=self._ttl)
        except redis.RedisError as exc:
            log.warning("query cache unavailable", extra={"error": str(exc)})

    def invalidate(self) -> None:
        try:
            self._redis.incr(VERSION_KEY)
        except redis.RedisError as exc:
            # Entries keyed by the old version would be served until they expire: say so.
            log.error("query cache not invalidated; stale pages possible until they expire",
                      extra={"error": str(exc), "ttl_seconds": self._ttl})
