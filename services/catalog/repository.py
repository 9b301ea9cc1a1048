"""The movies collection: documents keyed by their natural key, with their owner, the words and
weighted rating that search reads, the vote counts the ratings service sends, and indexes for
every browse and search query the API allows."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING, UpdateOne
from pymongo.database import Database
from pymongo.errors import BulkWriteError

from services.catalog.records import Importer, ImportResult, Movie, Provenance
from services.catalog.weighted_rating import weighted_rating
from services.catalog.words import distinct_words

# (filters) x (sort field): each list route's query is served by one of these indexes, ties
# broken by _id so that pages are stable. Descending sorts walk the same indexes backwards.
SORT_FIELDS = {"release_date": "release_date", "rating": "vote_average", "score": "score"}
_FILTER_PREFIXES: list[list[str]] = [[], ["release_year"], ["original_language"],
                                     ["original_language", "release_year"]]
INDEXES = [
    [*prefix, sort_key] for prefix in _FILTER_PREFIXES for sort_key in SORT_FIELDS.values()
]
# Search is driven by one word, an equality on a multikey array of words, and ranked by the
# weighted rating (best first), then _id: each index serves its tier's order as it is walked.
# Filters (year, language) are checked on the matches: the word is what narrows.
SEARCH_INDEXES: dict[str, list[tuple[str, int]]] = {
    "search_title_words": [("title_words", ASCENDING), ("weighted_rating", DESCENDING),
                           ("_id", ASCENDING)],
    "search_words": [("words", ASCENDING), ("weighted_rating", DESCENDING), ("_id", ASCENDING)],
}


def index_name(keys: list[str]) -> str:
    return "browse_" + "_".join(keys)


def index_specs() -> dict[str, list[tuple[str, int]]]:
    """Every index of the collection by name: the browse indexes and the search ones."""
    browse = {index_name(keys): [(k, ASCENDING) for k in [*keys, "_id"]] for keys in INDEXES}
    return {**browse, **SEARCH_INDEXES}


# The version of what search_fields computes (the word normalisation, the weighted rating's
# constants). A movie stored with another version is brought up to date by the upgrade
# migration (services/catalog/migration.py); bump it when either changes.
SEARCH_VERSION = 1
# Fields the catalog keeps beside a movie for the ratings service; an import never replaces
# them, and a movie gets zeros when it has none, so the score order has no nulls.
VOTE_FIELDS = ("upvotes", "downvotes", "score")
# Stored for the queries only: reads leave them out.
_QUERY_ONLY = {"words": 0, "title_words": 0}


# Ids per `$in` when the counts of a page are read (MovieRepository.vote_counts).
OVERLAY_SLICE = 50
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


def search_fields(movie: Movie) -> dict[str, Any]:
    """What search reads, computed from the movie's own fields: the distinct words of its title,
    of its title and overview (title first, so the title's are always among them), and its
    weighted rating."""
    return {"title_words": distinct_words(movie.title),
            "words": distinct_words(movie.title, movie.overview),
            "weighted_rating": weighted_rating(movie.vote_average, movie.vote_count),
            "search_version": SEARCH_VERSION}


def stored_document(movie: Movie) -> dict[str, Any]:
    """A movie as an import writes it: its document and its search fields."""
    return {**movie_document(movie), **search_fields(movie)}


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
        upvotes=doc.get("upvotes") or 0,
        downvotes=doc.get("downvotes") or 0,
        score=doc.get("score"),
        weighted_rating=doc.get("weighted_rating"),
    )


def _replacing(doc: dict[str, Any]) -> dict[str, Any]:
    """The update that gives a stored movie these fields, as a replace by `doc` would, but
    keeps the fields the catalog holds beside the movie (its vote counts). `$inc` by 0 gives a
    movie that has no counts (stored before them, or inserted by this upsert) zeros and leaves
    any others as they are."""
    update: dict[str, Any] = {
        "$set": {k: v for k, v in doc.items() if k != "_id" and k not in VOTE_FIELDS},
        "$inc": dict.fromkeys(VOTE_FIELDS, 0)}
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
        # Which upgrade migrations have finished, by name.
        self._migrations = db["catalog_migrations"]

    def ensure_indexes(self) -> None:
        for name, keys in index_specs().items():
            self._movies.create_index(keys, name=name)

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
        docs = [{**stored_document(m), **stamp, **dict.fromkeys(VOTE_FIELDS, 0)}
                for m in movies]
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
                  limit: int, then: dict[str, Any] | None = None) -> list[Movie]:
        if then is None:
            cursor = self._movies.find(query, _QUERY_ONLY).sort(sort).skip(skip).limit(limit)
            return [movie_from_document(doc) for doc in cursor]
        # Two stages, so that the first alone picks the index: the embedded database uses an
        # index only for a filter that holds nothing but equalities and ranges (one more word,
        # as $all or $and, beside the driving word made it scan every movie); real MongoDB
        # merges the stages and plans them as one.
        pipeline: list[dict[str, Any]] = [{"$match": query}, {"$match": then},
                                          {"$sort": dict(sort)}]
        if skip:
            pipeline.append({"$skip": skip})
        pipeline += [{"$limit": limit}, {"$project": _QUERY_ONLY}]
        return [movie_from_document(doc) for doc in self._movies.aggregate(pipeline)]

    def count(self, query: dict[str, Any], then: dict[str, Any] | None = None) -> int:
        if then is None:
            return self._movies.count_documents(query)
        counted = list(self._movies.aggregate([{"$match": query}, {"$match": then},
                                               {"$count": "n"}]))
        return int(counted[0]["n"]) if counted else 0

    def get(self, movie_id: str) -> Movie | None:
        doc = self._movies.find_one({"_id": movie_id}, _QUERY_ONLY)
        return None if doc is None else movie_from_document(doc)

    def vote_counts(self, movie_ids: list[str]) -> dict[str, tuple[int, int]]:
        """Each stored movie's (upvotes, downvotes), by id; a movie not stored is left out.
        Read in slices of OVERLAY_SLICE ids: the embedded database's time for one `$in` grows
        faster than its length (1000 ids at once: ~1.4 s; in slices of 50: ~0.17 s)."""
        counts: dict[str, tuple[int, int]] = {}
        for start in range(0, len(movie_ids), OVERLAY_SLICE):
            for doc in self._movies.find(
                    {"_id": {"$in": movie_ids[start:start + OVERLAY_SLICE]}},
                    {"upvotes": 1, "downvotes": 1}):
                counts[doc["_id"]] = (doc.get("upvotes") or 0, doc.get("downvotes") or 0)
        return counts

    # --- the upgrade migration (services/catalog/migration.py) --------------------------------

    def migration_done(self, name: str) -> bool:
        return self._migrations.find_one({"_id": name}, {"_id": 1}) is not None

    def mark_migration_done(self, name: str, upgraded: int) -> None:
        self._migrations.update_one(
            {"_id": name},
            {"$set": {"finished_at": datetime.now(UTC).replace(tzinfo=None),
                      "upgraded": upgraded}}, upsert=True)

    def outdated(self, batch_size: int) -> Iterator[list[dict[str, Any]]]:
        """The movies whose search fields are missing or of another SEARCH_VERSION, in lists
        of `batch_size`: one pass of one cursor (a query per batch would scan the collection
        again each time), with only the fields search_fields reads."""
        cursor = self._movies.find(
            {"search_version": {"$ne": SEARCH_VERSION}},
            {"title": 1, "overview": 1, "vote_average": 1, "vote_count": 1},
            batch_size=batch_size)
        batch: list[dict[str, Any]] = []
        for doc in cursor:
            batch.append(doc)
            if len(batch) >= batch_size:
                yield batch
                batch = []
        if batch:
            yield batch

    def upgrade(self, docs: list[dict[str, Any]]) -> int:
        """Writes the search fields of these movies, and zero counts where they have none.
        A movie that an import rewrote since it was read has the current version and is left
        alone (the import wrote its fields from its new text); one deleted since stays
        deleted. Returns how many were upgraded."""
        if not docs:
            return 0
        ops = [UpdateOne({"_id": d["_id"], "search_version": {"$ne": SEARCH_VERSION}},
                         {"$set": search_fields(movie_from_document(d)),
                          "$inc": dict.fromkeys(VOTE_FIELDS, 0)})
               for d in docs]
        return self._movies.bulk_write(ops, ordered=False).modified_count

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
        # "Older than `version`, or none yet" as one $not rather than an $or of the two: the
        # embedded database reads the whole collection for any top-level $or, even beside an
        # _id (0.7 s a vote at 10k movies, where this reads one document).
        result = self._movies.update_one(
            {"_id": movie_id, "votes_version": {"$not": {"$gte": version}}},
            {"$set": {"upvotes": upvotes, "downvotes": downvotes, "score": upvotes - downvotes,
                      "votes_version": version}})
        if result.matched_count:
            return True
        return None if self._movies.find_one({"_id": movie_id}, {"_id": 1}) is None else False

