"""Catalog use cases: import batches of movies for their owners, browse and search them with
filters, sorts and pages, each movie with its current vote counts, and delete one."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from typing import Any, Protocol

import bson

from services.catalog.cache import QueryCache
from services.catalog.records import Importer, ImportResult, Movie
from services.catalog.repository import SORT_FIELDS, movie_document, movie_from_document
from services.catalog.search import (
    OVERVIEW_TIER,
    RELEVANCE_SORT,
    TITLE_TIER,
    SearchTerms,
    matching,
    parse_search,
    relevance_after,
    tier_filters,
)
from services.common import page_tokens
from services.common.errors import InvalidArgument, NotFound

DEFAULT_LIMIT = 50
MAX_LIMIT = 1000
MAX_PAGE = page_tokens.MAX_PAGE
# Ids are the CSV's, at most this long (services/worker/movie_rows.py refuses longer ones).
MAX_MOVIE_ID_CHARS = 100
# The order of search results when no sort_field is given (services/catalog/search.py).
RELEVANCE = "relevance"
# Bounds of a score in a page token: what a BSON int64 holds.
_INT64 = 2**63


@dataclass(frozen=True)
class MovieQuery:
    page: int = 1
    limit: int = DEFAULT_LIMIT
    year: int | None = None
    language: str = ""
    sort_field: str = "release_date"  # or RELEVANCE, for a search only
    sort_order: str = "asc"  # "" with RELEVANCE, which has one order
    page_token: str = ""
    search: tuple[str, ...] = ()  # the words searched (SearchTerms.words); () for none

    @property
    def terms(self) -> SearchTerms | None:
        return SearchTerms(self.search) if self.search else None


@dataclass(frozen=True)
class MoviePage:
    movies: list[Movie]
    next_page_token: str
    total_size: int | None
    cached: bool = False


def validate(
    *, page: int | None, limit: int | None, year: int | None, language: str, sort_field: str,
    sort_order: str, page_token: str, search: str | None = None,
) -> MovieQuery:
    """The query with defaults applied; InvalidArgument naming the parameter otherwise.
    `search` is None when it was not given (an empty one is an error)."""
    if page is not None and not 1 <= page <= MAX_PAGE:
        raise InvalidArgument(f"page must be an integer from 1 to {MAX_PAGE} (got {page})")
    if limit is not None and not 1 <= limit <= MAX_LIMIT:
        raise InvalidArgument(f"limit must be an integer from 1 to {MAX_LIMIT} (got {limit})")
    if year is not None and not 1 <= year <= 9999:
        raise InvalidArgument(f"year must be a four-digit year (got {year})")
    language = language.strip().lower()
    if len(language) > 20:
        raise InvalidArgument("language must be a language code such as 'en'")
    terms = parse_search(search) if search is not None else None
    fields = [*SORT_FIELDS, RELEVANCE] if terms else list(SORT_FIELDS)
    sort_field = sort_field.strip() or (RELEVANCE if terms else "release_date")
    if sort_field not in fields:
        raise InvalidArgument(f"sort_field must be one of {', '.join(fields)} "
                              f"(got {sort_field!r})")
    sort_order = sort_order.strip().lower()
    if sort_field == RELEVANCE:
        if sort_order:
            raise InvalidArgument("sort_order needs a sort_field: without one, search results "
                                  "are ranked by relevance, best first")
    elif (sort_order := sort_order or "asc") not in ("asc", "desc"):
        raise InvalidArgument(f"sort_order must be asc or desc (got {sort_order!r})")
    return MovieQuery(page=page or 1, limit=limit or DEFAULT_LIMIT, year=year, language=language,
                      sort_field=sort_field, sort_order=sort_order, page_token=page_token,
                      search=terms.words if terms else ())


def _filters(q: MovieQuery) -> dict[str, Any]:
    query: dict[str, Any] = {}
    if q.year is not None:
        query["release_year"] = q.year
    if q.language:
        query["original_language"] = q.language
    return query


# --- page tokens: an opaque position "after (sort value, _id)" for keyset paging ---------------

def _fingerprint(q: MovieQuery) -> list[Any]:
    """What a token must be used with. A search adds a digest of its words (a token written
    before search existed has none, and still reads)."""
    terms = q.terms
    return [q.year, q.language, q.sort_field, q.sort_order, *([terms.digest()] if terms else [])]


def _encode_token(q: MovieQuery, last: Movie, tier: int = TITLE_TIER) -> str:
    """The position after `last`; for the relevance order, `tier` is the one `last` is in."""
    value: Any
    if q.sort_field == RELEVANCE:
        value = [tier, last.weighted_rating]
    else:
        value = getattr(last, SORT_FIELDS[q.sort_field])
    if isinstance(value, datetime):
        value = {"$date": value.isoformat()}
    return page_tokens.encode({"q": _fingerprint(q), "v": value, "id": last.id})


# A token this service writes is a few hundred characters (movie ids are at most 100); a longer
# one is refused unread.
MAX_TOKEN_CHARS = 1024
_TOKEN_KEYS = {"q", "v", "id"}


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError("not a number")
    return float(value)  # a float never overflows a BSON number as a huge int would


def _sort_value(sort_field: str, value: Any) -> Any:
    """The last sort value as the query compares it; ValueError or TypeError unless it is one
    the field can hold (a client's token could hold any JSON: a list, a huge integer...)."""
    if sort_field == RELEVANCE:  # [tier, weighted rating]: never null
        tier, rating = value
        if type(tier) is not int or tier not in (TITLE_TIER, OVERVIEW_TIER) \
                or not math.isfinite(rating := _number(rating)):
            raise ValueError("not a relevance position")
        return tier, rating
    if value is None:
        return None
    if sort_field == "score":  # an exact integer, as stored
        if isinstance(value, bool) or not isinstance(value, int) \
                or not -_INT64 <= value < _INT64:
            raise ValueError("not a score")
        return value
    if sort_field == "release_date":
        when = datetime.fromisoformat(value["$date"])
        if when.tzinfo is not None:  # stored dates are naive UTC
            raise ValueError("aware datetime")
        return when
    return _number(value)


def _decode_token(q: MovieQuery) -> tuple[Any, str]:
    def position(raw: dict[str, Any]) -> tuple[Any, str]:
        if raw["q"] != _fingerprint(q):
            raise InvalidArgument("page_token belongs to a query with other filters or sort "
                                  "order")
        if not isinstance(raw["id"], str):
            raise ValueError("not a movie id")
        return _sort_value(q.sort_field, raw["v"]), raw["id"]

    return page_tokens.decode(q.page_token, keys=_TOKEN_KEYS, max_chars=MAX_TOKEN_CHARS,
                              parse=position)


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
                  limit: int, then: dict[str, Any] | None = None) -> list[Movie]:
        """The movies matching `query` and then `then` (checked on what `query` finds, which
        alone picks the index), in `sort` order."""
        ...

    def count(self, query: dict[str, Any], then: dict[str, Any] | None = None) -> int: ...
    def get(self, movie_id: str) -> Movie | None: ...
    def existing(self, movie_ids: list[str]) -> list[str]: ...

    def vote_counts(self, movie_ids: list[str]) -> dict[str, tuple[int, int]]:
        """(upvotes, downvotes) of each stored movie among `movie_ids`."""
        ...

    def set_vote_counts(self, movie_id: str, upvotes: int, downvotes: int, version: int
                        ) -> bool | None:
        """Applied unless a newer version is stored; None when the movie does not exist."""
        ...


