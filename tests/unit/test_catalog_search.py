"""Word search and the score order on an in-memory repository: what a word is, what a search
asks for, the relevance order and its page tokens, searches with filters and sort fields, the
score order, and the vote counts laid over cached pages."""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from datetime import datetime
from typing import Any, cast

import bson
import pytest
import redis

from services.catalog.cache import QueryCache
from services.catalog.records import Importer, Movie
from services.catalog.repository import _replacing, search_fields
from services.catalog.search import (
    MAX_SEARCH_CHARS,
    MAX_SEARCH_WORDS,
    SearchTerms,
    parse_search,
)
from services.catalog.server import rest_json
from services.catalog.service import CatalogService, MovieQuery, _decode_token, validate
from services.catalog.weighted_rating import MEAN_RATING, MIN_VOTES, weighted_rating
from services.catalog.words import MAX_WORD_CHARS, distinct_words, fold, words
from services.common.errors import InvalidArgument, NotFound, Unavailable
from tests.unit.fakes import FakeMovies, FakeRedis

ALICE = Importer("u1", "alice")


def _query(**params: Any) -> MovieQuery:
    defaults: dict[str, Any] = {"page": None, "limit": None, "year": None, "language": "",
                                "sort_field": "", "sort_order": "", "page_token": ""}
    return validate(**{**defaults, **params})


# --- words --------------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "folded"), [
    ("Amélie", "amelie"), ("STAR Wars", "star wars"), ("Straße", "strasse"),
    ("ﬁlm", "film"), ("İstanbul", "istanbul"), ("\uff33\uff34\uff21\uff32", "star"), ("Ça", "ca"),
    ("Pokémon", "pokemon"), ("Ångström", "angstrom"),
])
def test_fold_drops_case_accents_and_compatibility_forms(text: str, folded: str) -> None:
    assert fold(text) == folded
    assert fold(folded) == folded


@pytest.mark.parametrize(("text", "expected"), [
    ("Star Wars: Episode IV - A New Hope", ["star", "wars", "episode", "iv", "a", "new",
                                           "hope"]),
    ("Schindler's List", ["schindler", "s", "list"]),
    ("Spider-Man 2", ["spider", "man", "2"]),
    ("snake_case...and  spaces", ["snake", "case", "and", "spaces"]),
    ("WALL·E", ["wall", "e"]),
    ("千と千尋の神隠し", ["千と千尋の神隠し"]),
    ("?!... — ¿¡", []),
    ("", []),
])
def test_words_are_runs_of_letters_and_digits(text: str, expected: list[str]) -> None:
    assert words(text) == expected


def test_a_long_word_is_cut_alike_on_both_sides() -> None:
    long = "x" * (MAX_WORD_CHARS + 30)
    assert words(long) == ["x" * MAX_WORD_CHARS]
    assert parse_search(long).words == ("x" * MAX_WORD_CHARS,)


def test_distinct_words_keep_the_first_order_title_first_and_are_bounded() -> None:
    assert distinct_words("The Thing", "the thing from another world") == [
        "the", "thing", "from", "another", "world"]
    assert distinct_words(" ".join(f"w{n}" for n in range(50)), limit=10) == [
        f"w{n}" for n in range(10)]


def test_search_fields_hold_the_title_words_all_words_and_the_weighted_rating() -> None:
    movie = Movie("1", "Amélie", overview="Amélie, an innocent and naive girl in Paris",
                  vote_average=7.9, vote_count=10_000)
    fields = search_fields(movie)
    assert fields["title_words"] == ["amelie"]
    assert fields["words"] == ["amelie", "an", "innocent", "and", "naive", "girl", "in",
                               "paris"]
    assert fields["weighted_rating"] == pytest.approx(
        (10_000 * 7.9 + MIN_VOTES * MEAN_RATING) / (10_000 + MIN_VOTES))


