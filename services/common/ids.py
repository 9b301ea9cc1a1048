"""Ids of the records users name in URLs (tasks, files, ratings): 128 random bits, so that
knowing one id tells nothing about any other. Mongo's ObjectIds count up (a timestamp, a
per-process value and a counter), so the next user's task id was one more than yours."""

from __future__ import annotations

import secrets

RANDOM_ID_BYTES = 16


def random_id() -> str:
    """32 lower-case hex digits from the OS's cryptographic random source."""
    return secrets.token_hex(RANDOM_ID_BYTES)
