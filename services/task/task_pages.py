"""Pages of a user's task list, newest first on (created_at, created_ns, _id): the contract's
`page`/`limit` (skip), and AIP-158's `page_size`/`page_token` (keyset: "after this task", so a
task created between two pages neither repeats nor hides a row, and deep pages cost no skip)."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.common.errors import InvalidArgument
from services.task.records import Task

MAX_PAGE = 1_000_000
# A token this service writes is about 150 characters; a longer one is refused unread.
MAX_TOKEN_CHARS = 1024
_TOKEN_KEYS = {"t", "n", "id"}
_MAX_ID_CHARS = 64  # task ids are 32 hex digits (24 for tasks from before random ids)


@dataclass(frozen=True)
class Position:
    """Where a page ended: its last task's place in the order."""

    created_at: datetime
    created_ns: int | None
    task_id: str


@dataclass(frozen=True)
class TaskListQuery:
    limit: int
    skip: int = 0
    after: Position | None = None


def list_query(*, page: int | None, limit: int | None, page_size: int, page_token: str,
               default_limit: int, max_limit: int) -> TaskListQuery:
    """The query with defaults applied; InvalidArgument naming the parameter otherwise. A
    page_token replaces `page`; `page_size` over the maximum is read as the maximum (AIP-158),
    while the contract's `limit` is refused, as /movies refuses it."""
    if page is not None and not 1 <= page <= MAX_PAGE:
        raise InvalidArgument(f"page must be an integer from 1 to {MAX_PAGE} (got {page})")
    if limit is not None and not 1 <= limit <= max_limit:
        raise InvalidArgument(f"limit must be an integer from 1 to {max_limit} (got {limit})")
    if page_size < 0:
        raise InvalidArgument(f"page_size must not be negative (got {page_size})")
    if limit is not None and page_size and page_size != limit:
        raise InvalidArgument("limit and page_size are the same parameter: give one of them")
    size = limit or min(page_size, max_limit) or default_limit
    if page_token:
        return TaskListQuery(limit=size, after=decode_token(page_token))
    return TaskListQuery(limit=size, skip=((page or 1) - 1) * size)


def position_of(task: Task) -> Position:
    return Position(task.created_at, task.created_ns, task.id)


def encode_token(position: Position) -> str:
    raw = json.dumps({"t": position.created_at.isoformat(), "n": position.created_ns,
                      "id": position.task_id})
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _invalid_token() -> InvalidArgument:
    return InvalidArgument("page_token is not valid: use next_page_token from a response")


def decode_token(token: str) -> Position:
    """The position a token names; InvalidArgument for anything this service did not write
    (RecursionError too: JSON nested a few hundred deep is a client's doing)."""
    if len(token) > MAX_TOKEN_CHARS:
        raise _invalid_token()
    try:
        raw = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        return _position(raw)
    except (ValueError, TypeError, RecursionError):
        raise _invalid_token() from None


def _position(raw: Any) -> Position:
    """ValueError or TypeError unless `raw` holds what a token holds: values a query can
    compare (a naive UTC time, a 64-bit count or null, a short id)."""
    if not isinstance(raw, dict) or set(raw) != _TOKEN_KEYS:
        raise ValueError("not a token")
    created_at = datetime.fromisoformat(raw["t"])
    if created_at.tzinfo is not None:  # stored times are naive UTC
        raise ValueError("aware datetime")
    created_ns = raw["n"]
    if created_ns is not None and (isinstance(created_ns, bool) or not isinstance(created_ns, int)
                                   or not 0 <= created_ns < 2**63):
        raise ValueError("created_ns out of range")
    task_id = raw["id"]
    if not isinstance(task_id, str) or len(task_id) > _MAX_ID_CHARS:
        raise ValueError("not a task id")
    task_id.encode()  # UnicodeEncodeError (a ValueError) for a lone surrogate, which BSON refuses
    return Position(created_at, created_ns, task_id)
