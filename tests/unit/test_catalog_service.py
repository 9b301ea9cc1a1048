"""CatalogService on an in-memory repository: imports, filters, sorts, pages and page tokens as
the use case builds them, and the query cache."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any, cast

import pytest
import redis

from services.catalog.cache import QueryCache
from services.catalog.records import Importer, ImportResult, Movie
from services.catalog.service import CatalogService, MovieQuery, validate
from services.common.errors import InvalidArgument, NotFound
from tests.unit.fakes import FakeMovies, FakeRedis

ALICE = Importer("u1", "alice")


def _query(**params: Any) -> MovieQuery:
    defaults: dict[str, Any] = {"page": None, "limit": None, "year": None, "language": "",
                                "sort_field": "", "sort_order": "", "page_token": ""}
    return validate(**{**defaults, **params})


def _movie(movie_id: str, year: int | None = None, rating: float | None = None,
           language: str = "en") -> Movie:
    return Movie(movie_id, f"Movie {movie_id}", original_language=language,
                 release_date=datetime(year, 6, 1) if year else None, vote_average=rating)


# Ties on the rating (7.0) and on the date (2001), and movies without either.
CATALOG = [
    _movie("a", 1999, 7.0), _movie("b", 2001, 8.5, "fr"), _movie("c", 2001, 7.0),
    _movie("d", None, 6.0), _movie("e", 2010, None, "fr"), _movie("f", None, None),
    _movie("g", 1999, 9.1, "ja"), _movie("h", 2001, 7.0, "fr"),
]


@pytest.fixture
def catalog() -> CatalogService:
    service = CatalogService(FakeMovies())
    service.import_batch(CATALOG, ALICE)
    return service


def _ids(page_movies: list[Movie]) -> list[str]:
    return [m.id for m in page_movies]


def test_import_inserts_new_movies_and_replaces_known_ones() -> None:
    service = CatalogService(FakeMovies())
    assert service.import_batch(CATALOG[:3], ALICE) == ImportResult(3, 0)
    renamed = replace(CATALOG[0], title="Renamed")
    assert service.import_batch([renamed, CATALOG[3]], ALICE) == ImportResult(1, 1)
    assert service.get("a").title == "Renamed"
    assert service.browse(_query(), with_total=True).total_size == 4


@pytest.mark.parametrize("bad", [Movie("", "No id"), Movie("x", "")])
def test_a_batch_with_a_movie_without_id_or_title_is_refused_whole(bad: Movie) -> None:
    service = CatalogService(FakeMovies())
    with pytest.raises(InvalidArgument, match="needs an id and a title"):
        service.import_batch([CATALOG[0], bad], ALICE)
    with pytest.raises(NotFound):
        service.get("a")


def test_get_unknown_movie(catalog: CatalogService) -> None:
    with pytest.raises(NotFound, match="no movie with id 'zz'"):
        catalog.get("zz")


def test_default_order_is_release_date_ascending_unknown_dates_first(catalog: CatalogService
                                                                     ) -> None:
    page = catalog.browse(_query(), with_total=False)
    assert _ids(page.movies) == ["d", "f", "a", "g", "b", "c", "h", "e"]
    assert page.total_size is None
    assert page.next_page_token == ""


def test_rating_descending_puts_unrated_last_and_breaks_ties_by_id(catalog: CatalogService
                                                                   ) -> None:
    page = catalog.browse(_query(sort_field="rating", sort_order="desc"), with_total=True)
    assert _ids(page.movies) == ["g", "b", "h", "c", "a", "d", "f", "e"]
    assert page.total_size == len(CATALOG)


@pytest.mark.parametrize(("filters", "expected"), [
    ({"year": 2001}, ["c", "h", "b"]),
    ({"language": "FR"}, ["e", "h", "b"]),
    ({"year": 2001, "language": "fr"}, ["h", "b"]),
    ({"year": 1800}, []),
])
def test_filters_by_release_year_and_language(catalog: CatalogService, filters: dict[str, Any],
                                               expected: list[str]) -> None:
    q = _query(sort_field="rating", **filters)
    page = catalog.browse(q, with_total=True)
    assert _ids(page.movies) == expected
    assert page.total_size == len(expected)


def test_pages_by_number(catalog: CatalogService) -> None:
    pages = [catalog.browse(_query(page=n, limit=3), with_total=True) for n in (1, 2, 3, 4)]
    assert [_ids(p.movies) for p in pages] == [["d", "f", "a"], ["g", "b", "c"], ["h", "e"], []]
    assert [p.total_size for p in pages] == [8, 8, 8, 8]
    assert [bool(p.next_page_token) for p in pages] == [True, True, False, False]


@pytest.mark.parametrize("sort_field", ["release_date", "rating"])
@pytest.mark.parametrize("sort_order", ["asc", "desc"])
@pytest.mark.parametrize("limit", [1, 2, 3])
def test_following_page_tokens_reads_every_movie_once_in_order(
        catalog: CatalogService, sort_field: str, sort_order: str, limit: int) -> None:
    q = _query(sort_field=sort_field, sort_order=sort_order)
    whole = _ids(catalog.browse(q, with_total=False).movies)
    pages: list[list[str]] = []
    token = ""
    for _ in range(len(CATALOG) + 1):
        page = catalog.browse(replace(q, limit=limit, page_token=token), with_total=False)
        pages.append(_ids(page.movies))
        token = page.next_page_token
        if not token:
            break
    assert [m for p in pages for m in p] == whole
    assert len(pages) == -(-len(whole) // limit)  # no empty page at the end


def test_a_token_keeps_its_place_when_movies_arrive_before_it(catalog: CatalogService) -> None:
    q = _query(sort_field="rating", sort_order="desc", limit=3)
    first = catalog.browse(q, with_total=False)
    catalog.import_batch([_movie("z", 2020, 9.9)], ALICE)  # sorts before the first page
    second = catalog.browse(replace(q, page_token=first.next_page_token), with_total=False)
    assert _ids(second.movies) == ["c", "a", "d"]


def test_a_token_from_another_query_is_refused(catalog: CatalogService) -> None:
    token = catalog.browse(_query(limit=2), with_total=False).next_page_token
    with pytest.raises(InvalidArgument, match="other filters or sort order"):
        catalog.browse(_query(limit=2, year=2001, page_token=token), with_total=False)


def test_repeated_pages_come_from_the_cache_until_an_import() -> None:
    service = CatalogService(FakeMovies(), QueryCache(cast(redis.Redis, FakeRedis())))
    service.import_batch(CATALOG, ALICE)
    q = _query(sort_field="rating", limit=3)
    miss = service.browse(q, with_total=True)
    hit = service.browse(q, with_total=True)
    assert (miss.cached, hit.cached) == (False, True)
    assert (hit.movies, hit.next_page_token, hit.total_size) == (
        miss.movies, miss.next_page_token, miss.total_size)
    assert not service.browse(q, with_total=False).cached  # another answer, another entry
    service.import_batch([_movie("0", 2000, 1.0)], ALICE)
    after = service.browse(q, with_total=True)
    assert not after.cached
    assert _ids(after.movies) == ["e", "f", "0"]  # unrated first, then the new 1.0
    assert after.total_size == len(CATALOG) + 1


def test_a_page_over_the_size_bound_is_answered_but_not_cached() -> None:
    """The cache shares Redis with the job queue: a page of long movies would take room that
    hundreds of ordinary pages fit in."""
    store = FakeRedis()
    service = CatalogService(FakeMovies(), QueryCache(cast(redis.Redis, store),
                                                      max_page_bytes=2000))
    service.import_batch([*CATALOG, replace(_movie("long", 1990), overview="x" * 3000)],
                         ALICE)
    small, large = _query(year=2001), _query(year=1990)
    for _ in range(2):
        assert _ids(service.browse(large, with_total=False).movies) == ["long"]
    assert not service.browse(large, with_total=False).cached
    service.browse(small, with_total=False)
    assert service.browse(small, with_total=False).cached
    pages = [key for key in store.values if key.startswith("catalog:page:")]
    assert len(pages) == 1 and all(len(store.values[key]) <= 2000 for key in pages)


def test_vote_counts_from_the_ratings_service_never_go_back_in_time() -> None:
    movies = FakeMovies()
    service = CatalogService(movies)
    service.import_batch([Movie(id="m1", title="One")], ALICE)
    assert service.set_vote_counts("m1", 2, 1, version=3)
    assert not service.set_vote_counts("m1", 1, 1, version=2)  # sent earlier, arrived later
    assert {k: movies.stored("m1")[k] for k in ("upvotes", "downvotes", "score")} == \
        {"upvotes": 2, "downvotes": 1, "score": 1}
    with pytest.raises(NotFound):
        service.set_vote_counts("missing", 1, 0, version=1)
    with pytest.raises(InvalidArgument):
        service.set_vote_counts("m1", -1, 0, version=4)
    assert service.check_movies(["m1", "missing", "x" * 500]) == ["m1"]