@pytest.mark.parametrize(("average", "count", "expected"), [
    (None, None, MEAN_RATING), (9.0, 0, MEAN_RATING), (None, 100, MEAN_RATING),
    (10.0, MIN_VOTES, (10.0 + MEAN_RATING) / 2),
])
def test_weighted_rating_pulls_few_votes_towards_the_mean(average: float | None,
                                                          count: int | None,
                                                          expected: float) -> None:
    assert weighted_rating(average, count) == pytest.approx(expected)


def test_many_votes_outrank_a_few_perfect_ones() -> None:
    assert weighted_rating(8.2, 17_480) > weighted_rating(10.0, 3)


# --- the search parameter -------------------------------------------------------------------

def test_a_search_is_its_distinct_folded_words_driven_by_the_longest() -> None:
    terms = parse_search("  The GODFATHER the  ")
    assert terms == SearchTerms(("godfather", "the"))
    assert (terms.driver, terms.others) == ("godfather", ["the"])
    assert parse_search("godfather, THE!") == terms
    assert SearchTerms(("ab", "cd")).driver == "cd"  # the same length: the last of them


@pytest.mark.parametrize(("text", "message"), [
    ("", "search must not be empty"),
    ("   ", "search must not be empty"),
    ("?!, ... --", "search must contain letters or digits"),
    ("x" * (MAX_SEARCH_CHARS + 1), f"at most {MAX_SEARCH_CHARS} characters"),
    (" ".join(["a"] * (MAX_SEARCH_WORDS + 1)), f"at most {MAX_SEARCH_WORDS} words"),
])
def test_bad_searches_are_refused_naming_the_parameter(text: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message) as info:
        _query(search=text)
    assert str(info.value).startswith("search")


def test_ten_words_and_two_hundred_characters_are_allowed() -> None:
    assert len(_query(search=" ".join(f"w{n}" for n in range(10))).search) == 10
    assert _query(search="y" * MAX_SEARCH_CHARS).search


def test_the_relevance_order_is_a_searchs_default_and_has_no_direction() -> None:
    q = _query(search="star")
    assert (q.sort_field, q.sort_order, q.search) == ("relevance", "", ("star",))
    assert _query(search="star", sort_field="relevance").sort_field == "relevance"
    assert _query(search="star", sort_field="rating").sort_order == "asc"
    with pytest.raises(InvalidArgument, match=r"^sort_order needs a sort_field"):
        _query(search="star", sort_order="desc")
    with pytest.raises(InvalidArgument, match=r"^sort_field must be one of release_date, "
                                              r"rating, score \(got 'relevance'"):
        _query(sort_field="relevance")


# --- relevance ----------------------------------------------------------------------------------

def _movie(movie_id: str, title: str, overview: str = "", rating: float = 7.0,
           votes: int = 1000, year: int = 2000, language: str = "en") -> Movie:
    return Movie(movie_id, title, overview=overview, vote_average=rating, vote_count=votes,
                 release_date=datetime(year, 1, 1), original_language=language)


# "star wars": three title matches (one a tie on the rating), two overview-only ones (one with
# "star" in its title), and movies that hold only one of the words.
STARS = [
    _movie("sw", "Star Wars", "A long time ago", 8.2, 17480, 1977),
    _movie("rogue", "Rogue One: A Star Wars Story", "Rebels steal plans", 7.5, 13304, 2016),
    _movie("lego", "LEGO Star Wars", "Bricks", 7.5, 13304, 2016),
    _movie("trek", "Star Trek", "Not star wars at all", 7.4, 8000, 2009, "fr"),
    _movie("doc", "Empire of Dreams", "The story of the STAR WARS trilogy", 8.0, 500, 2004),
    _movie("sun", "Star", "A film about a star", 6.0, 300),
    _movie("war", "War of the Worlds", "Wars between worlds", 6.5, 7000, 2005),
]
STAR_WARS = ["sw", "lego", "rogue", "trek", "doc"]  # titles by rating then _id; overviews


@pytest.fixture
def stars() -> CatalogService:
    service = CatalogService(FakeMovies())
    service.import_batch(STARS, ALICE)
    return service


