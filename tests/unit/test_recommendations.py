"""The recommendations without infrastructure: preferences checked, the criteria of a request,
the candidate query and its bands, the catalog's mean, the ranking, and the use cases (cache
keys from the three versions, one computation per key, idempotent finishing) against in-memory
fakes."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest

from marquee.catalog.v1 import catalog_pb2
from services.catalog.candidates import (
    MEAN_MAX_AGE_SECONDS,
    CatalogMean,
    bands,
    candidate_query,
)
from services.common.errors import (
    InvalidArgument,
    LimitReached,
    NotFound,
    PermissionDenied,
    Unavailable,
)
from services.common.tokens import Caller
from services.recommendations.criteria import Criteria, check_preferences, override
from services.recommendations.service import RecommendationsService
from services.worker.ranking import Signals, rank, weighted_rating
from tests.unit.fakes import FakePeers, FakePreferences, FakeResults, FakeRuns

ANN = Caller(user_id="u-ann", username="ann")
BOB = Caller(user_id="u-bob", username="bob")


# --- preferences and criteria ---------------------------------------------------------------

def test_preferences_keep_the_shape_they_were_sent_in() -> None:
    sent = {"genre": "Action", "year": 2021.0, "rating": [7.5, 9.0], "language": "EN"}
    assert check_preferences(sent) == {"genre": "Action", "year": 2021, "rating": [7.5, 9],
                                       "language": "en"}
    assert check_preferences({"genre": ["Action", "Comedy"], "year": None}) == \
        {"genre": ["Action", "Comedy"]}


@pytest.mark.parametrize(("preferences", "problem"), [
    ({"mood": "x"}, "unknown preference 'mood'"),
    ({"year": [2022, 2021]}, "year range is reversed"),
    ({"year": 2021.5}, "year must be a whole number"),
    ({"year": [2021]}, "[low, high] pair"),
    ({"rating": -1}, "rating must be from 0 to 10"),
    ({"rating": [8, 7]}, "rating range is reversed"),
    ({"rating": True}, "rating must be a number"),
    ({"genre": []}, "genre must name 1 to 20 genres"),
    ({"genre": ["x" * 51]}, "at most 50 characters"),
    ({"language": 5}, "language must be"),
])
def test_bad_preferences_are_refused_naming_the_problem(preferences: dict[str, Any],
                                                        problem: str) -> None:
    with pytest.raises(InvalidArgument, match=problem.replace("[", r"\[")):
        check_preferences(preferences)


def test_query_parameters_override_stored_preferences_key_by_key() -> None:
    stored = {"genre": "Drama", "year": [1990, 2000], "language": "en"}
    assert override(stored, genre=["Comedy,Action"], year="2001-2002", rating="8",
                    language="") == Criteria(genres=("Action", "Comedy"), year=(2001, 2002),
                                             rating=(8.0, 8.0), language="en")
    assert override(stored, genre=[], year="", rating="", language="fr").year == (1990, 2000)
    with pytest.raises(InvalidArgument, match="year must be a number or a range"):
        override({}, genre=[], year="soon", rating="", language="")


def test_the_candidate_query_walks_an_index_and_filters_the_rest() -> None:
    walk, rest = candidate_query(catalog_pb2.FindCandidatesRequest(
        limit=10, genres=["Drama"], rating_min=7, rating_max=9, exclude_ids=["1"],
        min_vote_count=100, language="en", year_min=2001, year_max=2001))
    assert walk == {"original_language": "en", "release_year": 2001,
                    "vote_average": {"$gte": 7, "$lte": 9}}
    assert rest == {"genre": {"$in": ["Drama"]}, "_id": {"$nin": ["1"]},
                    "vote_count": {"$gte": 100}}
    assert candidate_query(catalog_pb2.FindCandidatesRequest(limit=1, year_min=1990)) == \
        ({"vote_average": {"$gte": 0.0}}, {"release_year": {"$gte": 1990}})
    with pytest.raises(InvalidArgument):
        candidate_query(catalog_pb2.FindCandidatesRequest(limit=501))


def test_the_candidates_are_read_in_bands_from_the_top() -> None:
    assert bands({"$gte": 0.0}) == [
        {"$gte": 9.0}, {"$gte": 8.0, "$lt": 9.0}, {"$gte": 7.0, "$lt": 8.0},
        {"$gte": 6.0, "$lt": 7.0}, {"$gte": 5.0, "$lt": 6.0}, {"$gte": 0.0, "$lt": 5.0}]
    assert bands({"$gte": 7.5, "$lte": 9.5}) == [
        {"$gte": 9.0, "$lte": 9.5}, {"$gte": 8.0, "$lt": 9.0}, {"$gte": 7.5, "$lt": 8.0}]
    assert bands({"$gte": 6.2, "$lte": 6.8}) == [{"$gte": 6.2, "$lte": 6.8}]
    assert bands({"$gte": 8.0, "$lte": 8.0}) == [{"$gte": 8.0, "$lte": 8.0}]
    assert bands({"$gte": 0.0, "$lte": 3.0}) == [{"$gte": 0.0, "$lte": 3.0}]
    assert bands({"$gte": -1.0})[-1] == {"$gte": -1.0, "$lt": 5.0}


def test_the_catalog_mean_is_computed_again_only_when_changed_and_a_minute_old() -> None:
    clock = [0.0]
    passes: list[float] = []

    def compute() -> float:
        passes.append(clock[0])
        return 6.0 + len(passes)

    mean = CatalogMean(compute, monotonic=lambda: clock[0])
    assert mean.get(1) == 7.0
    clock[0] = 30.0
    assert mean.get(2) == 7.0             # changed, but computed 30 s ago: kept
    clock[0] = MEAN_MAX_AGE_SECONDS + 1
    assert mean.get(1) == 7.0             # old, but the version it was computed at
    assert mean.get(3) == 8.0             # changed and old: one new pass
    assert passes == [0.0, MEAN_MAX_AGE_SECONDS + 1]


def test_callers_take_the_last_mean_while_one_computes_it() -> None:
    computing, release = threading.Event(), threading.Event()
    values = iter([6.5, 7.5])

    def compute() -> float:
        value = next(values)
        if value == 7.5:
            computing.set()
            release.wait(5)
        return value

    clock = [0.0]
    mean = CatalogMean(compute, monotonic=lambda: clock[0])
    assert mean.get(1) == 6.5
    clock[0] = MEAN_MAX_AGE_SECONDS + 1
    slow = threading.Thread(target=mean.get, args=(2,))
    slow.start()
    assert computing.wait(5)
    assert mean.get(2) == 6.5             # not queued behind the pass in progress
    release.set()
    slow.join(5)
    assert mean.get(2) == 7.5


# --- ranking --------------------------------------------------------------------------------

def _movie(movie_id: str, rating: float, votes: int, popularity: float = 0,
           genre: tuple[str, ...] = ("Drama",)) -> dict[str, Any]:
    return {"_id": movie_id, "vote_average": rating, "vote_count": votes,
            "popularity": popularity, "genre": list(genre)}


def test_the_weighted_rating_pulls_few_votes_towards_the_mean() -> None:
    assert weighted_rating(9.0, 0, 6.0, 100) == 6.0
    assert weighted_rating(9.0, 100, 6.0, 100) == 7.5
    assert weighted_rating(9.0, 10**6, 6.0, 100) == pytest.approx(9.0, abs=1e-3)


def test_ranking_is_by_score_then_id_and_explains_itself() -> None:
    signals = Signals(mean_vote_average=6.0, min_votes=100, liked_genres={"Comedy": 2},
                      wanted_genres=("Drama",))
    movies = [_movie("b", 9.0, 5), _movie("a", 8.0, 50_000, 30), _movie("c", 8.0, 50_000, 30),
              _movie("d", 8.0, 50_000, 30, ("Comedy",))]
    ranked = rank(movies, signals, 3)
    assert [m["_id"] for m in ranked] == ["d", "a", "c"]  # boosted genre, then ties by id
    assert ranked[1]["reasons"] == ["genre Drama", "rated 8.0 by 50,000 voters", "popular (30.0)"]
    assert "like movies you upvoted (Comedy)" in ranked[0]["reasons"]
    assert rank(reversed(movies), signals, 3) == ranked  # the input order does not matter


# --- use cases ------------------------------------------------------------------------------

class World:
    def __init__(self) -> None:
        self.preferences, self.runs = FakePreferences(), FakeRuns()
        self.results, self.peers = FakeResults(), FakePeers()
        self.service = RecommendationsService(self.preferences, self.runs, self.results,
                                              self.peers, sleep=lambda _: None)

    def ask(self, caller: Caller = ANN, **params: Any) -> Any:
        return self.service.recommend(caller, genre=params.get("genre", []),
                                      year=params.get("year", ""),
                                      rating=params.get("rating", ""),
                                      language=params.get("language", ""),
                                      limit=params.get("limit"))

    def complete(self, task_id: str, items: list[dict[str, Any]]) -> None:
        run_id = dict(self.peers.tasks)[task_id]
        self.service.start_run(run_id)
        self.service.finish_run(run_id, json.dumps(items), "")


def test_preferences_are_the_callers_own() -> None:
    world = World()
    assert world.service.save_preferences(ANN, {"genre": "Action"}, user_id=ANN.user_id) == \
        {"genre": "Action"}
    assert world.service.get_preferences(ANN) == {"genre": "Action"}
    assert world.service.get_preferences(BOB) == {}
    with pytest.raises(PermissionDenied):
        world.service.save_preferences(ANN, {"genre": "Action"}, user_id=BOB.user_id)
    with pytest.raises(PermissionDenied):
        world.service.save_preferences(ANN, {"user_id": BOB.user_id})


def test_one_computation_per_inputs_then_the_cached_result() -> None:
    world = World()
    first = world.ask(limit=5)
    assert first.task_id and world.ask(limit=5).task_id == first.task_id
    assert len(world.peers.tasks) == 1
    assert world.ask(limit=6).task_id != first.task_id  # other inputs, another run
    world.complete(first.task_id, [{"_id": "1"}])
    assert world.ask(limit=5).recommendations == [{"_id": "1"}]
    run = world.service.status(ANN, first.task_id)
    assert (run.status, run.recommendations) == ("completed", [{"_id": "1"}])
    with pytest.raises(PermissionDenied):
        world.service.status(BOB, first.task_id)
    with pytest.raises(NotFound):
        world.service.status(ANN, "nope")


@pytest.mark.parametrize("change", ["preferences", "vote", "catalog"])
def test_any_change_of_an_input_makes_the_next_request_compute_afresh(change: str) -> None:
    world = World()
    world.complete(world.ask().task_id, [{"_id": "1"}])
    assert world.ask().recommendations == [{"_id": "1"}]
    if change == "preferences":
        world.service.save_preferences(ANN, {})
    elif change == "vote":
        world.peers.votes[ANN.user_id] = "1:2026-01-01T00:00:00"
    else:
        world.peers.catalog += 1
    assert world.ask().task_id


def test_a_run_finishes_once_and_a_failure_frees_the_key() -> None:
    world = World()
    task_id = world.ask().task_id
    run_id = dict(world.peers.tasks)[task_id]
    world.service.finish_run(run_id, "", "catalog unreachable")
    assert world.service.status(ANN, task_id).status == "failed"
    retry = world.ask().task_id
    assert retry != task_id
    world.complete(retry, [{"_id": "1"}])
    world.complete(retry, [{"_id": "2"}])  # delivered twice: the first result stands
    assert world.ask().recommendations == [{"_id": "1"}]
    other = world.ask(limit=3).task_id
    with pytest.raises(InvalidArgument):
        world.service.finish_run(dict(world.peers.tasks)[other], "{}", "")


def test_a_claim_whose_task_cannot_be_created_is_released() -> None:
    world = World()

    def refuse(user_id: str, username: str, run_id: str) -> str:
        raise LimitReached("too many tasks at once")

    create, world.peers.create_task = world.peers.create_task, refuse  # type: ignore[method-assign]
    with pytest.raises(LimitReached):
        world.ask()
    assert world.results.claims == {} and world.runs.runs == {}
    world.peers.create_task = create  # type: ignore[method-assign]
    assert world.ask().task_id == "task1"


def test_a_request_waits_a_bounded_time_for_another_requests_task() -> None:
    clock = iter(range(100))
    world = World()
    world.service = RecommendationsService(world.preferences, world.runs, world.results,
                                           world.peers, sleep=lambda _: None,
                                           monotonic=lambda: float(next(clock)))
    world.results.claim = lambda key, run_id: False  # type: ignore[method-assign]
    with pytest.raises(Unavailable):
        world.ask()
