"""Property tests of word search: whatever a client sends as `search` (with or without a page
token of its own making), the answer is a page or INVALID_ARGUMENT, never another exception
(a 500), quickly; the normalisation is stable; and every relevance token the catalog writes
reads back as the position it was written for."""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from services.catalog.records import Importer, Movie
from services.catalog.search import MAX_SEARCH_CHARS
from services.catalog.service import (
    MAX_TOKEN_CHARS,
    CatalogService,
    MovieQuery,
    _decode_token,
    _encode_token,
    validate,
)
from services.catalog.words import distinct_words, fold, words
from services.common.errors import InvalidArgument
from tests.fuzz.linear_time import assert_linear
from tests.unit.fakes import FakeMovies

# A deadline catches a pathological example, not a busy machine: 300 ms flaked at a load
# average of 4 (the time's growth is measured by the linear-time tests).
FAST = settings(max_examples=300, deadline=timedelta(seconds=2))
TITLES = ["Amélie", "Star Wars", "Straße der Sehnsucht", "千と千尋の神隠し", "WALL·E",
          "\u0130stanbul Hat\u0131ras\u0131",
          "\uff26\uff55\uff4c\uff4c \uff37\uff49\uff44\uff54\uff48", "Spider-Man: No Way Home"]


def _catalog() -> CatalogService:
    movies = FakeMovies()
    movies.import_many([Movie(str(n), TITLES[n % len(TITLES)], overview=f"story {n} of a star",
                              release_date=datetime(2000, 1, 1 + n % 28),
                              vote_average=n % 10, vote_count=n * 37) for n in range(30)],
                       Importer("u1", "alice"))
    return CatalogService(movies)


CATALOG = _catalog()


def _query(search: str | None, token: str = "", sort_field: str = "") -> MovieQuery:
    return validate(page=None, limit=4, year=None, language="", sort_field=sort_field,
                    sort_order="", page_token=token, search=search)


def _answers_or_refuses(search: str | None, token: str = "", sort_field: str = "") -> None:
    try:
        q = _query(search, token, sort_field)
        CATALOG.browse(q, with_total=True)
    except InvalidArgument:
        return


def _token(payload: Any) -> str:
    raw = json.dumps(payload, allow_nan=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@FAST
@given(st.text(max_size=2 * MAX_SEARCH_CHARS))
def test_any_search_is_a_page_or_invalid_argument(search: str) -> None:
    _answers_or_refuses(search)


@FAST
@given(st.lists(st.sampled_from([*TITLES, "star", "STORY", "of", "-", "?!", " ", "é"]),
                max_size=12).map(" ".join))
def test_searches_of_known_words_are_a_page_or_invalid_argument(search: str) -> None:
    _answers_or_refuses(search)


@FAST
@given(st.text(max_size=200))
def test_folding_is_stable(text: str) -> None:
    folded = fold(text)
    assert fold(folded) == folded
    assert words(folded) == words(text)
    assert all(w == fold(w) for w in words(text))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=20)


@FAST
@given(json_values, json_values, st.sampled_from(["", "rating", "score", "release_date"]))
def test_any_position_in_a_search_token_is_a_page_or_invalid_argument(
        value: Any, last_id: Any, sort_field: str) -> None:
    q = _query("star", sort_field=sort_field)
    fingerprint = [None, "", q.sort_field, q.sort_order, q.terms.digest() if q.terms else ""]
    _answers_or_refuses("star", _token({"q": fingerprint, "v": value, "id": last_id}),
                        sort_field)


@FAST
@given(st.text(min_size=1, max_size=100), st.sampled_from([0, 1]),
       st.floats(min_value=0, max_value=10), st.text(min_size=1, max_size=MAX_SEARCH_CHARS))
def test_every_relevance_token_written_reads_back(movie_id: str, tier: int, rating: float,
                                                  search: str) -> None:
    try:
        q = _query(search)
    except InvalidArgument:
        return
    token = _encode_token(q, Movie(movie_id, "M", weighted_rating=rating), tier)
    assert len(token) <= MAX_TOKEN_CHARS
    assert _decode_token(replace(q, page_token=token)) == ((tier, rating), movie_id)


def test_the_words_of_a_movie_take_linear_time() -> None:
    assert_linear(lambda n: "Amélie, ein Straßenfilm! " * n, distinct_words, 20_000)
