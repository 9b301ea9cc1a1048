"""Word search over the TMDB top-10k file, against our own reading of it, and the vote counts
beside every movie: through the gateway (REST and /v1), with the catalog's internal
SetVoteCounts called directly as the ratings service calls it."""

from __future__ import annotations

import csv
import re
import time
import unicodedata
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlencode

import grpc
import pytest
import requests
from pymongo import MongoClient
from pymongo.database import Database

from devstack.stack import Stack
from marquee.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from services.catalog.migration import upgrade_outdated
from services.catalog.repository import MovieRepository
from services.catalog.weighted_rating import weighted_rating
from services.common.access import SERVICE_KEY_HEADER
from tests.integration.conftest import TMDB, Api, User


def _words(text: str) -> set[str]:
    """Our own reading of "a word, without case or accents"."""
    stripped = "".join(c for c in unicodedata.normalize("NFKD", text)
                       if not unicodedata.combining(c))
    return set(re.findall(r"[^\W_]+", stripped.lower()))


def _tmdb() -> dict[str, dict[str, Any]]:
    with open(TMDB, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))[1:]  # the file's first row is a placeholder
    return {r["id"]: {"title": r["title"], "language": r["original_language"],
                      "year": r["release_date"][:4],
                      "title_words": _words(r["title"]),
                      "words": _words(r["title"] + " " + r["overview"]),
                      "rank": weighted_rating(float(r["vote_average"]), int(r["vote_count"])),
                      "vote_average": float(r["vote_average"])}
            for r in rows}


TMDB_MOVIES = _tmdb()


def _relevance(query: str, **filters: str) -> list[str]:
    """The TMDB ids that match, in the relevance order: every word in the title first, then by
    weighted rating (best first), then _id."""
    wanted = _words(query)
    found = [(i, m) for i, m in TMDB_MOVIES.items() if wanted <= m["words"]
             and all(m[k] == v for k, v in filters.items())]
    found.sort(key=lambda f: (not wanted <= f[1]["title_words"], -f[1]["rank"], f[0]))
    return [i for i, _ in found]


def _ours(movies: list[dict[str, Any]]) -> list[str]:
    """The TMDB movies among `movies`, in order: other modules store copies of them."""
    return [m["_id"] for m in movies if m["_id"] in TMDB_MOVIES]


@pytest.fixture(scope="module")
def user(api: Api, tmdb_ingested: dict[str, Any]) -> User:
    return api.register("searcher")


def _pages(api: Api, user: User, path: str = "/movies", **params: Any
           ) -> Iterator[requests.Response]:
    """Every page of a query, following the next page's token (a header on /movies, a field on
    /v1/movies)."""
    token = ""
    while True:
        r = api.get(path, headers=user.headers,
                    params={**params, **({"page_token": token} if token else {})})
        assert r.status_code == 200, r.text
        yield r
        token = r.headers.get("x-next-page-token", "") if path == "/movies" \
            else r.json().get("next_page_token", "")
        if not token:
            return


def _search(api: Api, user: User, **params: Any) -> list[dict[str, Any]]:
    return [m for r in _pages(api, user, limit=1000, **params) for m in r.json()]


@pytest.mark.parametrize("query", ["amelie", "AMÉLIE", "Amélie!", "  amélie  "])
def test_accents_case_and_punctuation_do_not_matter(api: Api, user: User, query: str) -> None:
    assert _ours(_search(api, user, search=query))[0] == "194"  # Amélie


def test_star_wars_ranks_the_obvious_match_first_and_matches_our_reading(api: Api, user: User
                                                                         ) -> None:
    found = _search(api, user, search="STAR wars")
    assert _ours(found) == _relevance("star wars")
    # Other modules store copies of TMDB movies under other ids: the first is a "Star Wars",
    # and among the TMDB ones the order is the obvious one.
    assert found[0]["title"] == "Star Wars"
    assert [TMDB_MOVIES[i]["title"] for i in _ours(found)[:2]] == \
        ["Star Wars", "Rogue One: A Star Wars Story"]


def test_a_word_only_in_overviews_finds_its_movie(api: Api, user: User) -> None:
    assert not any("dufresne" in m["title_words"] for m in TMDB_MOVIES.values())
    assert _ours(_search(api, user, search="Dufresne")) == ["278"]  # The Shawshank Redemption


def test_search_combines_with_year_and_language(api: Api, user: User) -> None:
    assert _ours(_search(api, user, search="star wars", year=1977)) == ["11"]
    french = _search(api, user, search="love", language="fr")
    assert {m["original_language"] for m in french} == {"fr"}
    assert _ours(french) == _relevance("love", language="fr")