def _ids(movies: list[Movie]) -> list[str]:
    return [m.id for m in movies]


def test_titles_rank_above_overviews_then_by_weighted_rating_then_id(stars: CatalogService
                                                                     ) -> None:
    page = stars.browse(_query(search="STAR wars"), with_total=True)
    assert _ids(page.movies) == STAR_WARS
    assert page.total_size == len(STAR_WARS)
    assert _ids(stars.browse(_query(search="wars star"), with_total=False).movies) == STAR_WARS


def test_one_word_searches_title_and_overview_alike(stars: CatalogService) -> None:
    assert _ids(stars.browse(_query(search="bricks"), with_total=False).movies) == ["lego"]
    # The star-titled movies, best weighted rating first, then "doc" for its overview.
    assert _ids(stars.browse(_query(search="star"), with_total=False).movies) == [
        "sw", "lego", "rogue", "trek", "sun", "doc"]
    assert stars.browse(_query(search="nothing"), with_total=True).movies == []


def test_search_combines_with_year_and_language(stars: CatalogService) -> None:
    assert _ids(stars.browse(_query(search="star wars", year=2016),
                             with_total=True).movies) == ["lego", "rogue"]
    assert _ids(stars.browse(_query(search="star wars", language="FR"),
                             with_total=True).movies) == ["trek"]


def _all_pages(catalog: CatalogService, q: MovieQuery) -> list[list[str]]:
    pages: list[list[str]] = []
    token = ""
    for _ in range(50):
        page = catalog.browse(replace(q, page_token=token), with_total=False)
        pages.append(_ids(page.movies))
        token = page.next_page_token
        if not token:
            return pages
    raise AssertionError("tokens do not end")


@pytest.mark.parametrize("limit", [1, 2, 3, 4, 5, 6])
@pytest.mark.parametrize("search", ["star wars", "star", "wars"])
def test_relevance_tokens_and_page_numbers_read_every_match_once_in_order(
        stars: CatalogService, limit: int, search: str) -> None:
    whole = _ids(stars.browse(_query(search=search), with_total=False).movies)
    by_token = _all_pages(stars, _query(search=search, limit=limit))
    assert [m for p in by_token for m in p] == whole
    assert len(by_token) == -(-len(whole) // limit)
    by_number = [_ids(stars.browse(_query(search=search, limit=limit, page=n),
                                   with_total=False).movies)
                 for n in range(1, len(by_token) + 2)]
    assert by_number == [*by_token, []]


def test_a_relevance_token_holds_the_tier_the_rating_and_the_id(stars: CatalogService) -> None:
    q = _query(search="star wars", limit=3)
    token = stars.browse(q, with_total=False).next_page_token
    assert _decode_token(replace(q, page_token=token)) == (
        (0, weighted_rating(7.5, 13304)), "rogue")
    q = _query(search="star wars", limit=4)
    token = stars.browse(q, with_total=False).next_page_token
    assert _decode_token(replace(q, page_token=token)) == (
        (1, weighted_rating(7.4, 8000)), "trek")


def test_a_token_of_another_search_is_refused(stars: CatalogService) -> None:
    token = stars.browse(_query(search="star", limit=1), with_total=False).next_page_token
    for other in ({"search": "wars"}, {"search": "star", "year": 1977}, {}):
        with pytest.raises(InvalidArgument, match="other filters"):
            stars.browse(_query(limit=1, page_token=token, **other), with_total=False)


@pytest.mark.parametrize("value", [None, [2, 7.0], [True, 7.0], [0.0, 7.0], [0, "7"], [0],
                                   [0, None], {"a": 1}, "ab", [0, 7.0, 1]])
def test_a_relevance_token_with_a_bad_position_is_refused(stars: CatalogService,
                                                          value: Any) -> None:
    q = _query(search="star", limit=1)
    good = stars.browse(q, with_total=False).next_page_token
    payload = json_payload(good)
    forged = encode_payload({**payload, "v": value})
    with pytest.raises(InvalidArgument, match="page_token is not valid"):
        stars.browse(replace(q, page_token=forged), with_total=False)


def json_payload(token: str) -> dict[str, Any]:
    return dict(json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))))


