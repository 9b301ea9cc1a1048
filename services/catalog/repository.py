"""The movies collection: documents keyed by their natural key, and indexes for every browse
query the API allows."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pymongo import ASCENDING, ReplaceOne
from pymongo.database import Database
from pymongo.errors import BulkWriteError

from services.catalog.records import Movie

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


def movie_document(movie: Movie) -> dict[str, Any]:
    """The stored form of a movie: keyed by `_id`, with the release year for the indexes."""
    doc: dict[str, Any] = {
        "_id": movie.id,
        "title": movie.title,
        "original_language": movie.original_language,
        "overview": movie.overview,
        "genre": movie.genre,
        "release_date": movie.release_date,
        "release_year": movie.release_year,
        "popularity": movie.popularity,
        "vote_average": movie.vote_average,
        "vote_count": movie.vote_count,
    }
    if movie.extra:
        doc["extra"] = movie.extra
    return doc


def movie_from_document(doc: dict[str, Any]) -> Movie:
    return Movie(
        id=doc["_id"],
        title=doc.get("title") or "",
        original_language=doc.get("original_language") or "",
        overview=doc.get("overview") or "",
        genre=doc.get("genre") or [],
        release_date=doc.get("release_date"),
        popularity=doc.get("popularity"),
        vote_average=doc.get("vote_average"),
        vote_count=doc.get("vote_count"),
        extra=doc.get("extra") or {},
    )


class MovieRepository:
    def __init__(self, db: Database) -> None:
        self._movies = db["catalog_movies"]

    def ensure_indexes(self) -> None:
        for keys in INDEXES:
            self._movies.create_index([(k, ASCENDING) for k in keys] + [("_id", ASCENDING)],
                                      name=index_name(keys))

    def upsert_many(self, movies: list[Movie]) -> tuple[int, int]:
        """Stores each movie under its `_id`, replacing one already there. Returns (inserted,
        replaced).

        Inserts first and replaces only the documents whose `_id` already exists: a new file
        costs plain inserts, which are several times cheaper than upserts on some engines,
        while a re-run or an overlapping file still ends with one document per movie."""
        if not movies:
            return 0, 0
        now = datetime.now(UTC).replace(tzinfo=None)
        stamped = [{**movie_document(m), "updated_at": now} for m in movies]
        try:
            self._movies.insert_many(stamped, ordered=False)
            return len(stamped), 0
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if any(e.get("code") != 11000 for e in errors):
                raise
            existing = [stamped[e["index"]] for e in errors]
        result = self._movies.bulk_write(
            [ReplaceOne({"_id": d["_id"]}, d, upsert=True) for d in existing], ordered=False)
        inserted = len(stamped) - len(existing) + result.upserted_count
        return inserted, len(existing) - result.upserted_count

    def find_page(self, query: dict[str, Any], sort: list[tuple[str, int]], skip: int,
                  limit: int) -> list[Movie]:
        cursor = self._movies.find(query, {"updated_at": 0}).sort(sort).skip(skip).limit(limit)
        return [movie_from_document(doc) for doc in cursor]

    def count(self, query: dict[str, Any]) -> int:
        return self._movies.count_documents(query)

    def get(self, movie_id: str) -> Movie | None:
        doc = self._movies.find_one({"_id": movie_id}, {"updated_at": 0})
        return None if doc is None else movie_from_document(doc)

    def explain(self, query: dict[str, Any], sort: list[tuple[str, int]],
                hint: str | None = None) -> dict[str, Any]:
        cursor = self._movies.find(query).sort(sort).limit(50)
        return (cursor.hint(hint) if hint else cursor).explain()

    def existing(self, movie_ids: list[str]) -> list[str]:
        return [d["_id"] for d in self._movies.find({"_id": {"$in": movie_ids}}, {"_id": 1})]

    def set_vote_counts(self, movie_id: str, upvotes: int, downvotes: int, version: int
                        ) -> bool | None:
        """Stores the counts unless the movie holds a newer version: whether they were applied,
        None when there is no such movie."""
        result = self._movies.update_one(
            {"_id": movie_id, "$or": [{"votes_version": {"$lt": version}},
                                      {"votes_version": {"$exists": False}}]},
            {"$set": {"upvotes": upvotes, "downvotes": downvotes, "score": upvotes - downvotes,
                      "votes_version": version}})
        if result.matched_count:
            return True
        return None if self._movies.find_one({"_id": movie_id}, {"_id": 1}) is None else False