# Deletes a movie's ratings in the ratings service; raises Unavailable when it cannot.
DeleteRatings = Callable[[str], None]


class CatalogService:
    def __init__(self, movies: Movies, cache: QueryCache | None = None,
                 delete_ratings: DeleteRatings | None = None) -> None:
        """`delete_ratings` is None where no ratings are kept (tests of the other use
        cases)."""
        self._movies = movies
        self._cache = cache
        self._delete_ratings = delete_ratings

    def browse(self, q: MovieQuery, *, with_total: bool) -> MoviePage:
        """A page of movies, from the query cache when the same page was read since the
        catalog last changed, with every movie's vote counts as they are now.

        Votes change neither the cached pages nor the cache's version (that would retire every
        page at each vote): a page is cached without counts, and a page served from the cache
        gets them from the database, one read by id. A page ordered by score is never cached:
        each vote can move its movies, and no overlay can fix an order."""
        if self._cache is None or q.sort_field == "score":
            return self._browse(q, with_total=with_total)
        key, hit = self._cache.get(json.dumps([asdict(q), with_total]))
        if hit is not None:
            cached = bson.decode(hit)
            movies = [movie_from_document(d) for d in cached["movies"]]
            return MoviePage(self._with_current_counts(movies), cached["token"],
                             cached["total"], cached=True)
        page = self._browse(q, with_total=with_total)
        # Cached in the movies' stored form without counts (movie_document leaves them out),
        # which changes only with a data migration, so entries written before a change to the
        # Movie record still read.
        self._cache.put(key, bson.encode({"movies": [movie_document(m) for m in page.movies],
                                          "token": page.next_page_token,
                                          "total": page.total_size}))
        return page

    def _with_current_counts(self, movies: list[Movie]) -> list[Movie]:
        counts = self._movies.vote_counts([m.id for m in movies])
        current = []
        for movie in movies:
            upvotes, downvotes = counts.get(movie.id, (0, 0))
            current.append(replace(movie, upvotes=upvotes, downvotes=downvotes))
        return current

    def _browse(self, q: MovieQuery, *, with_total: bool) -> MoviePage:
        filters = _filters(q)
        terms = q.terms
        # One extra document tells whether there is a next page.
        wanted = q.limit + 1
        if q.sort_field == RELEVANCE:
            assert terms is not None  # validate allows the relevance order with a search only
            found = self._relevance_page(q, terms, filters, wanted)
            more = len(found) > q.limit
            found = found[: q.limit]
            movies = [movie for _, movie in found]
            token = _encode_token(q, found[-1][1], found[-1][0]) if more and found else ""
        else:
            movies, token = self._sorted_page(q, terms, filters, wanted)
        total = None
        if with_total:
            first, then = matching(terms, filters) if terms else (filters, None)
            total = self._movies.count(first, then)
        return MoviePage(movies=movies, next_page_token=token, total_size=total)

    def _sorted_page(self, q: MovieQuery, terms: SearchTerms | None, filters: dict[str, Any],
                     wanted: int) -> tuple[list[Movie], str]:
        """A page in the order of a sort field, searched or not, and the next page's token."""
        field = SORT_FIELDS[q.sort_field]
        direction = -1 if q.sort_order == "desc" else 1
        sort = [(field, direction), ("_id", direction)]
        first, then = matching(terms, filters) if terms else (filters, None)
        if q.page_token:
            value, last_id = _decode_token(q)
            movies: list[Movie] = []
            for segment in _segments_after(field, value, last_id, direction < 0):
                if len(movies) < wanted:
                    movies += self._movies.find_page({**first, **segment}, sort, 0,
                                                     wanted - len(movies), then)
        else:
            movies = self._movies.find_page(first, sort, (q.page - 1) * q.limit, wanted, then)
        more = len(movies) > q.limit
        movies = movies[: q.limit]
        return movies, _encode_token(q, movies[-1]) if more and movies else ""

    def _relevance_page(self, q: MovieQuery, terms: SearchTerms, filters: dict[str, Any],
                        wanted: int) -> list[tuple[int, Movie]]:
        """Up to `wanted` matches in relevance order, each with its tier: the title tier's, then
        the overview tier's once the title tier is exhausted."""
        def read(tier: int, position: dict[str, Any], skip: int, limit: int
                 ) -> list[tuple[int, Movie]]:
            first, then = tier_filters(terms, tier, filters)
            return [(tier, m) for m in self._movies.find_page({**first, **position},
                                                              RELEVANCE_SORT, skip, limit, then)]

        found: list[tuple[int, Movie]] = []
        if q.page_token:
            (tier, rating), last_id = _decode_token(q)
            for position in relevance_after(rating, last_id):
                if len(found) < wanted:
                    found += read(tier, position, 0, wanted - len(found))
            if tier == TITLE_TIER and len(found) < wanted:
                found += read(OVERVIEW_TIER, {}, 0, wanted - len(found))
            return found
        skip = (q.page - 1) * q.limit
        found = read(TITLE_TIER, {}, skip, wanted)
        if len(found) < wanted:
            # A page that starts in the title tier goes on at the overview tier's first movie;
            # one past the title tier skips what is left after the title tier's movies.
            if not found and skip:
                skip -= self._movies.count(*tier_filters(terms, TITLE_TIER, filters))
            else:
                skip = 0
            found += read(OVERVIEW_TIER, {}, skip, wanted - len(found))
        return found

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
        """Deletes the movie and its ratings; NotFound for an unknown id. The ratings go first:
        when the ratings service cannot delete them (Unavailable), the movie stays, so that a
        retry finishes the job. (A vote recorded in between finds the movie gone when it sends
        its counts, and the ratings service then deletes the movie's ratings again.) Cached
        pages that show the movie are retired, so no browse serves it again."""
        if not movie_id or len(movie_id) > MAX_MOVIE_ID_CHARS:
            raise InvalidArgument(f"movie_id must have 1 to {MAX_MOVIE_ID_CHARS} characters")
        if self._movies.get(movie_id) is None:
            raise NotFound(f"no movie with id {movie_id!r}")
        if self._delete_ratings is not None:
            self._delete_ratings(movie_id)
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
        display and the score order). Cached pages are not invalidated: they hold no counts,
        which are read fresh into every page served (see browse)."""
        if upvotes < 0 or downvotes < 0 or version < 1:
            raise InvalidArgument("vote counts must not be negative and versions start at 1")
        applied = self._movies.set_vote_counts(movie_id, upvotes, downvotes, version)
        if applied is None:
            raise NotFound(f"no movie with id {movie_id!r}")
        return applied

