"""What the recommendations ask of the catalog (CatalogCandidatesService): its version, and a
bounded list of the best candidates for a user's constraints, read through the browse indexes.

The candidates are the movies with the highest vote_average (ties by _id, descending) that
satisfy the constraints: that order is the `vote_average` key of a browse index, and the
constraints choose which one: (original_language, release_year, vote_average) for a language
and one year, (original_language, vote_average) for a language, (release_year, vote_average)
for one year, else (vote_average); a year range or genre is then a filter on the walk.

The walk goes down in vote_average bands (9 and up, then 8 to 9, ...), one query each, until
`limit` have matched. A real mongod would stop one backward index walk after `limit` matches
anyway; the embedded database fetches every match of a query before it sorts and limits, so one
query over the whole range read every movie (4 s at 43k, holding its one lock), where the top
bands hold a few percent of them. Each band is a pipeline of two $match stages, the first with
what the index serves (the language, one year, the band), the second with the rest (a year
range, genres, excluded ids, the minimum vote count): given them in one filter, that database's
planner read every movie; a real mongod merges the two. The planner picks the index: a hint
made that database scan the whole index whatever the bounds.

The catalog's mean vote_average (the C of the weighted rating) needs a pass over every movie,
so it is kept (see CatalogMean).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

import grpc
import redis
from pymongo.database import Database

from marquee.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from services.catalog.cache import VERSION_KEY
from services.catalog.repository import movie_from_document
from services.catalog.server import rest_json
from services.common.errors import InvalidArgument, Unavailable

MAX_CANDIDATES = 500
MAX_EXCLUDED = 2000
MAX_LIKED = 500
MAX_GENRES = 20
MAX_TEXT_CHARS = 100
DESCENDING = [("vote_average", -1), ("_id", -1)]
# Where the vote_average bands start, from the top; the last band runs down to the query's
# lower bound.
BAND_FLOORS = (9.0, 8.0, 7.0, 6.0, 5.0)
# Imports change the catalog's version all the time, and one file barely moves the mean of a
# catalog: it is computed again at most this often, not on every change.
MEAN_MAX_AGE_SECONDS = 60.0


def candidate_query(request: catalog_pb2.FindCandidatesRequest
                    ) -> tuple[dict[str, Any], dict[str, Any]]:
    """The filter in two parts, what the index walk serves (with the vote_average range) and
    the rest; InvalidArgument for an unbounded input."""
    if not 1 <= request.limit <= MAX_CANDIDATES:
        raise InvalidArgument(f"limit must be from 1 to {MAX_CANDIDATES} (got {request.limit})")
    if len(request.exclude_ids) > MAX_EXCLUDED or len(request.liked_ids) > MAX_LIKED:
        raise InvalidArgument(f"at most {MAX_EXCLUDED} exclude_ids and {MAX_LIKED} liked_ids")
    if len(request.genres) > MAX_GENRES or any(len(g) > MAX_TEXT_CHARS for g in request.genres):
        raise InvalidArgument(f"at most {MAX_GENRES} genres of {MAX_TEXT_CHARS} characters")
    if len(request.language) > MAX_TEXT_CHARS:
        raise InvalidArgument("language is too long")
    walk: dict[str, Any] = {}
    rest: dict[str, Any] = {}
    if request.language:
        walk["original_language"] = request.language
    low, high = request.year_min, request.year_max
    if low and low == high:
        walk["release_year"] = low
    elif low or high:
        rest["release_year"] = {**({"$gte": low} if low else {}),
                                **({"$lte": high} if high else {})}
    # A movie without a vote_average cannot be ranked by it: the bound also keeps nulls out.
    rating: dict[str, float] = {"$gte": request.rating_min
                                if request.HasField("rating_min") else 0.0}
    if request.HasField("rating_max"):
        rating["$lte"] = request.rating_max
    walk["vote_average"] = rating
    if request.genres:
        rest["genre"] = {"$in": list(request.genres)}
    if request.exclude_ids:
        rest["_id"] = {"$nin": list(request.exclude_ids)}
    if request.min_vote_count > 0:
        rest["vote_count"] = {"$gte": request.min_vote_count}
    return walk, rest


def bands(rating: dict[str, float]) -> list[dict[str, float]]:
    """The vote_average range of a candidate query (`$gte`, and maybe `$lte`) cut at
    BAND_FLOORS: disjoint ranges that cover it, from the highest values down."""
    low, high = rating["$gte"], rating.get("$lte")
    cut: list[dict[str, float]] = []
    ceiling: float | None = None  # where the band above starts

    def below() -> dict[str, float]:
        if ceiling is not None:
            return {"$lt": ceiling}
        return {} if high is None else {"$lte": high}

    for floor in BAND_FLOORS:
        if floor <= low:
            break
        if high is None or floor <= high:
            cut.append({"$gte": floor, **below()})
            ceiling = floor
    return [*cut, {"$gte": low, **below()}]


class CatalogMean:
    """The mean vote_average as of a catalog version, computed again when the version changed
    and the value is older than MEAN_MAX_AGE_SECONDS. One caller computes it (a pass over every
    movie); the others meanwhile take the last value instead of queueing behind that pass, and
    wait only when there is none yet."""

    def __init__(self, compute: Callable[[], float],
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._compute = compute
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._known: tuple[int, float, float] | None = None  # (version, computed at, mean)

    def _current(self, version: int) -> float | None:
        known = self._known
        if known is None:
            return None
        fresh = known[0] == version or self._monotonic() - known[1] < MEAN_MAX_AGE_SECONDS
        return known[2] if fresh else None

    def get(self, version: int) -> float:
        value = self._current(version)
        if value is not None:
            return value
        last = self._known
        if not self._lock.acquire(blocking=last is None):
            return last[2] if last else 0.0  # another caller is computing it
        try:
            value = self._current(version)  # computed while this caller waited
            if value is None:
                value = self._compute()
                self._known = (version, self._monotonic(), value)
            return value
        finally:
            self._lock.release()


class CandidateFinder:
    def __init__(self, db: Database, client: redis.Redis) -> None:
        self._movies = db["catalog_movies"]
        self._redis = client
        self._mean = CatalogMean(self._compute_mean)

    def version(self) -> int:
        try:
            return int(self._redis.get(VERSION_KEY) or 0)  # type: ignore[arg-type]
        except redis.RedisError as exc:
            raise Unavailable(f"the catalog's version cannot be read ({exc})") from None

    def _compute_mean(self) -> float:
        found = list(self._movies.aggregate([
            {"$match": {"vote_average": {"$gte": 0}}},
            {"$group": {"_id": None, "mean": {"$avg": "$vote_average"}}}]))
        return float(found[0]["mean"]) if found else 0.0

    def find(self, request: catalog_pb2.FindCandidatesRequest
             ) -> catalog_pb2.FindCandidatesResponse:
        walk, rest = candidate_query(request)
        version = self.version()
        movies: list[str] = []
        for band in bands(walk["vote_average"]):
            found = self._movies.aggregate([
                {"$match": {**walk, "vote_average": band}}, {"$match": rest},
                {"$sort": dict(DESCENDING)}, {"$limit": request.limit - len(movies)},
                # Without the extra CSV columns: they may be large, and a list stays small.
                {"$project": {"extra": 0}}])
            movies += [json.dumps(rest_json(movie_from_document(doc)), ensure_ascii=False,
                                  default=str) for doc in found]
            if len(movies) == request.limit:
                break
        liked: dict[str, int] = {}
        if request.liked_ids:
            for doc in self._movies.find({"_id": {"$in": list(request.liked_ids)}},
                                         {"genre": 1}):
                for genre in doc.get("genre") or []:
                    liked[genre] = liked.get(genre, 0) + 1
        return catalog_pb2.FindCandidatesResponse(
            movies_json=movies, mean_vote_average=self._mean.get(version),
            liked_genres=liked, catalog_version=version)


class CatalogCandidatesServicer(catalog_pb2_grpc.CatalogCandidatesServiceServicer):
    def __init__(self, finder: CandidateFinder) -> None:
        self._finder = finder

    def GetCatalogVersion(self, request: catalog_pb2.GetCatalogVersionRequest,
                          context: grpc.ServicerContext
                          ) -> catalog_pb2.GetCatalogVersionResponse:
        return catalog_pb2.GetCatalogVersionResponse(version=self._finder.version())

    def FindCandidates(self, request: catalog_pb2.FindCandidatesRequest,
                       context: grpc.ServicerContext) -> catalog_pb2.FindCandidatesResponse:
        return self._finder.find(request)