def test_a_sort_field_replaces_the_relevance_order(api: Api, user: User) -> None:
    found = _ours(_search(api, user, search="star wars", sort_field="rating",
                          sort_order="desc"))
    assert found == sorted(_relevance("star wars"),
                           key=lambda i: (TMDB_MOVIES[i]["vote_average"], i), reverse=True)


def test_paging_by_token_or_number_reads_the_unpaged_list(api: Api, user: User) -> None:
    whole = [m["_id"] for m in _search(api, user, search="war")]
    assert _ours([{"_id": i} for i in whole]) == _relevance("war")
    by_token = [[m["_id"] for m in r.json()]
                for r in _pages(api, user, search="war", limit=40)]
    assert [i for page in by_token for i in page] == whole
    assert all(len(page) == 40 for page in by_token[:-1])
    second = api.get("/movies", headers=user.headers,
                     params={"search": "war", "limit": 40, "page": 2}).json()
    assert [m["_id"] for m in second] == whole[40:80]
    typed = list(_pages(api, user, "/v1/movies", search="war", limit=100))
    assert [m["id"] for r in typed for m in r.json()["movies"]] == whole
    assert {int(r.json()["total_size"]) for r in typed} == {len(whole)}


@pytest.mark.parametrize(("params", "message"), [
    ({"search": ""}, "search must not be empty"),
    ({"search": "   "}, "search must not be empty"),
    ({"search": "?! ..."}, "search must contain letters or digits"),
    ({"search": " ".join("abcdefghijk")}, "search must have at most 10 words"),
    ({"search": "x" * 201}, "search must be at most 200 characters"),
    ({"search": "star", "sort_order": "desc"}, "sort_order needs a sort_field"),
    ({"sort_field": "relevance"}, "sort_field must be one of"),
    ({"search": "star", "sort_field": "votes"}, "sort_field must be one of"),
])
def test_bad_searches_are_400_naming_the_parameter(api: Api, user: User, params: dict[str, Any],
                                                   message: str) -> None:
    query = urlencode(params, quote_via=quote)  # spaces as %20: Envoy reads + as a plus
    for path in ("/movies", "/v1/movies"):
        r = api.get(f"{path}?{query}", headers=user.headers)
        assert r.status_code == 400, r.text
        assert message in r.json()["message"]


def test_a_token_of_another_search_is_400(api: Api, user: User) -> None:
    r = api.get("/movies", headers=user.headers, params={"search": "war", "limit": 2})
    token = r.headers["x-next-page-token"]
    r = api.get("/movies", headers=user.headers,
                params={"search": "love", "limit": 2, "page_token": token})
    assert r.status_code == 400 and "page_token" in r.json()["message"]


# --- vote counts beside the movies --------------------------------------------------------------

# Movies of a release year and a word no other module uses.
YEAR = 1871
WORD = "quorvaxine"
HEADER = "id,title,genre,original_language,overview,popularity,release_date,vote_average," \
         "vote_count\n"
COUNTED = {"87100001": "Alpha", "87100002": "Beta", "87100003": "Gamma"}


@pytest.fixture(scope="module")
def counted(api: Api, user: User) -> list[str]:
    rows = "".join(f"{i},{title} {WORD},Drama,en,x,1.0,{YEAR}-01-01,6.0,10\n"
                   for i, title in COUNTED.items())
    task = api.wait_task(user, api.upload_ok(user, (HEADER + rows).encode()))
    assert task["rows_imported"] == len(COUNTED), task
    return list(COUNTED)


@pytest.fixture(scope="module")
def set_counts(stack: Stack) -> Iterator[Any]:
    """SetVoteCounts as the ratings service calls it: on the catalog's port, with the service
    key, each call a newer version."""
    key = ((SERVICE_KEY_HEADER, stack.settings.service_key()),)
    with grpc.insecure_channel(f"127.0.0.1:{stack.ports['catalog']}") as channel:
        stub = catalog_pb2_grpc.CatalogServiceStub(channel)

        def send(movie_id: str, upvotes: int, downvotes: int) -> None:
            reply = stub.SetVoteCounts(catalog_pb2.SetVoteCountsRequest(
                movie_id=movie_id, upvotes=upvotes, downvotes=downvotes,
                version=time.time_ns()), metadata=key, timeout=30)
            assert reply.applied

        yield send


