"""Pages of a user's ratings, newest first on (created_ns, _id): the contract's `page`/`limit`
(skip), and AIP-158's `page_size`/`page_token` (keyset: "after this rating", so a rating added
between two pages neither repeats nor hides a row, and deep pages cost no skip)."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from services.common.errors import InvalidArgument
from services.ratings.records import Rating

DEFAULT_LIMIT = 50
MAX_LIMIT = 1000  # as /movies: a rating is a few hundred bytes of JSON
MAX_PAGE = 1_000_000
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
    """The query with defaults applied; InvalidArgument naming the parameter otherwise. A
    page_token replaces `page`; `page_size` over the maximum is read as the maximum (AIP-158),
    while the contract's `limit` is refused, as /movies refuses it."""
    if page is not None and not 1 <= page <= MAX_PAGE:
        raise InvalidArgument(f"page must be an integer from 1 to {MAX_PAGE} (got {page})")
    if limit is not None and not 1 <= limit <= MAX_LIMIT:
        raise InvalidArgument(f"limit must be an integer from 1 to {MAX_LIMIT} (got {limit})")
    if page_size < 0:
        raise InvalidArgument(f"page_size must not be negative (got {page_size})")
    if limit is not None and page_size and page_size != limit:
        raise InvalidArgument("limit and page_size are the same parameter: give one of them")
    size = limit or min(page_size, MAX_LIMIT) or DEFAULT_LIMIT
    if page_token:
        return RatingListQuery(limit=size, after=decode_token(page_token))
    return RatingListQuery(limit=size, skip=((page or 1) - 1) * size)


def position_of(rating: Rating) -> Position:
    return Position(rating.created_ns, rating.id)


def encode_token(position: Position) -> str:
    raw = json.dumps({"n": position.created_ns, "id": position.rating_id})
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
    compare (a 64-bit count, a short id)."""
    if not isinstance(raw, dict) or set(raw) != _TOKEN_KEYS:
        raise ValueError("not a token")
    created_ns = raw["n"]
    if isinstance(created_ns, bool) or not isinstance(created_ns, int) \
            or not 0 <= created_ns < 2**63:
        raise ValueError("created_ns out of range")
    rating_id = raw["id"]
    if not isinstance(rating_id, str) or len(rating_id) > _MAX_ID_CHARS:
        raise ValueError("not a rating id")
    rating_id.encode()  # UnicodeEncodeError (a ValueError) for a lone surrogate, which BSON refuses
    return Position(created_ns, rating_id)
