"""GET /movies against our own reading of the TMDB file: counts, filters, sorts, pages."""

from __future__ import annotations

import csv
from collections import Counter
from typing import Any

import pytest
from pymongo import MongoClient

from devstack.stack import Stack
from services.catalog.repository import MovieRepository, index_name
from tests.integration.conftest import TMDB, Api, User


def _expected() -> dict[str, dict[str, Any]]:
    """The file read with the csv module alone: rows that describe a movie, by id."""
    with open(TMDB, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    movies = {}
    for row in rows:
        described = [row[k] for k in row if k not in ("id", "title")]
        if not row["title"].strip() or not any(v.strip() for v in described):
            continue
        movies[row["id"]] = {
            "_id": row["id"],
            "title": row["title"],
            "original_language": row["original_language"],
            "release_date": row["release_date"] + "T00:00:00" if row["release_date"] else None,
            "vote_average": float(row["vote_average"]) if row["vote_average"] else None,
        }
    return movies


EXPECTED = _expected()


def ours(movies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The TMDB movies among `movies`, in order: other tests add movies of their own."""
    return [m for m in movies if m["_id"] in EXPECTED]


@pytest.fixture(scope="module")
def user(api: Api, tmdb_ingested: dict[str, Any]) -> User:
    return api.register("reader")


def test_ingestion_counts_are_exact(tmdb_ingested: dict[str, Any]) -> None:
    task = tmdb_ingested["task"]
    with open(TMDB, newline="", encoding="utf-8") as f:
        data_rows = sum(1 for _ in csv.reader(f)) - 1
    assert task["rows_read"] == data_rows
    assert task["rows_imported"] == len(EXPECTED)
    assert task["rows_rejected"] == data_rows - len(EXPECTED) == 1
    assert task["rejected_sample"][0]["line"] == 2
    assert "placeholder" in task["rejected_sample"][0]["reason"]


def test_every_movie_is_stored_with_the_contract_shape(api: Api, user: User) -> None:
    movies = ours(api.all_movies(user))
    assert len(movies) == len(EXPECTED)
    by_id = {m["_id"]: m for m in movies}
    assert set(by_id) == set(EXPECTED)
    for movie_id, want in EXPECTED.items():
        got = by_id[movie_id]
        for key, value in want.items():
            assert got[key] == value, (movie_id, key)
    shawshank = by_id["278"]
    assert shawshank["genre"] == ["Drama", "Crime"]
    assert shawshank["vote_count"] == 21862
    assert shawshank["release_date"] == "1994-09-23T00:00:00"


def test_defaults_are_page_1_limit_50_release_date_ascending(api: Api, user: User) -> None:
    r = api.get("/movies", headers=user.headers)
    assert r.status_code == 200 and len(r.json()) == 50
    got = [m["_id"] for m in ours(r.json())]
    ordered = sorted(EXPECTED.values(), key=lambda m: (m["release_date"] is not None,
                                                       m["release_date"] or "", m["_id"]))
    assert got == [m["_id"] for m in ordered[: len(got)]]


@pytest.mark.parametrize("sort_field,key", [("release_date", "release_date"),
                                            ("rating", "vote_average")])
@pytest.mark.parametrize("order", ["asc", "desc"])
def test_sorts_match_our_parse(api: Api, user: User, sort_field: str, key: str,
                               order: str) -> None:
    got = [m["_id"] for m in ours(api.all_movies(user, sort_field=sort_field,
                                                 sort_order=order))]
    ordered = sorted(EXPECTED.values(), key=lambda m: (m[key] is not None, m[key] or 0
                                                        if key == "vote_average" else
                                                        m[key] or "", m["_id"]),
                     reverse=order == "desc")
    assert got == [m["_id"] for m in ordered]


@pytest.mark.parametrize("year", [1994, 2019])
def test_year_filter(api: Api, user: User, year: int) -> None:
    got = ours(api.all_movies(user, year=year))
    want = {i for i, m in EXPECTED.items() if (m["release_date"] or "").startswith(f"{year}-")}
    assert want and {m["_id"] for m in got} == want


def test_language_filter_and_counts(api: Api, user: User) -> None:
    counts = Counter(m["original_language"] for m in EXPECTED.values())
    for language in ("en", "fr", "ja"):
        got = api.all_movies(user, language=language)
        assert {m["original_language"] for m in got} == {language}
        assert len(ours(got)) == counts[language]


def test_year_and_language_together_sorted_by_rating(api: Api, user: User) -> None:
    got = ours(api.all_movies(user, year=2019, language="en", sort_field="rating",
                              sort_order="desc"))
    want = sorted((m for m in EXPECTED.values() if m["original_language"] == "en"
                   and (m["release_date"] or "").startswith("2019-")),
                  key=lambda m: (m["vote_average"] is not None, m["vote_average"] or 0,
                                 m["_id"]), reverse=True)
    assert [m["_id"] for m in got] == [m["_id"] for m in want]


def test_pages_neither_overlap_nor_skip(api: Api, user: User) -> None:
    seen: list[str] = []
    for page in range(1, 8):
        r = api.get("/movies", headers=user.headers,
                    params={"page": page, "limit": 7, "sort_field": "rating"})
        assert r.status_code == 200
        assert len(r.json()) == 7
        seen.extend(m["_id"] for m in r.json())
    whole = api.get("/movies", headers=user.headers,
                    params={"limit": 49, "sort_field": "rating"}).json()
    assert seen == [m["_id"] for m in whole]


def test_page_past_the_end_is_an_empty_array(api: Api, user: User) -> None:
    r = api.get("/movies", headers=user.headers, params={"page": 100000, "limit": 50})
    assert r.status_code == 200 and r.json() == []


@pytest.mark.parametrize("params,name", [
    ({"page": 0}, "page"), ({"page": -3}, "page"), ({"limit": -1}, "limit"),
    ({"limit": 0}, "limit"), ({"limit": 5000}, "limit"), ({"sort_field": "foo"}, "sort_field"),
    ({"sort_order": "sideways"}, "sort_order"), ({"year": "abc"}, "year"),
    ({"page": "x"}, "page"), ({"limit": "1.5"}, "limit"), ({"year": 0}, "year"),
])
def test_invalid_parameters_are_400_naming_them(api: Api, user: User, params: dict[str, Any],
                                                name: str) -> None:
    r = api.get("/movies", headers=user.headers, params=params)
    assert r.status_code == 400, r.text
    assert name in r.json()["message"]


def test_unknown_parameter_is_400(api: Api, user: User) -> None:
    r = api.get("/movies", headers=user.headers, params={"yeer": 1994})
    assert r.status_code == 400 and "yeer" in r.json()["message"]


def test_get_one_movie(api: Api, user: User) -> None:
    r = api.get("/movies/278", headers=user.headers)
    assert r.status_code == 200 and r.json()["title"] == "The Shawshank Redemption"
    listed = api.get("/movies", headers=user.headers, params={"year": 1994, "limit": 1000})
    assert r.json() == next(m for m in listed.json() if m["_id"] == "278")
    assert api.get("/movies/does-not-exist", headers=user.headers).status_code == 404


@pytest.mark.parametrize("filters", [{}, {"release_year": 1994}, {"original_language": "en"},
                                     {"original_language": "en", "release_year": 1994}])
@pytest.mark.parametrize("sort_key", ["release_date", "vote_average", "score"])
def test_every_browse_query_has_an_index(stack: Stack, tmdb_ingested: dict[str, Any],
                                         filters: dict[str, Any], sort_key: str) -> None:
    """Each filter/sort combination has an index on (filters..., sort key, _id) that its query
    can scan, and the planner never falls back to a collection scan. (SecantusDB's planner
    still sorts in memory where a real mongod walks the sort index; see BENCHMARKS.md.)"""
    keys = sorted(filters, key=lambda k: k != "original_language")
    sort = [(sort_key, -1), ("_id", -1)]
    client: MongoClient = MongoClient(stack.env["MONGO_URI"])
    try:
        movies = MovieRepository(client[stack.settings.mongo_db])
        chosen = _scan(movies.explain(filters, sort))
        designed = _scan(movies.explain(filters, sort, hint=index_name([*keys, sort_key])))
    finally:
        client.close()
    assert list(designed["keyPattern"]) == [*keys, sort_key, "_id"]
    assert list(chosen["keyPattern"])[: len(keys)] == keys


def _scan(explained: dict[str, Any]) -> dict[str, Any]:
    plan = explained["queryPlanner"]["winningPlan"]
    while plan["stage"] != "IXSCAN":
        assert plan["stage"] != "COLLSCAN", plan
        plan = plan["inputStage"]
    return dict(plan)


def test_repeated_queries_are_cached_until_the_catalog_changes(api: Api, user: User) -> None:
    head = "id,title,release_date,vote_average,original_language\n"
    api.wait_task(user, api.upload_ok(user, (head + "9500001,Cache Me,1901-01-01,5,xx\n").encode()))
    params = {"year": 1901, "language": "xx"}
    first = api.get("/movies", headers=user.headers, params=params)
    again = api.get("/movies", headers=user.headers, params=params)
    assert again.headers["x-cache"] == "hit"
    assert first.json() == again.json() and again.json()[0]["title"] == "Cache Me"
    api.wait_task(user, api.upload_ok(user, (head + "9500001,Cached No More,1901-01-01,5,xx\n")
                                      .encode()))
    after = api.get("/movies", headers=user.headers, params=params)
    assert after.headers["x-cache"] == "miss"
    assert [m["title"] for m in after.json()] == ["Cached No More"]
