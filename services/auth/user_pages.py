"""Pages of the user list that administrators read, in username order (the lower-cased
`username_key`, which is unique, so the order is stable), read as every list route reads them
(services/common/page_tokens.py): the keyset is "after this username"."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Any

from services.auth.fields import MAX_USERNAME
from services.common import page_tokens
from services.common.errors import InvalidArgument

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
    size, skip = page_tokens.page_window(page=page, limit=limit, page_size=page_size,
                                         default_limit=DEFAULT_LIMIT, max_limit=MAX_LIMIT)
    if page_token:
        return UserListQuery(search=search, limit=size, after=decode_token(page_token, search))
    return UserListQuery(search=search, limit=size, skip=skip)


def encode_token(search: str, username_key: str) -> str:
    return page_tokens.encode({"s": search, "u": username_key})


def decode_token(token: str, search: str) -> str:
    """The username_key a token names; InvalidArgument for anything this service did not write
    for this search."""
    def after(raw: dict[str, Any]) -> str:
        if not isinstance(raw["s"], str):
            raise ValueError("not a token")
        if raw["s"] != search:
            raise InvalidArgument("page_token belongs to another search: give the same search "
                                  "as the page it came from")
        return page_tokens.short_id(raw["u"], MAX_USERNAME)

    return page_tokens.decode(token, keys=_TOKEN_KEYS, max_chars=MAX_TOKEN_CHARS, parse=after)
