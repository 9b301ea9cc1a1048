"""Catalog use cases: import batches of movies for their owners, browse them with filters, sorts
and pages, and delete one."""

from __future__ import annotations

import base64
import json
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Protocol

import bson

from services.catalog.cache import QueryCache
from services.catalog.records import Importer, ImportResult, Movie
from services.catalog.repository import SORT_FIELDS, movie_document, movie_from_document
from services.common.errors import InvalidArgument, NotFound

DEFAULT_LIMIT = 50
MAX_LIMIT = 1000
MAX_PAGE = 1_000_000
# Ids are the CSV's, at most this long (services/worker/movie_rows.py refuses longer ones).
MAX_MOVIE_ID_CHARS = 100


@dataclass(frozen=True)
class MovieQuery:
    page: int = 1
    limit: int = DEFAULT_LIMIT
    year: int | None = None
    language: str = ""
    sort_field: str = "release_date"
    sort_order: str = "asc"
    page_token: str = ""


@dataclass(frozen=True)
class MoviePage:
    movies: list[Movie]
    next_page_token: str
    total_size: int | None
    cached: bool = False


def validate(
    *, page: int | None, limit: int | None, year: int | None, language: str, sort_field: str,
    sort_order: str, page_token: str,
) -> MovieQuery:
    """The query with defaults applied; InvalidArgument naming the parameter otherwise."""
    if page is not None and not 1 <= page <= MAX_PAGE:
        raise InvalidArgument(f"page must be an integer from 1 to {MAX_PAGE} (got {page})")
    if limit is not None and not 1 <= limit <= MAX_LIMIT:
        raise InvalidArgument(f"limit must be an integer from 1 to {MAX_LIMIT} (got {limit})")
    if year is not None and not 1 <= year <= 9999:
        raise InvalidArgument(f"year must be a four-digit year (got {year})")
    language = language.strip().lower()
    if len(language) > 20:
        raise InvalidArgument("language must be a language code such as 'en'")
    sort_field = sort_field.strip() or "release_date"
    if sort_field not in SORT_FIELDS:
        raise InvalidArgument(f"sort_field must be one of {', '.join(SORT_FIELDS)} "
                              f"(got {sort_field!r})")
    sort_order = sort_order.strip().lower() or "asc"
    if sort_order not in ("asc", "desc"):
        raise InvalidArgument(f"sort_order must be asc or desc (got {sort_order!r})")
    return MovieQuery(page=page or 1, limit=limit or DEFAULT_LIMIT, year=year, language=language,
                      sort_field=sort_field, sort_order=sort_order, page_token=page_token)


def _filters(q: MovieQuery) -> dict[str, Any]:
    query: dict[str, Any] = {}
    if q.year is not None:
        query["release_year"] = q.year
    if q.language:
        query["original_language"] = q.language
    return query


# --- page tokens: an opaque position "after (sort value, _id)" for keyset paging ---------------

def _fingerprint(q: MovieQuery) -> list[Any]:
    return [q.year, q.language, q.sort_field, q.sort_order]


def _encode_token(q: MovieQuery, last: Movie) -> str:
    value = getattr(last, SORT_FIELDS[q.sort_field])
    if isinstance(value, datetime):
        value = {"$date": value.isoformat()}
    raw = json.dumps({"q": _fingerprint(q), "v": value, "id": last.id})
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


# A token this service writes is a few hundred characters (movie ids are at most 100); a longer
# one is refused unread.
MAX_TOKEN_CHARS = 1024
_TOKEN_KEYS = {"q", "v", "id"}


def _invalid_token() -> InvalidArgument:
    return InvalidArgument("page_token is not valid: use next_page_token from a response")


def _token_payload(token: str) -> dict[str, Any]:
    """The token's JSON object, or InvalidArgument. RecursionError is a client's doing too:
    JSON nested a few hundred deep."""
    if len(token) > MAX_TOKEN_CHARS:
        raise _invalid_token()
    try:
        raw = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (ValueError, RecursionError):
        raise _invalid_token() from None
    if not isinstance(raw, dict) or set(raw) != _TOKEN_KEYS:
        raise _invalid_token()
    return raw


