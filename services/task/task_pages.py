"""Pages of a user's task list, newest first on (created_at, created_ns, _id), read as every
list route reads them (services/common/page_tokens.py)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.common import page_tokens
from services.task.records import Task

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
    """The query with defaults applied; InvalidArgument naming the parameter otherwise."""
    size, skip = page_tokens.page_window(page=page, limit=limit, page_size=page_size,
                                         default_limit=default_limit, max_limit=max_limit)
    if page_token:
        return TaskListQuery(limit=size, after=decode_token(page_token))
    return TaskListQuery(limit=size, skip=skip)


def position_of(task: Task) -> Position:
    return Position(task.created_at, task.created_ns, task.id)


def encode_token(position: Position) -> str:
    return page_tokens.encode({"t": position.created_at.isoformat(), "n": position.created_ns,
                               "id": position.task_id})


def decode_token(token: str) -> Position:
    """The position a token names; InvalidArgument for anything this service did not write."""
    return page_tokens.decode(token, keys=_TOKEN_KEYS, max_chars=MAX_TOKEN_CHARS,
                              parse=_position)


def _position(raw: dict[str, Any]) -> Position:
    """ValueError or TypeError unless `raw` holds values a query can compare (a naive UTC time,
    a 64-bit count or null, a short id)."""
    created_at = datetime.fromisoformat(raw["t"])
    if created_at.tzinfo is not None:  # stored times are naive UTC
        raise ValueError("aware datetime")
    created_ns = None if raw["n"] is None else page_tokens.int64(raw["n"])
    return Position(created_at, created_ns, page_tokens.short_id(raw["id"], _MAX_ID_CHARS))
