"""Property tests of the catalog's page tokens: whatever a client sends as `page_token`, the
answer is a page or INVALID_ARGUMENT (never another exception, which would be a 500), quickly;
and every token the catalog writes reads back as the position it was written for."""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.catalog.records import Importer, Movie
from services.catalog.service import (
    MAX_TOKEN_CHARS,
    CatalogService,
    MovieQuery,
    _decode_token,
    _encode_token,
    validate,
)
from services.common.errors import InvalidArgument
from tests.fuzz.linear_time import assert_linear
from tests.unit.fakes import FakeMovies

# A deadline catches a pathological example, not a busy machine: 300 ms flaked at a load
# average of 4 (the time's growth is measured by the linear-time tests).
FAST = settings(max_examples=300, deadline=timedelta(seconds=2))
FINGERPRINT = [None, "", "release_date", "asc"]


def _query(token: str, sort_field: str = "release_date") -> MovieQuery:
    return validate(page=None, limit=None, year=None, language="", sort_field=sort_field,
                    sort_order="", page_token=token)


def _token(payload: Any) -> str:
    raw = json.dumps(payload, allow_nan=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _catalog() -> CatalogService:
    movies = FakeMovies()
    movies.import_many([Movie(str(n), f"M{n}", release_date=datetime(2000, 1, 1 + n % 28),
                              vote_average=n % 10) for n in range(30)], Importer("u1", "alice"))
    return CatalogService(movies)


def _answers_or_refuses(token: str, sort_field: str = "release_date") -> None:
    """Decoding, and browsing with, `token` either works or says the token is not valid."""
    q = _query(token, sort_field)
    try:
        value, last_id = _decode_token(q)
    except InvalidArgument:
        return
    assert value is None or isinstance(value, datetime | float)
    assert isinstance(last_id, str)
    _catalog().browse(q, with_total=True)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=20)


@FAST
@given(st.text(max_size=2 * MAX_TOKEN_CHARS))
def test_any_text_is_a_page_or_invalid_argument(token: str) -> None:
    _answers_or_refuses(token)


@FAST
@given(st.dictionaries(st.sampled_from(["q", "v", "id", "x"]), json_values),
       st.sampled_from(["release_date", "rating"]))
def test_any_json_in_a_token_is_a_page_or_invalid_argument(payload: dict[str, Any],
                                                           sort_field: str) -> None:
    _answers_or_refuses(_token(payload), sort_field)


@FAST
@given(st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(10**400), max_value=10**400), st.floats(),
    st.text(max_size=40), st.lists(st.integers(), max_size=3),
    st.dictionaries(st.just("$date"), json_values | st.text(max_size=40), max_size=1),
    st.builds(lambda d: {"$date": d.isoformat()}, st.datetimes(timezones=st.timezones())),
), st.sampled_from(["release_date", "rating"]), json_values)
def test_any_sort_value_and_id_in_a_matching_token(value: Any, sort_field: str,
                                                   last_id: Any) -> None:
    fingerprint = [None, "", sort_field, "asc"]
    _answers_or_refuses(_token({"q": fingerprint, "v": value, "id": last_id}), sort_field)


@pytest.mark.parametrize("depth", [10, 100, 1_000, 100_000])
def test_deeply_nested_tokens_are_refused(depth: int) -> None:
    for payload in ("[" * depth, '{"q":' * depth, "[" * depth + "]" * depth):
        token = base64.urlsafe_b64encode(payload.encode()).decode()
        with pytest.raises(InvalidArgument, match="page_token is not valid"):
            _decode_token(_query(token))


@FAST
@given(st.text(min_size=1, max_size=100),
       st.none() | st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)),
       st.none() | st.floats(min_value=0, max_value=10),
       st.sampled_from(["release_date", "rating"]), st.sampled_from(["asc", "desc"]))
def test_every_token_written_reads_back(movie_id: str, release: datetime | None,
                                        rating: float | None, sort_field: str,
                                        order: str) -> None:
    q = replace(_query("", sort_field), sort_order=order)
    last = Movie(movie_id, "M", release_date=release, vote_average=rating)
    token = _encode_token(q, last)
    assert len(token) <= MAX_TOKEN_CHARS
    expected = release if sort_field == "release_date" else rating
    assert _decode_token(replace(q, page_token=token)) == (expected, movie_id)


def test_decoding_time_does_not_grow_faster_than_the_token() -> None:
    def nested(size: int) -> MovieQuery:
        return _query(base64.urlsafe_b64encode(b"[" * size).decode())

    def refuse_often(q: MovieQuery) -> None:
        for _ in range(2000):
            with pytest.raises(InvalidArgument):
                _decode_token(q)

    # Both sizes are over the limit, so both are refused unread: the time stays flat.
    assert_linear(nested, refuse_often, 1 << 20)
    # Under the limit, decoding is linear in the token.
    assert_linear(lambda n: _query(_token({"q": FINGERPRINT, "v": None, "id": "x" * n})),
                  lambda q: [_decode_token(q) for _ in range(2000)], MAX_TOKEN_CHARS // 4)
