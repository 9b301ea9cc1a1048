"""Pages of a user's files, newest first on (created_at, _id), read as every list route reads
them (services/common/page_tokens.py)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.common import page_tokens

# A token this service writes is about 100 characters; a longer one is refused unread.
MAX_TOKEN_CHARS = 512
_TOKEN_KEYS = {"t", "id"}
_MAX_ID_CHARS = 64  # file ids are 32 hex digits


@dataclass(frozen=True)
class Position:
    """Where a page ended: its last file's place in the order."""

    created_at: datetime
    file_id: str


@dataclass(frozen=True)
class FileListQuery:
    limit: int
    skip: int = 0
    after: Position | None = None


def list_query(*, page: int | None, limit: int | None, page_size: int, page_token: str,
               default_limit: int, max_limit: int) -> FileListQuery:
    """The query with defaults applied; InvalidArgument naming the parameter otherwise."""
    size, skip = page_tokens.page_window(page=page, limit=limit, page_size=page_size,
                                         default_limit=default_limit, max_limit=max_limit)
    if page_token:
        return FileListQuery(limit=size, after=decode_token(page_token))
    return FileListQuery(limit=size, skip=skip)


def encode_token(position: Position) -> str:
    return page_tokens.encode({"t": position.created_at.isoformat(), "id": position.file_id})


def decode_token(token: str) -> Position:
    """The position a token names; InvalidArgument for anything this service did not write."""
    return page_tokens.decode(token, keys=_TOKEN_KEYS, max_chars=MAX_TOKEN_CHARS,
                              parse=_position)


def _position(raw: dict[str, Any]) -> Position:
    created_at = datetime.fromisoformat(raw["t"])
    if created_at.tzinfo is not None:  # stored times are naive UTC
        raise ValueError("aware datetime")
    return Position(created_at, page_tokens.short_id(raw["id"], _MAX_ID_CHARS))
