"""Ratings on the real stack, as users drive them: the REST contract with its status codes, the
native gRPC API, other users' ids, and concurrency (many users voting on one movie at once, one
user flipping from two clients at once) ending with the counts the ratings service holds equal
to the stored votes, and the catalog showing them on the movie as soon as each call returns."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from functools import partial
from typing import Any

import grpc
import pytest
import requests
from pymongo import MongoClient
from pymongo.database import Database

from devstack.stack import Stack
from marquee.auth.v1 import auth_pb2, auth_pb2_grpc
from marquee.ratings.v1 import ratings_pb2, ratings_pb2_grpc
from tests.integration.conftest import Api, User, generated_csv

BASE = 83_000_000  # movie ids no other module uploads
MOVIES = [str(BASE + i) for i in range(8)]
VOTERS = 50


@pytest.fixture(scope="module")
def movies(api: Api) -> list[str]:
    owner = api.register("rated")
    task = api.wait_task(owner, api.upload_ok(owner, generated_csv(len(MOVIES), BASE)))
    assert task["status"] == "done" and task["rows_imported"] == len(MOVIES), task
    return MOVIES


@pytest.fixture(scope="module")
def someone(api: Api) -> User:
    return api.register("someone")


@pytest.fixture(scope="module")
def db(stack: Stack) -> Iterator[Database]:
    client: MongoClient = MongoClient(stack.env["MONGO_URI"])
    yield client[stack.settings.mongo_db]
    client.close()


def _rate(api: Api, user: User, movie_id: str, rating_type: str = "UPVOTE"
          ) -> requests.Response:
    return api.post("/ratings", headers=user.headers,
                    json={"movie_id": movie_id, "rating_type": rating_type})


def _rated(api: Api, user: User, movie_id: str, rating_type: str = "UPVOTE") -> dict[str, Any]:
    r = _rate(api, user, movie_id, rating_type)
    assert r.status_code == 201, r.text
    return dict(r.json())


def _shown(api: Api, user: User, movie_id: str) -> tuple[int, int]:
    """The counts the catalog shows beside the movie."""
    r = api.get(f"/movies/{movie_id}", headers=user.headers)
    assert r.status_code == 200, r.text
    return r.json().get("upvotes"), r.json().get("downvotes")


def _assert_counts(db: Database, movie_id: str, expected: tuple[int, int]) -> None:
    """The stored votes and the counts the ratings service holds agree, and are `expected`."""
    votes = db["ratings_votes"]
    stored = (votes.count_documents({"movie_id": movie_id, "rating_type": "UPVOTE"}),
              votes.count_documents({"movie_id": movie_id, "rating_type": "DOWNVOTE"}))
    counts = db["ratings_counts"].find_one({"_id": movie_id}) or {}
    assert stored == expected
    assert (counts.get("upvotes", 0), counts.get("downvotes", 0)) == expected


def _rfc3339(text: str) -> datetime:
    assert text.endswith("Z"), text
    return datetime.fromisoformat(text.removesuffix("Z") + "+00:00")


# --- the REST contract --------------------------------------------------------------------------

def test_rate_read_flip_and_delete_over_rest(api: Api, movies: list[str], db: Database) -> None:
    user = api.register("rater")
    movie_id = movies[0]
    rating = _rated(api, user, movie_id)
    assert set(rating) == {"id", "movie_id", "rating_type", "user", "created_at", "updated_at"}
    assert (rating["movie_id"], rating["rating_type"], rating["user"]) == \
        (movie_id, "UPVOTE", user.username)
    assert len(rating["id"]) == 32
    assert _rfc3339(rating["created_at"]) == _rfc3339(rating["updated_at"])
    assert _shown(api, user, movie_id) == (1, 0)
    _assert_counts(db, movie_id, (1, 0))

    url = f"/ratings/{rating['id']}"
    r = api.get(url, headers=user.headers)
    assert r.status_code == 200 and r.json() == rating

    again = _rate(api, user, movie_id, "DOWNVOTE")
    assert again.status_code == 409, again.text
    assert rating["id"] in again.json()["message"]

    flipped = api.http.put(api.url(url), headers=user.headers, json={"rating_type": "DOWNVOTE"},
                           timeout=60)
    assert flipped.status_code == 200, flipped.text
    assert flipped.json()["rating_type"] == "DOWNVOTE"
    assert _rfc3339(flipped.json()["updated_at"]) >= _rfc3339(rating["created_at"])
    assert _shown(api, user, movie_id) == (0, 1)
    back = api.http.patch(api.url(url), headers=user.headers, json={"rating_type": "UPVOTE"},
                          timeout=60)
    assert back.status_code == 200 and back.json()["rating_type"] == "UPVOTE", back.text
    assert _shown(api, user, movie_id) == (1, 0)

    deleted = api.http.delete(api.url(url), headers=user.headers, timeout=60)
    assert deleted.status_code == 204 and deleted.content == b"", deleted.text
    assert _shown(api, user, movie_id) == (0, 0)
    _assert_counts(db, movie_id, (0, 0))
    for gone in (api.get(url, headers=user.headers),
                 api.http.delete(api.url(url), headers=user.headers, timeout=60)):
        assert gone.status_code == 404, gone.text


@pytest.mark.parametrize(("body", "field"), [
    ({"rating_type": "UPVOTE"}, "movie_id"),
    ({"movie_id": "x"}, "rating_type"),
    ({"movie_id": "x", "rating_type": "SIDEWAYS"}, "rating_type"),
    ({"movie_id": "x" * 101, "rating_type": "UPVOTE"}, "movie_id"),
    ({"movie_id": "x", "rating_type": 7}, "rating_type"),
])
def test_bad_requests_are_400_naming_the_field(api: Api, someone: User, body: dict[str, Any],
                                               field: str) -> None:
    r = api.post("/ratings", headers=someone.headers, json=body)
    assert r.status_code == 400 and field in r.json()["message"], r.text


def test_unknown_movies_and_bad_list_parameters(api: Api, someone: User,
                                                movies: list[str]) -> None:
    user = someone
    r = _rate(api, user, "no-such-movie")
    assert r.status_code == 404 and "no-such-movie" in r.json()["message"], r.text
    rating = _rated(api, user, movies[1])
    r = api.http.patch(api.url(f"/ratings/{rating['id']}"), headers=user.headers,
                       json={"rating_type": "sideways"}, timeout=60)
    assert r.status_code == 400 and "rating_type" in r.json()["message"], r.text
    for query in ("limit=0", "limit=1001", "page=0", "page_token=nope", "movie_idd=1",
                  "movie_id=" + "x" * 101):
        r = api.get(f"/ratings?{query}", headers=user.headers)
        assert r.status_code == 400, (query, r.text)


def test_lists_are_the_callers_newest_first_and_paged_like_movies(
        api: Api, movies: list[str]) -> None:
    user, other = api.register("lister"), api.register("other")
    made = [_rated(api, user, m, "DOWNVOTE" if i % 2 else "UPVOTE")
            for i, m in enumerate(movies[:4])]
    _rated(api, other, movies[0])
    newest_first = [r["id"] for r in reversed(made)]

    r = api.get("/ratings", headers=user.headers)
    assert r.status_code == 200 and [x["id"] for x in r.json()] == newest_first
    assert "x-next-page-token" not in r.headers

    first = api.get("/ratings?limit=3", headers=user.headers)
    assert [x["id"] for x in first.json()] == newest_first[:3]
    token = first.headers["x-next-page-token"]
    rest = api.get("/ratings", headers=user.headers, params={"limit": 3, "page_token": token})
    assert [x["id"] for x in rest.json()] == newest_first[3:]
    assert "x-next-page-token" not in rest.headers
    by_page = api.get("/ratings?limit=3&page=2", headers=user.headers)
    assert [x["id"] for x in by_page.json()] == newest_first[3:]

    one = api.get(f"/ratings?movie_id={movies[2]}", headers=user.headers)
    assert one.json() == [made[2]]

    v1 = api.get("/v1/ratings?page_size=3", headers=user.headers)
    assert v1.status_code == 200, v1.text
    body = v1.json()
    assert [x["id"] for x in body["ratings"]] == newest_first[:3]
    assert body["total_size"] == 4 and body["next_page_token"]
    last = api.get("/v1/ratings", headers=user.headers,
                   params={"page_size": 3, "page_token": body["next_page_token"]}).json()
    assert [x["id"] for x in last["ratings"]] == newest_first[3:]
    assert last["next_page_token"] == ""


def test_another_users_rating_is_404_exactly_as_a_missing_one(
        api: Api, movies: list[str]) -> None:
    alice, mallory = api.register("alice"), api.register("mallory")
    rating = _rated(api, alice, movies[3])
    missing = uuid.uuid4().hex

    def answers(rating_id: str) -> list[tuple[int, str]]:
        url, h = api.url(f"/ratings/{rating_id}"), mallory.headers
        responses = [api.http.get(url, headers=h, timeout=60),
                     api.http.put(url, headers=h, json={"rating_type": "DOWNVOTE"}, timeout=60),
                     api.http.patch(url, headers=h, json={"rating_type": "DOWNVOTE"}, timeout=60),
                     api.http.delete(url, headers=h, timeout=60)]
        return [(r.status_code, r.json()["message"].replace(rating_id, "ID")) for r in responses]

    assert answers(rating["id"]) == answers(missing) == [(404, "no rating with id 'ID'")] * 4
    r = api.get(f"/ratings/{rating['id']}", headers=alice.headers)
    assert r.status_code == 200 and r.json() == rating
    assert api.get("/ratings", headers=mallory.headers).json() == []


# --- native gRPC --------------------------------------------------------------------------------

def test_the_same_over_native_grpc(api: Api, movies: list[str],
                                   gateway_channel: grpc.Channel) -> None:
    user = api.register("grpcrater")
    stub = ratings_pb2_grpc.RatingsServiceStub(gateway_channel)
    md = user.metadata
    made = stub.CreateRating(ratings_pb2.CreateRatingRequest(
        rating=ratings_pb2.Rating(movie_id=movies[4], rating_type="DOWNVOTE")), metadata=md)
    assert made.user == user.username and made.created_at.seconds > 0
    with pytest.raises(grpc.RpcError) as exc:
        stub.CreateRating(ratings_pb2.CreateRatingRequest(
            rating=ratings_pb2.Rating(movie_id=movies[4], rating_type="UPVOTE")), metadata=md)
    assert exc.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert stub.GetRating(ratings_pb2.GetRatingRequest(rating_id=made.id), metadata=md) == made
    flipped = stub.UpdateRating(ratings_pb2.UpdateRatingRequest(
        rating_id=made.id, rating=ratings_pb2.Rating(rating_type="UPVOTE")), metadata=md)
    assert flipped.rating_type == "UPVOTE"
    listed = stub.ListRatings(ratings_pb2.ListRatingsRequest(), metadata=md)
    assert list(listed.ratings) == [flipped] and listed.total_size == 1
    assert _shown(api, user, movies[4]) == (1, 0)
    stub.DeleteRating(ratings_pb2.DeleteRatingRequest(rating_id=made.id), metadata=md)
    with pytest.raises(grpc.RpcError) as exc:
        stub.GetRating(ratings_pb2.GetRatingRequest(rating_id=made.id), metadata=md)
    assert exc.value.code() == grpc.StatusCode.NOT_FOUND


# --- concurrency --------------------------------------------------------------------------------

def _users(stack: Stack, n: int) -> list[User]:
    """`n` new users, registered straight with the auth service: the gateway's per-address
    limit on registrations is for the other modules' share."""
    with grpc.insecure_channel(f"127.0.0.1:{stack.ports['auth']}") as channel:
        auth = auth_pb2_grpc.AuthServiceStub(channel)
        users = []
        for _ in range(n):
            name = f"voter{uuid.uuid4().hex[:10]}"
            reply = auth.Register(auth_pb2.RegisterRequest(
                username=name, password="s3cret-pw", email=f"{name}@example.com", name=name))
            users.append(User(name, "s3cret-pw", reply.access_token))
        return users


