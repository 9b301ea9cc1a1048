"""Unit tests for services/catalog/service.py: query validation, page tokens, keyset clauses."""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from datetime import datetime
from typing import Any, cast

import pytest

from services.catalog.records import Movie
from services.catalog.service import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    MAX_PAGE,
    CatalogService,
    MovieQuery,
    Movies,
    _decode_token,
    _encode_token,
    _segments_after,
    validate,
)
from services.common.errors import InvalidArgument


def _validate(**overrides: Any) -> MovieQuery:
    params: dict[str, Any] = {"page": None, "limit": None, "year": None, "language": "",
                              "sort_field": "", "sort_order": "", "page_token": ""}
    params.update(overrides)
    return validate(**params)


def _token(payload: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")


# --- validate -----------------------------------------------------------------------------------

def test_defaults() -> None:
    q = _validate()
    assert q == MovieQuery(page=1, limit=DEFAULT_LIMIT, year=None, language="",
                           sort_field="release_date", sort_order="asc", page_token="")
    assert (q.page, q.limit, q.sort_field, q.sort_order) == (1, 50, "release_date", "asc")


def test_values_are_normalised_and_kept() -> None:
    q = _validate(page=3, limit=MAX_LIMIT, year=1994, language=" EN ", sort_field=" rating ",
                  sort_order="DESC", page_token="abc")
    assert q == MovieQuery(page=3, limit=1000, year=1994, language="en", sort_field="rating",
                           sort_order="desc", page_token="abc")


def test_bounds_are_inclusive() -> None:
    assert _validate(page=MAX_PAGE).page == MAX_PAGE
    assert _validate(limit=1).limit == 1
    assert _validate(year=1).year == 1
    assert _validate(year=9999).year == 9999


@pytest.mark.parametrize(("param", "value"), [
    ("page", 0), ("page", -1), ("page", MAX_PAGE + 1),
    ("limit", -1), ("limit", 0), ("limit", 1001),
    ("year", 0), ("year", -2000), ("year", 10_000),
    ("sort_field", "foo"), ("sort_field", "vote_average"), ("sort_field", "title"),
    ("sort_order", "up"), ("sort_order", "ascending"),
    ("language", "x" * 21),
])
def test_invalid_parameter_is_named_in_the_error(param: str, value: object) -> None:
    with pytest.raises(InvalidArgument) as info:
        _validate(**{param: value})
    message = str(info.value)
    assert message.startswith(param)
    if param in ("page", "limit", "year", "sort_field", "sort_order"):
        assert repr(value) in message or str(value) in message  # shows what it got


# --- page tokens --------------------------------------------------------------------------------

@pytest.mark.parametrize(("sort_field", "last", "value"), [
    ("release_date", Movie("278", "M", release_date=datetime(1994, 9, 23, 12, 30, 5)),
     datetime(1994, 9, 23, 12, 30, 5)),
    ("rating", Movie("278", "M", vote_average=8.7), 8.7),
    ("rating", Movie("t-0123", "M", vote_average=0.1 + 0.2), 0.1 + 0.2),
    ("rating", Movie("278", "M", vote_average=None), None),
    ("release_date", Movie("278", "M"), None),  # no release date
])
def test_token_round_trip(sort_field: str, last: Movie, value: Any) -> None:
    q = _validate(sort_field=sort_field, year=1994, language="en", sort_order="desc")
    token = _encode_token(q, last)
    assert "=" not in token
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    decoded_value, last_id = _decode_token(replace(q, page_token=token))
    assert decoded_value == value
    assert type(decoded_value) is type(value)
    assert last_id == last.id


def test_token_survives_a_different_page_or_limit() -> None:
    q = _validate(year=2001)
    token = _encode_token(q, Movie("129", "M", release_date=datetime(2001, 7, 20)))
    later = replace(q, page=7, limit=10, page_token=token)
    assert _decode_token(later) == (datetime(2001, 7, 20), "129")


@pytest.mark.parametrize("change", [
    {"year": 1995}, {"year": None}, {"language": "fr"}, {"sort_field": "rating"},
    {"sort_order": "desc"},
])
def test_token_reused_with_other_filters_or_sort_is_refused(change: dict[str, Any]) -> None:
    q = _validate(year=1994, language="en")
    token = _encode_token(q, Movie("278", "M", release_date=datetime(1994, 9, 23),
                                   vote_average=8.7))
    other = replace(q, page_token=token, **change)
    with pytest.raises(InvalidArgument, match="page_token belongs to a query with other"):
        _decode_token(other)


@pytest.mark.parametrize("token", [
    "not a token!",
    "AAAA",
    "%%%",
    "x",
    _token([1, 2, 3]),
    _token("just a string"),
    _token(42),
    _token({"v": 1, "id": "1"}),  # no fingerprint
    _token({"q": [None, "", "release_date", "asc"], "id": "1"}),  # no value
    _token({"q": [None, "", "release_date", "asc"], "v": {"$date": 5}, "id": "1"}),
    _token({"q": [None, "", "release_date", "asc"], "v": {"$date": "yesterday"}, "id": "1"}),
    _token({"q": [None, "", "release_date", "asc"], "v": {"when": "x"}, "id": "1"}),
    base64.urlsafe_b64encode(b"\xff\xfe{not json").decode(),
])
def test_garbage_token_is_refused(token: str) -> None:
    with pytest.raises(InvalidArgument, match="page_token is not valid"):
        _decode_token(_validate(page_token=token))


# --- keyset clauses -----------------------------------------------------------------------------

def test_after_ascending_ties_then_greater_values() -> None:
    assert _segments_after("vote_average", 8.7, "278", descending=False) == [
        {"vote_average": 8.7, "_id": {"$gt": "278"}},
        {"vote_average": {"$gt": 8.7}},
    ]


def test_after_descending_ties_then_smaller_values_then_the_nulls_which_sort_last() -> None:
    day = datetime(1994, 9, 23)
    assert _segments_after("release_date", day, "278", descending=True) == [
        {"release_date": day, "_id": {"$lt": "278"}},
        {"release_date": {"$lt": day}},
        {"release_date": None},
    ]


def test_after_ascending_from_null_continues_with_nulls_then_all_values() -> None:
    assert _segments_after("vote_average", None, "278", descending=False) == [
        {"vote_average": None, "_id": {"$gt": "278"}},
        {"vote_average": {"$ne": None}},
    ]


def test_after_descending_from_null_only_has_later_nulls() -> None:
    assert _segments_after("vote_average", None, "278", descending=True) == [
        {"vote_average": None, "_id": {"$lt": "278"}}]


# --- list() wiring, with a stub that records calls (it does not evaluate queries) ---------------

class RecordingMovies:
    def __init__(self, movies: list[Movie]) -> None:
        self.movies = movies
        self.calls: list[tuple[Any, ...]] = []

    def find_page(self, query: dict[str, Any], sort: list[tuple[str, int]], skip: int,
                  limit: int, then: dict[str, Any] | None = None) -> list[Movie]:
        assert then is None  # only a search has a second stage
        self.calls.append(("find_page", query, sort, skip, limit))
        return self.movies[:limit]

    def count(self, query: dict[str, Any], then: dict[str, Any] | None = None) -> int:
        assert then is None
        self.calls.append(("count", query))
        return 1234


def _movies(n: int) -> list[Movie]:
    return [Movie(str(i), f"M{i}", vote_average=i / 10) for i in range(n)]


def test_list_by_page_asks_for_one_more_and_returns_a_token_for_the_last_movie() -> None:
    movies = RecordingMovies(_movies(4))
    q = _validate(page=2, limit=3, year=2000, sort_field="rating", sort_order="desc")
    page = CatalogService(cast(Movies, movies)).browse(q, with_total=True)
    assert movies.calls[0] == ("find_page", {"release_year": 2000},
                               [("vote_average", -1), ("_id", -1)], 3, 4)
    assert movies.calls[1] == ("count", {"release_year": 2000})
    assert [m.id for m in page.movies] == ["0", "1", "2"]
    assert page.total_size == 1234
    assert _decode_token(replace(q, page_token=page.next_page_token)) == (0.2, "2")


def test_list_last_page_has_no_token_and_no_total_unless_asked() -> None:
    movies = RecordingMovies(_movies(2))
    page = CatalogService(cast(Movies, movies)).browse(_validate(limit=3),
                                                             with_total=False)
    assert page.next_page_token == ""
    assert page.total_size is None
    assert [c[0] for c in movies.calls] == ["find_page"]


def test_list_with_token_ignores_page_and_adds_the_keyset_clause() -> None:
    q = _validate(language="ja", sort_field="rating", limit=2)
    token = _encode_token(q, Movie("129", "M", vote_average=8.5))
    movies = RecordingMovies(_movies(1))
    CatalogService(cast(Movies, movies)).browse(replace(q, page=5, page_token=token),
                                                      with_total=False)
    _, query, sort, skip, limit = movies.calls[0]
    assert query == {"original_language": "ja",
                     **_segments_after("vote_average", 8.5, "129", descending=False)[0]}
    assert sort == [("vote_average", 1), ("_id", 1)]
    assert (skip, limit) == (0, 3)