def _counts(movies: list[dict[str, Any]]) -> dict[str, tuple[int, int]]:
    return {m["_id"]: (m["upvotes"], m["downvotes"]) for m in movies}


def test_every_movie_shows_its_counts_zero_without_votes(api: Api, user: User,
                                                         counted: list[str]) -> None:
    page = api.get("/movies", headers=user.headers, params={"year": YEAR}).json()
    assert _counts(page) == dict.fromkeys(counted, (0, 0))
    one = api.get(f"/movies/{counted[0]}", headers=user.headers).json()
    assert (one["upvotes"], one["downvotes"]) == (0, 0)
    assert set(one).isdisjoint({"words", "title_words", "weighted_rating", "score",
                                "search_version", "votes_version"})


def test_the_next_read_shows_new_counts_even_from_the_cache(api: Api, user: User,
                                                            counted: list[str],
                                                            set_counts: Any) -> None:
    params = {"year": YEAR}
    for _ in range(2):  # the second is a hit (unless an import elsewhere retired the page)
        api.get("/movies", headers=user.headers, params=params)
    for up, down in ((5, 2), (6, 2), (6, 3)):
        set_counts(counted[0], up, down)
        r = api.get("/movies", headers=user.headers, params=params)
        assert _counts(r.json())[counted[0]] == (up, down), r.headers.get("x-cache")
        one = api.get(f"/movies/{counted[0]}", headers=user.headers).json()
        assert (one["upvotes"], one["downvotes"]) == (up, down)
        typed = api.get(f"/v1/movies/{counted[0]}", headers=user.headers).json()
        assert (typed["upvotes"], typed["downvotes"]) == (str(up), str(down))  # int64
    hits = [api.get("/movies", headers=user.headers, params=params) for _ in range(3)]
    assert any(r.headers["x-cache"] == "hit" for r in hits)
    assert all(_counts(r.json())[counted[0]] == (6, 3) for r in hits)
    listed = api.get("/v1/movies", headers=user.headers, params=params).json()["movies"]
    assert {m["id"]: m["upvotes"] for m in listed}[counted[0]] == "6"


def test_sort_by_score_orders_by_the_counts_and_pages_by_token(api: Api, user: User,
                                                               counted: list[str],
                                                               set_counts: Any) -> None:
    alpha, beta, gamma = counted
    set_counts(alpha, 1, 4)  # -3
    set_counts(beta, 7, 0)  # 7
    set_counts(gamma, 2, 2)  # 0
    for order, expected in (("desc", [beta, gamma, alpha]), ("asc", [alpha, gamma, beta])):
        params: dict[str, Any] = {"year": YEAR, "sort_field": "score", "sort_order": order}
        pages = [[m["_id"] for m in r.json()] for r in _pages(api, user, limit=1, **params)]
        assert pages == [[i] for i in expected]
        searched = _search(api, user, search=WORD, sort_field="score", sort_order=order)
        assert [m["_id"] for m in searched] == expected
    set_counts(alpha, 9, 0)  # never cached: the next read has the new order
    r = api.get("/movies", headers=user.headers,
                params={"year": YEAR, "sort_field": "score", "sort_order": "desc"})
    assert [m["_id"] for m in r.json()] == [alpha, beta, gamma]
    assert r.headers["x-cache"] == "miss"


# --- the upgrade of movies stored before search -------------------------------------------------

@pytest.fixture(scope="module")
def db(stack: Stack) -> Iterator[Database]:
    client: MongoClient = MongoClient(stack.env["MONGO_URI"])
    yield client[stack.settings.mongo_db]
    client.close()


def test_the_upgrade_gives_older_movies_words_a_rating_and_a_score(api: Api, user: User,
                                                                   db: Database) -> None:
    db["catalog_movies"].insert_one({
        "_id": "87200001", "title": "Vieux Film Oublié", "original_language": "fr",
        "overview": "Stored before search", "genre": [], "release_date": None,
        "release_year": None, "popularity": None, "vote_average": 7.0, "vote_count": 50})
    assert upgrade_outdated(MovieRepository(db), lambda: None) >= 1
    found = _search(api, user, search="oublie vieux")
    assert [(m["_id"], m["upvotes"], m["downvotes"]) for m in found] == [("87200001", 0, 0)]
    stored = db["catalog_movies"].find_one({"_id": "87200001"})
    assert stored is not None and stored["score"] == 0
    assert stored["weighted_rating"] == weighted_rating(7.0, 50)
    assert upgrade_outdated(MovieRepository(db), lambda: None) == 0  # nothing left
