"""Preferences and recommendations on the real stack, as a client drives them: preferences saved
and refused, a computation queued (one per inputs however many ask at once), polled to
completion and checked against the client's own filter of the catalog, then served from the
cache until the preferences, a vote or the catalog change."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import pytest

from marquee.recommendations.v1 import recommendations_pb2, recommendations_pb2_grpc
from tests.integration.conftest import Api, User

PREFS: dict[str, Any] = {"genre": ["Drama", "Crime"], "year": [1990, 2010],
                         "rating": [7.0, 9.5], "language": "en"}
BASE = 84_000_000  # movie ids no other module uploads


@pytest.fixture(scope="module")
def fan(api: Api, tmdb_ingested: dict[str, Any]) -> User:
    return api.register("fan")


def _queued(api: Api, user: User, **params: Any) -> str:
    r = api.get("/recommendations", headers=user.headers, params=params)
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["message"] == "Recommendations are being calculated!"
    return str(body["task_id"])


def _completed(api: Api, user: User, task_id: str, timeout: float = 30) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = api.get("/recommendations/status", headers=user.headers,
                    params={"task_id": task_id})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["task_id"] == task_id and body["status"] in (
            "queued", "processing", "completed"), body
        if body["status"] == "completed":
            return list(body["recommendations"])
        time.sleep(0.1)
    raise AssertionError(f"recommendation task {task_id} did not complete in {timeout}s")


def _cached(api: Api, user: User, **params: Any) -> list[dict[str, Any]]:
    r = api.get("/recommendations", headers=user.headers, params=params)
    assert r.status_code == 200, r.text
    assert r.json()["cached"] is True
    return list(r.json()["recommendations"])


def _fresh(api: Api, user: User, **params: Any) -> list[dict[str, Any]]:
    """A new computation (202), polled to its end, then the same list from the cache."""
    result = _completed(api, user, _queued(api, user, **params))
    assert _cached(api, user, **params) == result
    return result


def _eligible(movie: dict[str, Any]) -> bool:
    year = int((movie.get("release_date") or "0")[:4])
    rating = movie.get("vote_average")
    return (bool(set(movie.get("genre") or []) & set(PREFS["genre"]))
            and 1990 <= year <= 2010 and rating is not None and 7.0 <= rating <= 9.5
            and movie.get("original_language") == "en")


def test_preferences_are_saved_read_and_checked(api: Api, fan: User) -> None:
    assert api.get("/preferences", headers=fan.headers).json() == {"data": {}}
    r = api.post("/preferences", headers=fan.headers,
                 json={"preferences": {"genre": "Action", "year": 2021, "rating": 8}})
    assert r.status_code == 200, r.text
    assert r.json() == {"message": "Preferences updated successfully",
                        "data": {"genre": "Action", "year": 2021, "rating": 8}}
    bad = {
        "unknown preference 'mood'": {"mood": "happy"},
        "year range is reversed": {"year": [2022, 2021]},
        "rating must be from 0 to 10": {"rating": [7.5, 11]},
        "genre must be": {"genre": 5},
        "year must be a whole number": {"year": "2021"},
        "rating range is reversed": {"rating": [9, 8]},
    }
    for problem, preferences in bad.items():
        r = api.post("/preferences", headers=fan.headers, json={"preferences": preferences})
        assert r.status_code == 400 and problem in r.text, (preferences, r.text)
    other = api.post("/preferences", headers=fan.headers,
                     json={"user_id": "someone-else", "preferences": PREFS})
    assert other.status_code == 403, other.text
    r = api.post("/preferences", headers=fan.headers, json={"preferences": PREFS})
    assert r.status_code == 200 and r.json()["data"] == PREFS, r.text
    assert api.get("/preferences", headers=fan.headers).json() == {"data": PREFS}


def test_requests_are_checked(api: Api, fan: User) -> None:
    for params in ({"limit": 0}, {"limit": 101}, {"year": "soon"}, {"rating": "3-12"},
                   {"year": "2010-2000"}):
        r = api.get("/recommendations", headers=fan.headers, params=params)
        assert r.status_code == 400, (params, r.text)
    r = api.get("/recommendations/status", headers=fan.headers, params={"task_id": "f" * 32})
    assert r.status_code == 404, r.text


def test_recommendations_match_the_filter_and_are_cached(api: Api, fan: User,
                                                         admin: User) -> None:
    # Many identical requests at once: one computation, one task id for all of them.
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: api.get("/recommendations", headers=fan.headers,
                                                  params={"limit": 20}), range(8)))
    assert {r.status_code for r in answers} == {202}, [r.text for r in answers]
    task_ids = {r.json()["task_id"] for r in answers}
    assert len(task_ids) == 1
    task_id = task_ids.pop()
    result = _completed(api, fan, task_id)
    tasks = api.get("/tasks", headers=fan.headers).json()
    assert [t["kind"] for t in tasks if t["task_id"] == task_id] == ["recommend"]

    # Every movie satisfies the constraints, as the client's own filter of the catalog says,
    # and is the catalog's document plus a score and reasons, best first.
    catalog = {m["_id"]: m for m in api.all_movies(fan, language="en")}
    assert len(result) == 20
    for movie in result:
        shown = {k: v for k, v in movie.items() if k not in ("score", "reasons")}
        assert shown == {k: v for k, v in catalog[movie["_id"]].items() if k in shown}
        assert _eligible(catalog[movie["_id"]]), movie
        assert any(r.startswith("rated ") for r in movie["reasons"])
    assert [(-m["score"], m["_id"]) for m in result] == \
        sorted((-m["score"], m["_id"]) for m in result)
    assert _cached(api, fan, limit=20) == result

    # Another user's task is not theirs to read.
    stranger = api.register("stranger")
    r = api.get("/recommendations/status", headers=stranger.headers,
                params={"task_id": task_id})
    assert r.status_code == 403, r.text

    # 1. Saving preferences: the next request computes afresh.
    assert api.post("/preferences", headers=fan.headers,
                    json={"preferences": PREFS}).status_code == 200
    result = _fresh(api, fan, limit=20)

    # 2. A vote: afresh, and the voted movie is no longer recommended; its genres are boosted.
    voted = result[0]["_id"]
    r = api.post("/ratings", headers=fan.headers,
                 json={"movie_id": voted, "rating_type": "UPVOTE"})
    assert r.status_code == 201, r.text
    result = _fresh(api, fan, limit=20)
    assert voted not in {m["_id"] for m in result}
    assert any(r.startswith("like movies you upvoted") for m in result for r in m["reasons"])

    # 3. An import that changes the catalog: afresh, with the new movie (rated high by many).
    head = "id,title,genre,release_date,vote_average,vote_count,popularity,original_language\n"
    row = f"{BASE},Recommended Newcomer,Drama,2005-05-05,9.4,900000,500,en\n"
    task = api.wait_task(admin, api.upload_ok(admin, (head + row).encode()))
    assert task["status"] == "done" and task["rows_imported"] == 1, task
    result = _fresh(api, fan, limit=20)
    assert result[0]["_id"] == str(BASE) and result[0]["title"] == "Recommended Newcomer"

    # ... and a deletion: afresh, without it.
    assert api.http.delete(api.url(f"/movies/{BASE}"), headers=admin.headers,
                           timeout=30).status_code in (200, 204)
    result = _fresh(api, fan, limit=20)
    assert str(BASE) not in {m["_id"] for m in result}


def test_query_parameters_override_preferences(api: Api, fan: User) -> None:
    params = {"genre": "Comedy", "year": "2000-2001", "rating": "6", "limit": 5}
    result = _completed(api, fan, _queued(api, fan, **params))
    for movie in result:
        assert "Comedy" in movie["genre"] and movie["vote_average"] == 6
        assert movie["release_date"][:4] in ("2000", "2001")
        assert movie["original_language"] == "en"  # the stored preference still applies


def test_native_grpc(gateway_channel: grpc.Channel, api: Api, fan: User) -> None:
    stub = recommendations_pb2_grpc.RecommendationsServiceStub(gateway_channel)
    reply = stub.GetPreferences(recommendations_pb2.GetPreferencesRequest(),
                                metadata=fan.metadata, timeout=10)
    assert dict(reply.data)["language"] == "en"
    with pytest.raises(grpc.RpcError) as refused:
        stub.SavePreferences(recommendations_pb2.SavePreferencesRequest(user_id="not-me"),
                             metadata=fan.metadata, timeout=10)
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