def _sort_value(sort_field: str, value: Any) -> Any:
    """The last sort value as the query compares it; ValueError or TypeError unless it is one
    the field can hold (a client's token could hold any JSON: a list, a huge integer...)."""
    if value is None:
        return None
    if sort_field == "release_date":
        when = datetime.fromisoformat(value["$date"])
        if when.tzinfo is not None:  # stored dates are naive UTC
            raise ValueError("aware datetime")
        return when
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError("not a number")
    return float(value)  # a float never overflows a BSON number as a huge int would


def _decode_token(q: MovieQuery) -> tuple[Any, str]:
    raw = _token_payload(q.page_token)
    if raw["q"] != _fingerprint(q):
        raise InvalidArgument("page_token belongs to a query with other filters or sort order")
    try:
        value = _sort_value(q.sort_field, raw["v"])
    except (ValueError, KeyError, TypeError, OverflowError):
        raise _invalid_token() from None
    if not isinstance(raw["id"], str):
        raise _invalid_token()
    return value, raw["id"]


def _segments_after(field: str, value: Any, last_id: str, descending: bool
                    ) -> list[dict[str, Any]]:
    """Queries for the documents after (value, last_id) in the order (field, _id), null lowest,
    to be read one after the other. Each is an equality or a plain range on `field` (no $or),
    so an index on (filters..., field, _id) seeks straight to the position."""
    tie, beyond = ("$lt", "$lt") if descending else ("$gt", "$gt")
    if value is None:
        in_nulls = {field: None, "_id": {tie: last_id}}
        return [in_nulls] if descending else [in_nulls, {field: {"$ne": None}}]
    segments = [{field: value, "_id": {tie: last_id}}, {field: {beyond: value}}]
    return [*segments, {field: None}] if descending else segments


class Movies(Protocol):
    """The movies: MovieRepository, or an in-memory fake in the unit tests. Queries and sorts
    name the stored fields (`_id`, `release_year`, `original_language`, and SORT_FIELDS'
    values); sorts put null lowest."""

    def import_many(self, movies: list[Movie], importer: Importer) -> ImportResult:
        """Stores each movie under its id with `importer` as the last to change it. A new id is
        inserted with `importer` as its owner; a stored movie that `importer` owns, or that has
        no owner, is replaced (and then owned by `importer`); one another user owns is left
        alone and reported in `skipped` with its owner's username, unless `importer` is an
        administrator: then it is replaced and keeps its owner. Decided per movie by the store
        itself, so that of two imports of one new id at once exactly one owns it."""
        ...

    def delete(self, movie_id: str) -> bool:
        """Removes the movie; whether there was one."""
        ...

    def find_page(self, query: dict[str, Any], sort: list[tuple[str, int]], skip: int,
                  limit: int) -> list[Movie]: ...
    def count(self, query: dict[str, Any]) -> int: ...
    def get(self, movie_id: str) -> Movie | None: ...
    def existing(self, movie_ids: list[str]) -> list[str]: ...

    def set_vote_counts(self, movie_id: str, upvotes: int, downvotes: int, version: int
                        ) -> bool | None:
        """Applied unless a newer version is stored; None when the movie does not exist."""
        ...


