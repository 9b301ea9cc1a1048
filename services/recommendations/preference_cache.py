"""Users' preferences read through Redis (`recommendations:prefs:<user id>`), so that a cached
`GET /recommendations` does not wait on the database.

MongoDB stays the record; Redis holds a copy with its version, written only when it is newer
than the copy there (one Lua script), so a reader that loaded an older version from MongoDB
cannot overwrite a newer one a save just wrote. A save deletes the copy before it writes MongoDB
and puts the new one after: a save cut off between the two leaves no copy, and the next read
loads MongoDB's. (Only a crash after another reader has re-filled the copy from MongoDB, and
before the save puts the new one, could leave the old version there, for at most TTL_SECONDS.)
When Redis cannot be reached, preferences are read from MongoDB."""

from __future__ import annotations

import json
import logging
from typing import Any

import redis

from services.common.errors import Unavailable
from services.recommendations.repository import PreferenceRepository

log = logging.getLogger(__name__)

PREFIX = "recommendations:prefs:"
TTL_SECONDS = 300
# Sets the copy (ARGV[1], whose version is ARGV[2]) unless the one there is newer.
_PUT_IF_NEWER = """
local current = redis.call('get', KEYS[1])
if current and cjson.decode(current)['version'] > tonumber(ARGV[2]) then return 0 end
redis.call('set', KEYS[1], ARGV[1], 'EX', ARGV[3])
return 1
"""


class CachedPreferences:
    def __init__(self, records: PreferenceRepository, client: redis.Redis) -> None:
        self._records = records
        self._redis = client

    def get(self, user_id: str) -> tuple[dict[str, Any], int]:
        try:
            raw = self._redis.get(PREFIX + user_id)
        except redis.RedisError as exc:
            log.warning("preference cache unavailable", extra={"error": str(exc)})
            return self._records.get(user_id)
        if raw is not None:
            copy = json.loads(raw)  # type: ignore[arg-type]
            return copy["preferences"], int(copy["version"])
        preferences, version = self._records.get(user_id)
        self._put(user_id, preferences, version)
        return preferences, version

    def save(self, user_id: str, preferences: dict[str, Any]) -> int:
        try:
            self._redis.delete(PREFIX + user_id)
        except redis.RedisError as exc:
            # A save that could not retire the copy must not succeed: reads would miss it.
            raise Unavailable("the preferences cannot be saved right now; try again") from exc
        version = self._records.save(user_id, preferences)
        self._put(user_id, preferences, version)
        return version

    def _put(self, user_id: str, preferences: dict[str, Any], version: int) -> None:
        copy = json.dumps({"preferences": preferences, "version": version})
        try:
            self._redis.eval(_PUT_IF_NEWER, 1, PREFIX + user_id, copy, version, TTL_SECONDS)
        except redis.RedisError as exc:
            log.warning("preference cache unavailable", extra={"error": str(exc)})
