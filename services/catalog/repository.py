"""The movies collection: documents keyed by their natural key, with their owner, and indexes for
every browse query the API allows."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pymongo import ASCENDING, UpdateOne
from pymongo.database import Database
from pymongo.errors import BulkWriteError

from services.catalog.records import Importer, ImportResult, Movie, Provenance

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


# Who owns a stored movie: the user id that imports compare, and the username shown.
OWNER_FIELDS = ("imported_by_id", "imported_by")
DUPLICATE_KEY = 11000


def movie_document(movie: Movie) -> dict[str, Any]:
    """The stored form of a movie: keyed by `_id`, with the release year for the indexes and
    its provenance when it has one."""
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
    if (p := movie.provenance) is not None:
        doc.update(imported_by_id=p.imported_by_id, imported_by=p.imported_by,
                   updated_at=p.updated_at, updated_by=p.updated_by)
    return doc


def _provenance(doc: dict[str, Any]) -> Provenance | None:
    if "updated_at" not in doc and "imported_by_id" not in doc:
        return None
    return Provenance(imported_by_id=doc.get("imported_by_id") or "",
                      imported_by=doc.get("imported_by") or "",
                      updated_at=doc.get("updated_at"), updated_by=doc.get("updated_by") or "")


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
        provenance=_provenance(doc),
    )


def _replacing(doc: dict[str, Any]) -> dict[str, Any]:
    """The update that gives a stored movie these fields, as a replace by `doc` would, but
    keeps the fields the catalog holds beside the movie (its vote counts)."""
    update: dict[str, Any] = {"$set": {k: v for k, v in doc.items() if k != "_id"}}
    if "extra" not in doc:
        update["$unset"] = {"extra": ""}
    return update


def _duplicates(exc: BulkWriteError) -> list[int]:
    """The indexes of the operations that found their `_id` taken; re-raises any other error."""
    errors = exc.details.get("writeErrors", [])
    if any(e.get("code") != DUPLICATE_KEY for e in errors):
        raise exc
    return [e["index"] for e in errors]


class MovieRepository:
    def __init__(self, db: Database) -> None:
        self._movies = db["catalog_movies"]

    def ensure_indexes(self) -> None:
        for keys in INDEXES:
            self._movies.create_index([(k, ASCENDING) for k in keys] + [("_id", ASCENDING)],
                                      name=index_name(keys))

    def import_many(self, movies: list[Movie], importer: Importer) -> ImportResult:
        """Stores each movie under its `_id` for `importer` (see CatalogService.import_batch).

        Inserts first: a new file costs plain inserts, several times cheaper than upserts on
        some engines. Only the ids already taken go on to a replace, and the database decides
        who owns each: the replace is filtered on the owner, so two imports of one id at once
        cannot both keep it."""
        if not movies:
            return ImportResult(0, 0)
        now = datetime.now(UTC).replace(tzinfo=None)
        stamp = {"imported_by_id": importer.user_id, "imported_by": importer.username,
                 "updated_at": now, "updated_by": importer.username}
        docs = [{**movie_document(m), **stamp} for m in movies]
        try:
            self._movies.insert_many(docs, ordered=False)
            return ImportResult(len(docs), 0)
        except BulkWriteError as exc:
            taken = [docs[i] for i in _duplicates(exc)]
        new = len(docs) - len(taken)
        if importer.is_admin:
            upserted = self._replace_keeping_owners(taken)
            return ImportResult(new + upserted, len(taken) - upserted)
        upserted, replaced, lost = self._replace_own(taken, importer)
        return ImportResult(new + upserted, replaced, self._owners(lost))

    def _replace_own(self, docs: list[dict[str, Any]], importer: Importer
                     ) -> tuple[int, int, list[str]]:
        """Replaces the movies the importer owns or nobody owns (stored before owners). The
        update of a movie another user owns matches nothing and its upsert finds the `_id`
        taken: that duplicate key is the refusal. Returns (upserted: deleted meanwhile,
        replaced, the ids another user owns)."""
        mine = {"$in": [importer.user_id, None]}
        ops = [UpdateOne({"_id": d["_id"], "imported_by_id": mine}, _replacing(d), upsert=True)
               for d in docs]
        try:
            result = self._movies.bulk_write(ops, ordered=False)
        except BulkWriteError as exc:
            lost = [docs[i]["_id"] for i in _duplicates(exc)]
            return exc.details["nUpserted"], exc.details["nMatched"], lost
        return result.upserted_count, result.matched_count, []

    def _replace_keeping_owners(self, docs: list[dict[str, Any]]) -> int:
        """An administrator's import: every field but the owner is replaced, and a movie that
        has no owner (stored before owners, or deleted meanwhile) becomes the importer's.
        Returns how many were inserted because they were deleted meanwhile."""
        ops: list[UpdateOne] = []
        for doc in docs:
            content = {k: v for k, v in doc.items() if k not in OWNER_FIELDS}
            ops.append(UpdateOne({"_id": doc["_id"]}, _replacing(content), upsert=True))
            ops.append(UpdateOne({"_id": doc["_id"], "imported_by_id": None},
                                 {"$set": {f: doc[f] for f in OWNER_FIELDS}}))
        return self._movies.bulk_write(ops, ordered=True).upserted_count

    def _owners(self, movie_ids: list[str]) -> dict[str, str]:
        """Each movie's owner's username ("" for one deleted since)."""
        if not movie_ids:
            return {}
        found = {d["_id"]: d.get("imported_by") or "" for d in
                 self._movies.find({"_id": {"$in": movie_ids}}, {"imported_by": 1})}
        return {i: found.get(i, "") for i in movie_ids}

    def delete(self, movie_id: str) -> bool:
        """Whether there was such a movie."""
        return self._movies.delete_one({"_id": movie_id}).deleted_count == 1

    def find_page(self, query: dict[str, Any], sort: list[tuple[str, int]], skip: int,
                  limit: int) -> list[Movie]:
        cursor = self._movies.find(query).sort(sort).skip(skip).limit(limit)
        return [movie_from_document(doc) for doc in cursor]

    def count(self, query: dict[str, Any]) -> int:
        return self._movies.count_documents(query)

    def get(self, movie_id: str) -> Movie | None:
        doc = self._movies.find_one({"_id": movie_id})
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

