"""Paging as every list route reads it: the contract's `page`/`limit` (a skip), and AIP-158's
`page_size`/`page_token` (keyset: "after this row", so a row added between two pages neither
repeats nor hides one, and deep pages cost no skip).

A token is an opaque position: a JSON object in base64url without padding. Only the service
that wrote it reads it, and it refuses anything else as a client's error, never a 5xx."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any, TypeVar

from services.common.errors import InvalidArgument

MAX_PAGE = 1_000_000

T = TypeVar("T")


def page_window(*, page: int | None, limit: int | None, page_size: int, default_limit: int,
                max_limit: int) -> tuple[int, int]:
    """(rows per page, rows to skip); InvalidArgument naming the parameter otherwise.
    `page_size` over the maximum is read as the maximum (AIP-158), while the contract's `limit`
    is refused, as /movies refuses it. A page token, when given, replaces the skip."""
    if page is not None and not 1 <= page <= MAX_PAGE:
        raise InvalidArgument(f"page must be an integer from 1 to {MAX_PAGE} (got {page})")
    if limit is not None and not 1 <= limit <= max_limit:
        raise InvalidArgument(f"limit must be an integer from 1 to {max_limit} (got {limit})")
    if page_size < 0:
        raise InvalidArgument(f"page_size must not be negative (got {page_size})")
    if limit is not None and page_size and page_size != limit:
        raise InvalidArgument("limit and page_size are the same parameter: give one of them")
    size = limit or min(page_size, max_limit) or default_limit
    return size, ((page or 1) - 1) * size


def encode(payload: dict[str, Any]) -> str:
    # Not ASCII-escaped: an id of 100 non-Latin characters would take 600 characters escaped.
    raw = json.dumps(payload, ensure_ascii=False)
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def invalid_token() -> InvalidArgument:
    return InvalidArgument("page_token is not valid: use next_page_token from a response")


def decode(token: str, *, keys: set[str], max_chars: int,
           parse: Callable[[dict[str, Any]], T]) -> T:
    """What `parse` makes of the token's object, which must hold exactly `keys`. A token longer
    than `max_chars` is refused unread; whatever `parse` refuses with ValueError, TypeError,
    KeyError or OverflowError is an invalid token (RecursionError too: JSON nested a few hundred
    deep is a client's doing). `parse` may raise InvalidArgument of its own."""
    if len(token) > max_chars:
        raise invalid_token()
    try:
        raw = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        if not isinstance(raw, dict) or set(raw) != keys:
            raise ValueError("not a token")
        return parse(raw)
    except (ValueError, TypeError, KeyError, OverflowError, RecursionError):
        raise invalid_token() from None


def short_id(value: Any, max_chars: int) -> str:
    """`value` if it is a string of at most `max_chars` that BSON can store; ValueError else
    (encode() raises UnicodeEncodeError, a ValueError, for a lone surrogate)."""
    if not isinstance(value, str) or len(value) > max_chars:
        raise ValueError("not an id")
    value.encode()
    return value


def int64(value: Any) -> int:
    """`value` if it is a non-negative 64-bit integer (not a bool); ValueError else."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**63:
        raise ValueError("not a 64-bit count")
    return value
