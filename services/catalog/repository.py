"""The movies collection: documents keyed by their natural key, and indexes for every browse
query the API allows."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pymongo import ASCENDING, ReplaceOne
from pymongo.database import Database

# (filters) x (sort field): each list route's query is served by one of these indexes, ties
# broken by _id so that pages are stable. Descending sorts walk the same indexes backwards.
SORT_FIELDS = {"release_date": "release_date", "rating": "vote_average"}
_FILTER_PREFIXES: list[list[str]] = [[], ["release_year"], ["original_language"],
                                     ["original_language", "release_year"]]
INDEXES = [
    [*prefix, sort_key] for prefix in _FILTER_PREFIXES for sort_key in SORT_FIELDS.values()
]


def index_name(keys: list[str]) -> str:
    return "browse_" + "_".join(keys)


class MovieRepository:
    def __init__(self, db: Database) -> None:
        self._movies = db["catalog_movies"]

    def ensure_indexes(self) -> None:
        for keys in INDEXES:
            self._movies.create_index([(k, ASCENDING) for k in keys] + [("_id", ASCENDING)],
                                      name=index_name(keys))

    def upsert_many(self, docs: list[dict[str, Any]]) -> tuple[int, int]:
        """Replaces each movie by `_id` (inserting new ones). Returns (inserted, updated)."""
        if not docs:
            return 0, 0
        now = datetime.now(UTC).replace(tzinfo=None)
        result = self._movies.bulk_write(
            [ReplaceOne({"_id": d["_id"]}, {**d, "updated_at": now}, upsert=True) for d in docs],
            ordered=False,
        )
        return result.upserted_count, result.matched_count

    def find_page(self, query: dict[str, Any], sort: list[tuple[str, int]], skip: int,
                  limit: int) -> list[dict[str, Any]]:
        cursor = self._movies.find(query, {"updated_at": 0}).sort(sort).skip(skip).limit(limit)
        return list(cursor)

    def count(self, query: dict[str, Any]) -> int:
        return self._movies.count_documents(query)

    def get(self, movie_id: str) -> dict[str, Any] | None:
        return self._movies.find_one({"_id": movie_id}, {"updated_at": 0})

    def explain(self, query: dict[str, Any], sort: list[tuple[str, int]],
                hint: str | None = None) -> dict[str, Any]:
        cursor = self._movies.find(query).sort(sort).limit(50)
        return (cursor.hint(hint) if hint else cursor).explain()

