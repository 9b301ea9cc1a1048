"""The ratings collections: `ratings_votes` (one document per user and movie, which a unique
index guarantees) and `ratings_counts` (per movie: the counts, their version, and whether the
catalog has confirmed that version)."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any, cast

from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from services.common.keyset import read_page
from services.ratings.rating_pages import Position
from services.ratings.records import DOWNVOTE, UPVOTE, Delta, Rating, VoteCounts

log = logging.getLogger(__name__)

NEWEST_FIRST = [("created_ns", DESCENDING), ("_id", DESCENDING)]


def rating_from_document(doc: dict[str, Any]) -> Rating:
    return Rating(id=doc["_id"], user_id=doc["user_id"], username=doc.get("username", ""),
                  movie_id=doc["movie_id"], rating_type=doc["rating_type"],
                  created_at=doc["created_at"], updated_at=doc["updated_at"],
                  created_ns=doc["created_ns"])


def _rating(doc: dict[str, Any] | None) -> Rating | None:
    return None if doc is None else rating_from_document(doc)


def _as_stored(rating: Rating) -> dict[str, Any]:
    """The filter that matches the rating only while it is as `rating` holds it."""
    return {"_id": rating.id, "rating_type": rating.rating_type, "updated_at": rating.updated_at}


class RatingRepository:
    def __init__(self, db: Database) -> None:
        self._votes = db["ratings_votes"]

    def ensure_indexes(self) -> None:
        # One rating per user and movie: of racing creations, the database keeps one.
        self._votes.create_index([("user_id", ASCENDING), ("movie_id", ASCENDING)],
                                 unique=True, name="one_per_user_movie")
        self._votes.create_index([("user_id", ASCENDING), *NEWEST_FIRST], name="by_user")
        # A user's votes by their latest change: the recommendations' exclusions and version.
        self._votes.create_index([("user_id", ASCENDING), ("updated_at", DESCENDING),
                                  ("_id", DESCENDING)], name="by_user_change")
        # A movie's tally, its latest change, and deleting its ratings.
        self._votes.create_index([("movie_id", ASCENDING), ("updated_at", DESCENDING)],
                                 name="by_movie")
        # The sweep reads the ratings changed since its last round.
        self._votes.create_index([("updated_at", ASCENDING), ("_id", ASCENDING)],
                                 name="by_change")

    def insert(self, rating: Rating) -> bool:
        try:
            self._votes.insert_one({
                "_id": rating.id, "user_id": rating.user_id, "username": rating.username,
                "movie_id": rating.movie_id, "rating_type": rating.rating_type,
                "created_at": rating.created_at, "created_ns": rating.created_ns,
                "updated_at": rating.updated_at,
            })
        except DuplicateKeyError:
            return False
        return True

    def get(self, rating_id: str) -> Rating | None:
        return _rating(self._votes.find_one({"_id": rating_id}))

    def find(self, user_id: str, movie_id: str) -> Rating | None:
        return _rating(self._votes.find_one({"user_id": user_id, "movie_id": movie_id}))

    def list_for_user(self, user_id: str, *, movie_id: str, limit: int, skip: int = 0,
                      after: Position | None = None) -> list[Rating]:
        query: dict[str, Any] = {"user_id": user_id}
        if movie_id:
            query["movie_id"] = movie_id
        branches: list[dict[str, Any]] = [] if after is None else [
            {"created_ns": after.created_ns, "_id": {"$lt": after.rating_id}},
            {"created_ns": {"$lt": after.created_ns}}]
        found = read_page(self._votes, query, NEWEST_FIRST, limit=limit, skip=skip,
                          after=branches)
        return [rating_from_document(doc) for doc in found]

    def count_for_user(self, user_id: str, *, movie_id: str) -> int:
        query = {"user_id": user_id, **({"movie_id": movie_id} if movie_id else {})}
        return self._votes.count_documents(query)

    def recently_changed(self, user_id: str, limit: int) -> list[Rating]:
        found = self._votes.find({"user_id": user_id}) \
            .sort([("updated_at", DESCENDING), ("_id", DESCENDING)]).limit(limit)
        return [rating_from_document(doc) for doc in found]

    def change_type(self, rating: Rating, new_type: str, at: datetime) -> Rating | None:
        return _rating(self._votes.find_one_and_update(
            _as_stored(rating), {"$set": {"rating_type": new_type, "updated_at": at}},
            return_document=ReturnDocument.AFTER))

    def delete(self, rating_id: str, user_id: str) -> Rating | None:
        return _rating(self._votes.find_one_and_delete({"_id": rating_id, "user_id": user_id}))

    def remove(self, rating: Rating) -> bool:
        return self._votes.delete_one(_as_stored(rating)).deleted_count == 1

    def delete_for_movie(self, movie_id: str) -> int:
        return self._votes.delete_many({"movie_id": movie_id}).deleted_count

    def tally(self, movie_id: str) -> tuple[int, int]:
        return (self._votes.count_documents({"movie_id": movie_id, "rating_type": UPVOTE}),
                self._votes.count_documents({"movie_id": movie_id, "rating_type": DOWNVOTE}))

    def latest_change(self, movie_id: str) -> datetime | None:
        doc = self._votes.find_one({"movie_id": movie_id}, {"updated_at": 1},
                                   sort=[("updated_at", DESCENDING)])
        return None if doc is None else doc["updated_at"]  # type: ignore[no-any-return]

    def changed_since(self, cursor: tuple[datetime, str], until: datetime, limit: int
                      ) -> list[tuple[datetime, str, str]]:
        at, last_id = cursor
        query = {"$and": [
            {"$or": [{"updated_at": {"$gt": at}}, {"updated_at": at, "_id": {"$gt": last_id}}]},
            {"updated_at": {"$lt": until}},
        ]}
        found = self._votes.find(query, {"movie_id": 1, "updated_at": 1}) \
            .sort([("updated_at", ASCENDING), ("_id", ASCENDING)]).limit(limit)
        return [(doc["updated_at"], doc["_id"], doc["movie_id"]) for doc in found]


def counts_from_document(doc: dict[str, Any]) -> VoteCounts:
    return VoteCounts(movie_id=doc["_id"], upvotes=doc.get("upvotes", 0),
                      downvotes=doc.get("downvotes", 0), version=doc.get("version", 0),
                      synced_version=doc.get("synced_version", 0),
                      updated_at=doc.get("updated_at"))


class CountRepository:
    """Counts keyed by movie id. `pending` is true while the catalog has not confirmed the
    current version (synced_version < version), so that the sweep finds those by an index."""

    def __init__(self, db: Database) -> None:
        self._counts = db["ratings_counts"]

    def ensure_indexes(self) -> None:
        self._counts.create_index([("pending", ASCENDING)], name="by_pending")

    def apply(self, movie_id: str, delta: Delta, at: datetime) -> VoteCounts:
        update = {"$inc": {"upvotes": delta.upvotes, "downvotes": delta.downvotes, "version": 1},
                  "$set": {"updated_at": at, "pending": True},
                  "$setOnInsert": {"synced_version": 0}}
        doc = self._upsert(movie_id, update)
        if doc["upvotes"] < 0 or doc["downvotes"] < 0:
            # Only a count that had drifted low gets here; the sweep recounts it from the votes.
            log.warning("a vote count would go below zero; held at zero", extra={
                "movie_id": movie_id, "upvotes": doc["upvotes"], "downvotes": doc["downvotes"]})
            doc = self._upsert(movie_id, {"$max": {"upvotes": 0, "downvotes": 0},
                                          "$inc": {"version": 1},
                                          "$set": {"updated_at": at, "pending": True}})
        return counts_from_document(doc)

    def _upsert(self, movie_id: str, update: dict[str, Any]) -> dict[str, Any]:
        try:
            return self._update_or_create(movie_id, update)
        except DuplicateKeyError:
            # Two first votes on a movie both tried to create its counts: the other one did, so
            # the update now finds them.
            return self._update_or_create(movie_id, update)

    def _update_or_create(self, movie_id: str, update: dict[str, Any]) -> dict[str, Any]:
        # An upsert that returns the document after it always has one.
        return cast(dict[str, Any], self._counts.find_one_and_update(
            {"_id": movie_id}, update, upsert=True, return_document=ReturnDocument.AFTER))

    def get(self, movie_id: str) -> VoteCounts | None:
        doc = self._counts.find_one({"_id": movie_id})
        return None if doc is None else counts_from_document(doc)

    def mark_synced(self, movie_id: str, version: int) -> None:
        # Only while the version is still the one confirmed: a newer one stays pending.
        self._counts.update_one({"_id": movie_id, "version": version},
                                {"$set": {"pending": False}, "$max": {"synced_version": version}})

    def unsynced(self, limit: int) -> list[VoteCounts]:
        return [counts_from_document(d) for d in self._counts.find({"pending": True}).limit(limit)]

    def after(self, movie_id: str, limit: int) -> list[VoteCounts]:
        found = self._counts.find({"_id": {"$gt": movie_id}}).sort("_id", ASCENDING).limit(limit)
        return [counts_from_document(d) for d in found]

    def correct(self, movie_id: str, version: int, upvotes: int, downvotes: int,
                at: datetime) -> VoteCounts | None:
        values = {"upvotes": upvotes, "downvotes": downvotes, "updated_at": at, "pending": True}
        if version == 0:
            first = {"_id": movie_id, **values, "version": 1, "synced_version": 0}
            try:
                self._counts.insert_one(first)
            except DuplicateKeyError:
                return None
            return counts_from_document(first)
        doc = self._counts.find_one_and_update(
            {"_id": movie_id, "version": version}, {"$set": values, "$inc": {"version": 1}},
            return_document=ReturnDocument.AFTER)
        return None if doc is None else counts_from_document(doc)

    def delete(self, movie_id: str) -> None:
        self._counts.delete_one({"_id": movie_id})
