"""Pages of a user's ratings, newest first on (created_ns, _id), read as every list route reads
them (services/common/page_tokens.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from services.common import page_tokens
from services.ratings.records import Rating

DEFAULT_LIMIT = 50
MAX_LIMIT = 1000  # as /movies: a rating is a few hundred bytes of JSON
# A token this service writes is about 80 characters; a longer one is refused unread.
MAX_TOKEN_CHARS = 256
_TOKEN_KEYS = {"n", "id"}
_MAX_ID_CHARS = 64  # rating ids are 32 hex digits


@dataclass(frozen=True)
class Position:
    """Where a page ended: its last rating's place in the order."""

    created_ns: int
    rating_id: str


@dataclass(frozen=True)
class RatingListQuery:
    limit: int
    skip: int = 0
    after: Position | None = None


def list_query(*, page: int | None, limit: int | None, page_size: int,
               page_token: str) -> RatingListQuery:
    """The query with defaults applied; InvalidArgument naming the parameter otherwise."""
    size, skip = page_tokens.page_window(page=page, limit=limit, page_size=page_size,
                                         default_limit=DEFAULT_LIMIT, max_limit=MAX_LIMIT)
    if page_token:
        return RatingListQuery(limit=size, after=decode_token(page_token))
    return RatingListQuery(limit=size, skip=skip)


def position_of(rating: Rating) -> Position:
    return Position(rating.created_ns, rating.id)


def encode_token(position: Position) -> str:
    return page_tokens.encode({"n": position.created_ns, "id": position.rating_id})


def decode_token(token: str) -> Position:
    """The position a token names; InvalidArgument for anything this service did not write."""
    return page_tokens.decode(token, keys=_TOKEN_KEYS, max_chars=MAX_TOKEN_CHARS,
                              parse=_position)


def _position(raw: dict[str, Any]) -> Position:
    return Position(page_tokens.int64(raw["n"]), page_tokens.short_id(raw["id"], _MAX_ID_CHARS))
