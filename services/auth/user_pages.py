"""Pages of the user list that administrators read, in username order (the lower-cased
`username_key`, which is unique, so the order is stable): the contract's `page`/`limit` (skip),
and AIP-158's `page_size`/`page_token` (keyset: "after this username", so a user registered
between two pages neither repeats nor hides a row)."""

from __future__ import annotations

import base64
import json
import unicodedata
from dataclasses import dataclass
from typing import Any

from services.auth.fields import MAX_USERNAME
from services.common.errors import InvalidArgument

MAX_PAGE = 1_000_000
DEFAULT_LIMIT = 50
MAX_LIMIT = 100
MAX_SEARCH = 100
# A token this service writes is at most about 600 characters; a longer one is refused unread.
MAX_TOKEN_CHARS = 1024
_TOKEN_KEYS = {"s", "u"}


@dataclass(frozen=True)
class UserListQuery:
    # Lower case; matched as a plain substring of the username or the email ("" matches all).
    search: str
    limit: int
    skip: int = 0
    # The username_key of the previous page's last user.
    after: str | None = None


def list_query(*, page: int | None, limit: int | None, page_size: int, page_token: str,
               search: str) -> UserListQuery:
    """The query with defaults applied; InvalidArgument naming the parameter otherwise. A
    page_token replaces `page` and must come from a page of the same search."""
    if len(search) > MAX_SEARCH:
        raise InvalidArgument(f"search must be at most {MAX_SEARCH} characters")
    # No username or email holds one, and Mongo refuses a pattern with a NUL in it.
    if any(unicodedata.category(ch)[0] == "C" for ch in search):
        raise InvalidArgument("search must not contain control or invisible characters")
    search = search.strip().lower()
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
        return UserListQuery(search=search, limit=size, after=decode_token(page_token, search))
    return UserListQuery(search=search, limit=size, skip=((page or 1) - 1) * size)


def encode_token(search: str, username_key: str) -> str:
    raw = json.dumps({"s": search, "u": username_key})
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_token(token: str, search: str) -> str:
    """The username_key a token names; InvalidArgument for anything this service did not write
    for this search (RecursionError too: JSON nested a few hundred deep is a client's doing)."""
    if len(token) > MAX_TOKEN_CHARS:
        raise _invalid_token()
    try:
        raw = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        after = _after(raw)
    except (ValueError, TypeError, RecursionError):
        raise _invalid_token() from None
    if raw["s"] != search:
        raise InvalidArgument("page_token belongs to another search: give the same search as "
                              "the page it came from")
    return after


def _after(raw: Any) -> str:
    if not isinstance(raw, dict) or set(raw) != _TOKEN_KEYS:
        raise ValueError("not a token")
    search, after = raw["s"], raw["u"]
    if not isinstance(search, str) or not isinstance(after, str) or len(after) > MAX_USERNAME:
        raise ValueError("not a token")
    after.encode()  # UnicodeEncodeError (a ValueError) for a lone surrogate, which BSON refuses
    return after


def _invalid_token() -> InvalidArgument:
    return InvalidArgument("page_token is not valid: use next_page_token from a response")
