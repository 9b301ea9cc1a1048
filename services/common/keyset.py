"""A page of a collection in a keyset order (newest first, ties by id), read after a position
without an $or.

"After this row" in an order of several keys is an $or: an older time, or the same time and a
lower id. The embedded database reads the whole collection for any top-level $or, whatever the
other conditions, so the page is read as one query per branch instead, in the order's sequence,
each bounded by what the page still needs. The branches must not overlap and must be listed in
the order their rows sort: together they give what the $or query, sorted, would."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pymongo.collection import Collection


def read_page(collection: Collection, query: dict[str, Any], sort: list[tuple[str, int]], *,
              limit: int, skip: int = 0, after: Sequence[dict[str, Any]] = ()
              ) -> list[dict[str, Any]]:
    """Up to `limit` documents of `query` in `sort` order: after `skip` of them, or, when
    `after` lists the branches of a position (see above), after that position."""
    if not after:
        return list(collection.find(query).sort(sort).skip(skip).limit(limit))
    if skip:
        raise ValueError("a page read after a position skips nothing")
    found: list[dict[str, Any]] = []
    for branch in after:
        if len(found) >= limit:
            break
        found += collection.find({**query, **branch}).sort(sort).limit(limit - len(found))
    return found