def _at_once(calls: list[Callable[[], requests.Response]]) -> list[requests.Response]:
    """Runs the calls on as many threads, released together."""
    start = threading.Barrier(len(calls))

    def run(call: Callable[[], requests.Response]) -> requests.Response:
        start.wait()
        return call()

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(run, calls))


def test_fifty_users_voting_on_one_movie_at_once_end_with_exact_counts(
        api: Api, stack: Stack, movies: list[str], db: Database) -> None:
    movie_id = movies[5]
    users = _users(stack, VOTERS)
    types = ["UPVOTE" if i % 5 < 3 else "DOWNVOTE" for i in range(VOTERS)]  # 30 up, 20 down
    # Each on its own connection, as separate clients.
    made = _at_once([partial(requests.post, api.url("/ratings"), headers=u.headers,
                             json={"movie_id": movie_id, "rating_type": t}, timeout=60)
                     for u, t in zip(users, types, strict=True)])
    assert [r.status_code for r in made] == [201] * VOTERS, [r.text for r in made][:3]
    _assert_counts(db, movie_id, (30, 20))
    assert _shown(api, users[0], movie_id) == (30, 20)

    flips = _at_once([partial(
        requests.patch, api.url(f"/ratings/{r.json()['id']}"), headers=u.headers,
        json={"rating_type": "DOWNVOTE" if r.json()["rating_type"] == "UPVOTE" else "UPVOTE"},
        timeout=60) for u, r in zip(users, made, strict=True)])
    assert [r.status_code for r in flips] == [200] * VOTERS
    _assert_counts(db, movie_id, (20, 30))
    assert _shown(api, users[0], movie_id) == (20, 30)

    gone = _at_once([partial(requests.delete, api.url(f"/ratings/{r.json()['id']}"),
                             headers=u.headers, timeout=60)
                     for u, r in zip(users, made, strict=True)])
    assert [r.status_code for r in gone] == [204] * VOTERS
    _assert_counts(db, movie_id, (0, 0))
    assert _shown(api, users[0], movie_id) == (0, 0)