class CatalogService:
    def __init__(self, movies: Movies, cache: QueryCache | None = None) -> None:
        self._movies = movies
        self._cache = cache

    def browse(self, q: MovieQuery, *, with_total: bool) -> MoviePage:
        """A page of movies, from the query cache when the same page was read since the
        catalog last changed."""
        if self._cache is None:
            return self._browse(q, with_total=with_total)
        key, hit = self._cache.get(json.dumps([asdict(q), with_total]))
        if hit is not None:
            cached = bson.decode(hit)
            return MoviePage([movie_from_document(d) for d in cached["movies"]], cached["token"],
                             cached["total"], cached=True)
        page = self._browse(q, with_total=with_total)
        # Cached in the movies' stored form, which changes only with a data migration, so
        # entries written before a change to the Movie record still read.
        self._cache.put(key, bson.encode({"movies": [movie_document(m) for m in page.movies],
                                          "token": page.next_page_token,
                                          "total": page.total_size}))
        return page

    def _browse(self, q: MovieQuery, *, with_total: bool) -> MoviePage:
        field = SORT_FIELDS[q.sort_field]
        direction = -1 if q.sort_order == "desc" else 1
        sort = [(field, direction), ("_id", direction)]
        filters = _filters(q)
        # One extra document tells whether there is a next page.
        wanted = q.limit + 1
        if q.page_token:
            value, last_id = _decode_token(q)
            movies: list[Movie] = []
            for segment in _segments_after(field, value, last_id, direction < 0):
                if len(movies) < wanted:
                    movies += self._movies.find_page({**filters, **segment}, sort, 0,
                                                     wanted - len(movies))
        else:
            movies = self._movies.find_page(filters, sort, (q.page - 1) * q.limit, wanted)
        more = len(movies) > q.limit
        movies = movies[: q.limit]
        token = _encode_token(q, movies[-1]) if more and movies else ""
        total = self._movies.count(filters) if with_total else None
        return MoviePage(movies=movies, next_page_token=token, total_size=total)

    def get(self, movie_id: str) -> Movie:
        movie = self._movies.get(movie_id)
        if movie is None:
            raise NotFound(f"no movie with id {movie_id!r}")
        return movie

    def import_batch(self, movies: list[Movie], importer: Importer) -> ImportResult:
        """Stores the movies for `importer`: a movie another (non-admin) user owns is skipped,
        not changed (Movies.import_many has the rule)."""
        if not importer.user_id:
            raise InvalidArgument("an import needs its importer's user id")
        for movie in movies:
            if not movie.id or not movie.title:
                raise InvalidArgument("every imported movie needs an id and a title")
        result = self._movies.import_many(movies, importer)
        if result.inserted or result.replaced:
            self._retire_cached_pages()
        return result

    def delete(self, movie_id: str) -> None:
        """Deletes the movie; NotFound for an unknown id. Cached pages that show it are retired,
        so no browse serves it again."""
        if not movie_id or len(movie_id) > MAX_MOVIE_ID_CHARS:
            raise InvalidArgument(f"movie_id must have 1 to {MAX_MOVIE_ID_CHARS} characters")
        if not self._movies.delete(movie_id):
            raise NotFound(f"no movie with id {movie_id!r}")
        self._retire_cached_pages()

    def _retire_cached_pages(self) -> None:
        if self._cache is not None:
            self._cache.invalidate()

    def check_movies(self, movie_ids: list[str]) -> list[str]:
        """Which of these ids name a movie."""
        if len(movie_ids) > MAX_LIMIT:
            raise InvalidArgument(f"at most {MAX_LIMIT} movie ids at once")
        if any(len(movie_id) > MAX_MOVIE_ID_CHARS for movie_id in movie_ids):
            return self._movies.existing([m for m in movie_ids if len(m) <= MAX_MOVIE_ID_CHARS])
        return self._movies.existing(movie_ids)

    def set_vote_counts(self, movie_id: str, upvotes: int, downvotes: int, version: int) -> bool:
        """The ratings service's counts for a movie (they are its to keep: this is a copy for
        display and the score order). Cached pages are not invalidated: counts are read fresh
        into every page served."""
        if upvotes < 0 or downvotes < 0 or version < 1:
            raise InvalidArgument("vote counts must not be negative and versions start at 1")
        applied = self._movies.set_vote_counts(movie_id, upvotes, downvotes, version)
        if applied is None:
            raise NotFound(f"no movie with id {movie_id!r}")
        return applied