def encode_payload(payload: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")


@pytest.mark.parametrize("sort_field", ["release_date", "rating", "score"])
@pytest.mark.parametrize("sort_order", ["asc", "desc"])
def test_a_search_with_a_sort_field_keeps_that_order_across_tokens(
        stars: CatalogService, sort_field: str, sort_order: str) -> None:
    q = _query(search="star wars", sort_field=sort_field, sort_order=sort_order)
    whole = stars.browse(q, with_total=True)
    assert sorted(_ids(whole.movies)) == sorted(STAR_WARS)
    assert whole.total_size == len(STAR_WARS)
    pages = _all_pages(stars, replace(q, limit=2))
    assert [m for p in pages for m in p] == _ids(whole.movies)
    if sort_field == "release_date":
        assert _ids(whole.movies)[0] == ("sw" if sort_order == "asc" else "rogue")


# --- score --------------------------------------------------------------------------------------

VOTES = {"sw": (5, 1), "lego": (0, 2), "rogue": (2, 0), "trek": (3, 1), "doc": (1, 3)}


def _vote(catalog: CatalogService, votes: dict[str, tuple[int, int]], version: int = 1) -> None:
    for movie_id, (up, down) in votes.items():
        assert catalog.set_vote_counts(movie_id, up, down, version)


@pytest.mark.parametrize("sort_order", ["asc", "desc"])
@pytest.mark.parametrize("limit", [1, 2, 3, 7])
def test_the_score_order_is_up_minus_down_ties_by_id_zero_without_votes(
        stars: CatalogService, sort_order: str, limit: int) -> None:
    _vote(stars, VOTES)
    # Scores: sw 4, rogue 2, trek 2, sun 0, war 0, doc -2, lego -2.
    ascending = ["doc", "lego", "sun", "war", "rogue", "trek", "sw"]
    expected = ascending if sort_order == "asc" else ascending[::-1]
    q = _query(sort_field="score", sort_order=sort_order)
    assert _ids(stars.browse(q, with_total=False).movies) == expected
    pages = _all_pages(stars, replace(q, limit=limit))
    assert [m for p in pages for m in p] == expected


def test_a_movie_stored_before_scores_sorts_as_null_until_the_upgrade() -> None:
    movies = FakeMovies()
    catalog = CatalogService(movies)
    catalog.import_batch([_movie("a", "A"), _movie("b", "B")], ALICE)
    _vote(catalog, {"a": (0, 1)})
    movies.put_document({"_id": "old", "title": "Old"})  # no score, no counts
    q = _query(sort_field="score")
    assert _ids(catalog.browse(q, with_total=False).movies) == ["old", "a", "b"]
    assert [m for p in _all_pages(catalog, replace(q, limit=1)) for m in p] == ["old", "a", "b"]
    assert catalog.get("old").upvotes == 0


@pytest.mark.parametrize("value", [1.5, True, "3", 2**63, -(2**63) - 1, [1]])
def test_a_score_token_holds_an_exact_integer(stars: CatalogService, value: Any) -> None:
    q = _query(sort_field="score", limit=1)
    good = stars.browse(q, with_total=False).next_page_token
    assert _decode_token(replace(q, page_token=good))[0] == 0
    forged = encode_payload({**json_payload(good), "v": value})
    with pytest.raises(InvalidArgument, match="page_token is not valid"):
        stars.browse(replace(q, page_token=forged), with_total=False)


# --- counts beside the movies, and the cache ----------------------------------------------------

@pytest.fixture
def cached() -> tuple[CatalogService, FakeRedis]:
    store = FakeRedis()
    service = CatalogService(FakeMovies(), QueryCache(cast(redis.Redis, store)))
    service.import_batch(STARS, ALICE)
    return service, store


@pytest.mark.parametrize("params", [{}, {"search": "star wars"},
                                    {"search": "star", "sort_field": "rating"}])
def test_a_cached_page_shows_the_counts_as_they_are_now(
        cached: tuple[CatalogService, FakeRedis], params: dict[str, Any]) -> None:
    catalog, _ = cached
    q = _query(**params)
    assert not catalog.browse(q, with_total=False).cached
    _vote(catalog, VOTES)
    page = catalog.browse(q, with_total=False)
    assert page.cached
    shown = {m.id: (m.upvotes, m.downvotes) for m in page.movies}
    assert shown == {i: VOTES.get(i, (0, 0)) for i in shown}
    _vote(catalog, {"sw": (6, 1)}, version=2)
    again = catalog.browse(q, with_total=False)
    assert again.cached and next(m.upvotes for m in again.movies if m.id == "sw") == 6


def test_cached_pages_hold_no_counts(cached: tuple[CatalogService, FakeRedis]) -> None:
    catalog, store = cached
    _vote(catalog, VOTES)
    catalog.browse(_query(), with_total=True)
    pages = [bson.decode(v) for k, v in store.values.items() if k.startswith("catalog:page:")]
    assert pages and all(set(m).isdisjoint({"upvotes", "downvotes", "score", "words"})
                         for page in pages for m in page["movies"])


def test_pages_by_score_are_never_cached(cached: tuple[CatalogService, FakeRedis]) -> None:
    catalog, _ = cached
    q = _query(sort_field="score", sort_order="desc", limit=2)
    assert _ids(catalog.browse(q, with_total=False).movies) == ["war", "trek"]
    _vote(catalog, {"lego": (9, 0)})
    page = catalog.browse(q, with_total=False)
    assert not page.cached and _ids(page.movies) == ["lego", "war"]


def test_an_import_keeps_the_counts_and_they_show_in_rest_and_proto() -> None:
    catalog = CatalogService(FakeMovies())
    catalog.import_batch([_movie("m", "Movie")], ALICE)
    _vote(catalog, {"m": (3, 1)})
    catalog.import_batch([_movie("m", "Movie, renamed")], ALICE)
    movie = catalog.get("m")
    assert (movie.title, movie.upvotes, movie.downvotes) == ("Movie, renamed", 3, 1)
    shown = rest_json(movie)
    assert (shown["upvotes"], shown["downvotes"]) == (3, 1)
    assert set(shown).isdisjoint({"words", "title_words", "weighted_rating", "score",
                                  "search_version", "votes_version"})


def test_a_replace_sets_the_movie_but_never_its_counts() -> None:
    update = _replacing({"_id": "m", "title": "T", "upvotes": 0, "downvotes": 0, "score": 0})
    assert update["$set"] == {"title": "T"}
    assert update["$inc"] == {"upvotes": 0, "downvotes": 0, "score": 0}


# --- deleting a movie deletes its ratings first -------------------------------------------------

def test_deleting_a_movie_deletes_its_ratings_first() -> None:
    deleted: list[str] = []
    catalog = CatalogService(FakeMovies(), delete_ratings=deleted.append)
    catalog.import_batch([_movie("m", "Movie")], ALICE)
    with pytest.raises(NotFound):
        catalog.delete("other")
    assert deleted == []  # an unknown movie is not sent on
    catalog.delete("m")
    assert deleted == ["m"]
    with pytest.raises(NotFound):
        catalog.get("m")


def test_when_the_ratings_cannot_be_deleted_the_movie_stays() -> None:
    def unavailable(movie_id: str) -> None:
        raise Unavailable("the ratings service is down")

    catalog = CatalogService(FakeMovies(), delete_ratings=unavailable)
    catalog.import_batch([_movie("m", "Movie")], ALICE)
    with pytest.raises(Unavailable):
        catalog.delete("m")
    assert catalog.get("m").title == "Movie"