def test_one_user_flipping_from_two_clients_at_once_moves_the_counts_once(
        api: Api, movies: list[str], db: Database) -> None:
    movie_id = movies[6]
    user = api.register("twoclients")
    rating = _rated(api, user, movie_id)
    url = api.url(f"/ratings/{rating['id']}")
    clients = [requests.Session(), requests.Session()]
    for rating_type in ["DOWNVOTE", "UPVOTE"] * 5:
        answers = _at_once([partial(c.put, url, headers=user.headers,
                                    json={"rating_type": rating_type}, timeout=60)
                            for c in clients])
        assert [(r.status_code, r.json()["rating_type"]) for r in answers] == \
            [(200, rating_type)] * 2
        expected = (1, 0) if rating_type == "UPVOTE" else (0, 1)
        _assert_counts(db, movie_id, expected)
        assert _shown(api, user, movie_id) == expected


def test_deleting_a_movie_deletes_its_ratings(api: Api, admin: User, movies: list[str],
                                              db: Database) -> None:
    movie_id = movies[7]
    user = api.register("orphan")
    rating = _rated(api, user, movie_id, "DOWNVOTE")
    r = api.http.delete(api.url(f"/movies/{movie_id}"), headers=admin.headers, timeout=60)
    assert r.status_code == 200, r.text
    assert api.get(f"/ratings/{rating['id']}", headers=user.headers).status_code == 404
    _assert_counts(db, movie_id, (0, 0))
    assert _rate(api, user, movie_id).status_code == 404
