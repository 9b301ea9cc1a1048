"""RatingsService on in-memory ratings, counts and catalog: one rating per user and movie, the
counts each change moves, what the catalog is told and when, ownership, paging, input bounds,
the undo when the catalog cannot be told, and the sweep that pushes and recounts."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import pytest

from services.common.errors import AlreadyExists, InvalidArgument, NotFound, Unavailable
from services.common.tokens import Caller
from services.ratings.rating_pages import MAX_LIMIT, encode_token, position_of
from services.ratings.records import DOWNVOTE, UPVOTE, Delta, Rating, VoteCounts
from services.ratings.service import RECONCILE_GRACE, RatingsService
from tests.unit.fakes import Clock, FakeCatalog, FakeCounts, FakeRatings

MOVIES = [f"m{i}" for i in range(10)]
ALICE = Caller("u-alice", "alice")
BOB = Caller("u-bob", "bob")


class RacingRatings(FakeRatings):
    """Runs `before_change` once, just before the next conditional change: another client's
    call that lands between this call's read and its write."""

    before_change: Callable[[], object] | None = None

    def change_type(self, rating: Rating, new_type: str, at: datetime) -> Rating | None:
        if self.before_change is not None:
            run, self.before_change = self.before_change, None
            run()
        return super().change_type(rating, new_type, at)


@dataclass
class World:
    clock: Clock = field(default_factory=Clock)
    ratings: RacingRatings = field(default_factory=RacingRatings)
    counts: FakeCounts = field(default_factory=FakeCounts)
    catalog: FakeCatalog = field(default_factory=lambda: FakeCatalog(MOVIES))

    def __post_init__(self) -> None:
        ns = itertools.count(1)
        self.service = RatingsService(self.ratings, self.counts, self.catalog, clock=self.clock,
                                      clock_ns=lambda: next(ns))

    def counted(self, movie_id: str) -> tuple[int, int]:
        counts = self.counts.get(movie_id)
        return (0, 0) if counts is None else (counts.upvotes, counts.downvotes)

    def settled(self) -> None:
        """Lets the grace pass, so the sweep may recount."""
        self.clock.advance(RECONCILE_GRACE.total_seconds() + 1)


@pytest.fixture
def world() -> World:
    return World()


# --- create, flip, delete and their deltas ------------------------------------------------------

def test_a_vote_is_stored_counted_and_shown_by_the_catalog_before_the_call_returns(
        world: World) -> None:
    rating = world.service.create(ALICE, "m1", UPVOTE)
    assert (rating.movie_id, rating.rating_type, rating.username) == ("m1", UPVOTE, "alice")
    assert len(rating.id) == 32 and rating.created_at == rating.updated_at == world.clock()
    assert world.ratings.get(rating.id) == rating
    assert world.counted("m1") == world.catalog.votes("m1") == (1, 0)
    counts = world.counts.get("m1")
    assert counts is not None and counts.version == counts.synced_version == 1


def test_rating_type_is_read_without_regard_to_case_or_spaces(world: World) -> None:
    assert world.service.create(ALICE, "m1", " downvote ").rating_type == DOWNVOTE


def test_a_second_rating_of_a_movie_is_refused_naming_the_first(world: World) -> None:
    first = world.service.create(ALICE, "m1", UPVOTE)
    with pytest.raises(AlreadyExists, match=f"rating {first.id}.*PUT or PATCH /ratings/"):
        world.service.create(ALICE, "m1", DOWNVOTE)
    assert world.counted("m1") == (1, 0)
    assert world.service.create(BOB, "m1", DOWNVOTE).user_id == BOB.user_id
    assert world.counted("m1") == world.catalog.votes("m1") == (1, 1)


def test_an_unknown_movie_is_not_found_and_nothing_is_stored(world: World) -> None:
    with pytest.raises(NotFound, match="no movie with id 'nope'"):
        world.service.create(ALICE, "nope", UPVOTE)
    assert world.ratings.ratings == {} and world.counts.counts == {}


def test_a_flip_moves_the_score_by_two_and_the_same_type_changes_nothing(world: World) -> None:
    rating = world.service.create(ALICE, "m1", UPVOTE)
    world.service.create(BOB, "m1", UPVOTE)
    world.clock.advance(5)
    flipped = world.service.update(ALICE, rating.id, "DOWNVOTE")
    assert flipped.rating_type == DOWNVOTE and flipped.updated_at == world.clock()
    assert flipped.created_at == rating.created_at
    assert world.counted("m1") == world.catalog.votes("m1") == (1, 1)
    version = world.counts.get("m1").version  # type: ignore[union-attr]
    assert world.service.update(ALICE, rating.id, DOWNVOTE) == flipped
    assert world.counts.get("m1").version == version  # type: ignore[union-attr]


def test_two_clients_flipping_at_once_move_the_counts_once(world: World) -> None:
    rating = world.service.create(ALICE, "m1", UPVOTE)
    other: list[Rating] = []
    # The other client's flip lands after this call read the rating and before it writes.
    world.ratings.before_change = lambda: other.append(
        world.service.update(ALICE, rating.id, DOWNVOTE))
    mine = world.service.update(ALICE, rating.id, DOWNVOTE)
    assert mine == other[0] and mine.rating_type == DOWNVOTE
    assert world.counted("m1") == world.catalog.votes("m1") == (0, 1)
    assert world.counts.get("m1").version == 2  # type: ignore[union-attr]


def test_a_flip_retries_when_the_rating_changed_back_and_forth_meanwhile(world: World) -> None:
    rating = world.service.create(ALICE, "m1", UPVOTE)
    # Two other calls flip it down and up again between this call's read and its write: the
    # type is as read, but the rating is not, so the write finds nothing and the call retries.
    world.ratings.before_change = lambda: [world.service.update(ALICE, rating.id, t)
                                           for t in (DOWNVOTE, UPVOTE)]
    world.clock.advance(1)
    assert world.service.update(ALICE, rating.id, DOWNVOTE).rating_type == DOWNVOTE
    assert world.counted("m1") == world.catalog.votes("m1") == (0, 1)
    assert world.counts.get("m1").version == 4  # type: ignore[union-attr]


def test_a_deleted_rating_takes_its_vote_with_it(world: World) -> None:
    rating = world.service.create(ALICE, "m1", DOWNVOTE)
    world.service.delete(ALICE, rating.id)
    assert world.counted("m1") == world.catalog.votes("m1") == (0, 0)
    for call in (lambda: world.service.get(ALICE, rating.id),
                 lambda: world.service.delete(ALICE, rating.id)):
        with pytest.raises(NotFound):
            call()
    # The movie may be rated again.
    world.service.create(ALICE, "m1", UPVOTE)
    assert world.counted("m1") == (1, 0)


def test_counts_never_go_below_zero(world: World) -> None:
    counts = world.counts.apply("m1", Delta(downvotes=-1), world.clock())
    assert (counts.upvotes, counts.downvotes) == (0, 0)


# --- ownership ----------------------------------------------------------------------------------

def test_another_users_rating_is_answered_exactly_as_a_missing_one(world: World) -> None:
    rating = world.service.create(ALICE, "m1", UPVOTE)
    missing = "0" * 32
    calls: list[Callable[[str], object]] = [
        lambda rating_id: world.service.get(BOB, rating_id),
        lambda rating_id: world.service.update(BOB, rating_id, DOWNVOTE),
        lambda rating_id: world.service.delete(BOB, rating_id),
    ]
    for rating_id in (rating.id, missing):
        for call in calls:
            with pytest.raises(NotFound, match=f"^no rating with id '{rating_id}'$"):
                call(rating_id)
    assert world.ratings.get(rating.id) == rating
    assert world.counted("m1") == (1, 0)


def test_an_update_may_send_the_rating_back_but_not_change_its_movie(world: World) -> None:
    rating = world.service.create(ALICE, "m1", UPVOTE)
    same = world.service.update(ALICE, rating.id, DOWNVOTE, movie_id="m1", sent_id=rating.id)
    assert same.rating_type == DOWNVOTE
    with pytest.raises(InvalidArgument, match="movie_id cannot change"):
        world.service.update(ALICE, rating.id, UPVOTE, movie_id="m2")
    with pytest.raises(InvalidArgument, match="id in the body differs"):
        world.service.update(ALICE, rating.id, UPVOTE, sent_id="0" * 32)


# --- input bounds -------------------------------------------------------------------------------

@pytest.mark.parametrize(("movie_id", "rating_type", "message"), [
    ("", UPVOTE, "movie_id is required"),
    ("m" * 101, UPVOTE, "movie_id must have at most 100 characters"),
    ("m1", "", "rating_type is required"),
    ("m1", "SIDEWAYS", "rating_type must be UPVOTE or DOWNVOTE .got 'SIDEWAYS'"),
    ("m1", "U" * 10_000, "rating_type must be UPVOTE or DOWNVOTE .got 10000 characters"),
])
def test_bad_input_is_refused_naming_the_field_before_any_work(
        world: World, movie_id: str, rating_type: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        world.service.create(ALICE, movie_id, rating_type)
    assert world.catalog.checks == 0 and world.ratings.ratings == {}


def test_rating_ids_are_bounded_and_required(world: World) -> None:
    with pytest.raises(InvalidArgument, match="rating_id is required"):
        world.service.get(ALICE, "")
    with pytest.raises(NotFound, match="no rating with id of that length"):
        world.service.get(ALICE, "x" * 10_000)
    rating = world.service.create(ALICE, "m1", UPVOTE)
    with pytest.raises(InvalidArgument, match="rating_type"):
        world.service.update(ALICE, rating.id, "")


# --- lists --------------------------------------------------------------------------------------

def _create_many(world: World, caller: Caller, n: int) -> list[Rating]:
    made = []
    for movie_id in MOVIES[:n]:
        made.append(world.service.create(caller, movie_id, UPVOTE))
        world.clock.advance(0.0001)  # several within one millisecond too
    return made


def test_lists_are_newest_first_and_the_callers_own(world: World) -> None:
    made = _create_many(world, ALICE, 5)
    world.service.create(BOB, "m1", DOWNVOTE)
    page = world.service.list_ratings(ALICE, with_total=True)
    assert page.ratings == made[::-1] and page.next_page_token == "" and page.total_size == 5
    only = world.service.list_ratings(ALICE, movie_id="m3", with_total=True)
    assert only.ratings == [made[3]] and only.total_size == 1


def test_pages_by_number_and_by_token_cover_every_rating_once(world: World) -> None:
    made = _create_many(world, ALICE, 7)[::-1]
    assert world.service.list_ratings(ALICE, page=2, limit=3).ratings == made[3:6]
    assert world.service.list_ratings(ALICE, page=4, limit=3).ratings == []
    seen, token = [], ""
    while True:
        page = world.service.list_ratings(ALICE, page_size=3, page_token=token)
        seen += page.ratings
        token = page.next_page_token
        if not token:
            break
        world.service.create(ALICE, MOVIES[len(made) + len(seen) // 3], UPVOTE)  # newer: unseen
    assert seen == made


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"limit": 0}, "limit must be an integer from 1 to 1000"),
    ({"limit": MAX_LIMIT + 1}, "limit must be an integer from 1 to 1000"),
    ({"page": 0}, "page must be an integer from 1"),
    ({"page_size": -1}, "page_size must not be negative"),
    ({"limit": 5, "page_size": 6}, "same parameter"),
    ({"page_token": "not-a-token"}, "page_token is not valid"),
    ({"page_token": "A" * 10_000}, "page_token is not valid"),
    ({"movie_id": "m" * 101}, "movie_id must have at most 100"),
])
def test_list_parameters_are_bounded(world: World, kwargs: dict[str, object],
                                     message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        world.service.list_ratings(ALICE, **kwargs)  # type: ignore[arg-type]


def test_a_page_size_over_the_maximum_is_read_as_the_maximum(world: World) -> None:
    _create_many(world, ALICE, 3)
    assert len(world.service.list_ratings(ALICE, page_size=MAX_LIMIT * 5).ratings) == 3


def test_a_token_is_a_position_only(world: World) -> None:
    made = _create_many(world, ALICE, 3)
    token = encode_token(position_of(made[1]))
    assert world.service.list_ratings(ALICE, page_token=token).ratings == [made[0]]


# --- the catalog cannot be told -----------------------------------------------------------------

def test_a_vote_while_the_catalog_is_down_is_refused_before_anything_is_stored(
        world: World) -> None:
    world.catalog.down = True
    with pytest.raises(Unavailable, match="catalog cannot be reached"):
        world.service.create(ALICE, "m1", UPVOTE)
    assert world.ratings.ratings == {} and world.counts.counts == {}


def test_a_vote_the_catalog_cannot_be_told_of_is_undone(world: World) -> None:
    world.catalog.counts_fail = True
    with pytest.raises(Unavailable, match="nothing was changed, try again"):
        world.service.create(ALICE, "m1", UPVOTE)
    assert world.ratings.ratings == {} and world.counted("m1") == (0, 0)
    # Both steps moved the version, and the catalog may have applied the first before the
    # timeout: the sweep tells it the counts after the undo, which are newer.
    world.catalog.counts_fail = False
    world.service.sweep()
    assert world.catalog.votes("m1") == (0, 0)
    assert world.service.create(ALICE, "m1", UPVOTE).rating_type == UPVOTE  # a retry works


def test_a_vote_a_slow_catalog_applied_after_the_deadline_is_undone_there_too(
        world: World) -> None:
    """Found by the votes bench under load: the catalog applied a vote's counts after the
    5 s deadline, the vote was undone and answered 503, and the movie showed the vote until the
    sweep. The undone counts are pushed at once (a newer version, which the catalog keeps)."""
    world.catalog.answers_late = 1
    with pytest.raises(Unavailable, match="nothing was changed, try again"):
        world.service.create(ALICE, "m1", UPVOTE)
    assert world.catalog.votes("m1") == (0, 0)


def test_a_flip_and_a_delete_the_catalog_cannot_be_told_of_are_undone(world: World) -> None:
    rating = world.service.create(ALICE, "m1", UPVOTE)
    world.catalog.counts_fail = True
    with pytest.raises(Unavailable):
        world.service.update(ALICE, rating.id, DOWNVOTE)
    assert world.service.get(ALICE, rating.id).rating_type == UPVOTE
    with pytest.raises(Unavailable):
        world.service.delete(ALICE, rating.id)
    assert world.service.get(ALICE, rating.id) == rating
    assert world.counted("m1") == (1, 0)
    world.catalog.counts_fail = False
    world.service.sweep()
    assert world.catalog.votes("m1") == (1, 0)


def test_a_movie_deleted_while_it_was_voted_on_takes_the_vote_with_it(world: World) -> None:
    world.service.create(BOB, "m1", DOWNVOTE)
    del world.catalog.shown["m1"]  # deleted after the check, before the counts
    world.catalog.existing = lambda movie_ids: set(movie_ids)  # type: ignore[method-assign]
    with pytest.raises(NotFound, match="no movie with id 'm1'"):
        world.service.create(ALICE, "m1", UPVOTE)
    assert world.ratings.ratings == {} and world.counts.get("m1") is None


# --- for the catalog ----------------------------------------------------------------------------

def test_deleting_a_movies_ratings_deletes_its_votes_and_counts_only(world: World) -> None:
    world.service.create(ALICE, "m1", UPVOTE)
    world.service.create(BOB, "m1", DOWNVOTE)
    kept = world.service.create(ALICE, "m2", UPVOTE)
    assert world.service.delete_movie_ratings("m1") == 2
    assert list(world.ratings.ratings.values()) == [kept]
    assert world.counts.get("m1") is None and world.counted("m2") == (1, 0)
    assert world.service.delete_movie_ratings("m1") == 0
    with pytest.raises(InvalidArgument, match="movie_id is required"):
        world.service.delete_movie_ratings("")


# --- the sweep ----------------------------------------------------------------------------------

def _stored_without_its_delta(world: World, caller: Caller, movie_id: str,
                              rating_type: str) -> None:
    """A vote written by a call that crashed before it moved the counts."""
    t = world.clock()
    world.ratings.insert(Rating(id=f"{caller.user_id}-{movie_id}", user_id=caller.user_id,
                                username=caller.username, movie_id=movie_id,
                                rating_type=rating_type, created_at=t, updated_at=t,
                                created_ns=10**18))


def test_the_sweep_recounts_a_movie_whose_vote_lost_its_delta_once_it_settled(
        world: World) -> None:
    world.service.create(ALICE, "m1", UPVOTE)
    _stored_without_its_delta(world, BOB, "m1", UPVOTE)
    _stored_without_its_delta(world, BOB, "m2", DOWNVOTE)  # no counts at all yet
    assert world.service.sweep().corrected == 0  # calls may still be in flight
    assert world.counted("m1") == (1, 0)
    world.settled()
    report = world.service.sweep()
    assert report.corrected == 2 and report.pushed == 2
    assert world.counted("m1") == world.catalog.votes("m1") == (2, 0)
    assert world.counted("m2") == world.catalog.votes("m2") == (0, 1)
    world.settled()
    assert world.service.sweep().corrected == 0


def test_the_sweep_recounts_a_movie_whose_vote_was_deleted_without_its_delta(
        world: World) -> None:
    rating = world.service.create(ALICE, "m1", UPVOTE)
    world.service.create(BOB, "m1", UPVOTE)
    world.ratings.delete(rating.id, ALICE.user_id)  # crashed before the delta
    world.settled()
    assert world.service.sweep().corrected == 1
    assert world.counted("m1") == world.catalog.votes("m1") == (1, 0)


def test_the_sweep_leaves_a_movie_alone_while_its_votes_are_moving(world: World) -> None:
    world.counts.apply("m1", Delta(upvotes=1), world.clock())  # a vote's delta, not its write
    world.settled()
    world.counts.apply("m1", Delta(downvotes=1), world.clock())  # and a fresh change
    world.service.sweep()
    assert world.counted("m1") == (1, 1)


def test_the_sweep_pushes_counts_the_catalog_has_not_confirmed(world: World) -> None:
    world.counts.apply("m1", Delta(upvotes=1), world.clock())
    world.ratings.insert(Rating(id="r1", user_id="u", username="u", movie_id="m1",
                                rating_type=UPVOTE, created_at=world.clock(),
                                updated_at=world.clock(), created_ns=1))
    world.catalog.down = True
    assert world.service.sweep().pushed == 0
    world.catalog.down = False
    assert world.service.sweep().pushed == 1
    assert world.catalog.votes("m1") == (1, 0)
    assert world.service.sweep().pushed == 0


def test_the_sweep_forgets_the_ratings_of_a_movie_the_catalog_no_longer_has(
        world: World) -> None:
    world.service.create(ALICE, "m1", UPVOTE)
    world.service.create(ALICE, "m2", UPVOTE)
    world.service.create(BOB, "m3", UPVOTE)
    # m1 was deleted and this service missed the catalog's call; m3's deletion came while its
    # counts were still to be pushed.
    del world.catalog.shown["m1"], world.catalog.shown["m3"]
    world.counts.apply("m3", Delta(), world.clock())
    world.catalog.down = True
    assert world.service.sweep().forgotten == 0  # the catalog must say so
    world.catalog.down = False
    assert world.service.sweep().forgotten == 2
    assert [r.movie_id for r in world.ratings.ratings.values()] == ["m2"]
    assert world.counts.get("m1") is None and world.counts.get("m3") is None


def test_the_sweep_checks_every_movie_a_slice_at_a_time(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("services.ratings.service.SLICE_BATCH", 2)
    for movie_id in MOVIES[:5]:
        world.counts.counts[movie_id] = VoteCounts(movie_id=movie_id, upvotes=3, version=1,
                                                   synced_version=1, updated_at=world.clock())
    world.settled()
    corrected = sum(world.service.sweep().corrected for _ in range(3))
    assert corrected == 5
    assert all(world.counted(m) == (0, 0) for m in MOVIES[:5])


# --- a user's votes, for the recommendations ---------------------------------------------------

def test_every_change_of_a_users_votes_gives_a_new_version(world: World) -> None:
    seen = [world.service.user_votes(ALICE.user_id, 10)[1]]

    def changed() -> None:
        world.clock.advance(0.01)
        version = world.service.user_votes(ALICE.user_id, 10)[1]
        assert version not in seen
        seen.append(version)

    first = world.service.create(ALICE, "m1", UPVOTE)
    changed()
    world.clock.advance(0.01)
    world.service.create(ALICE, "m2", UPVOTE)
    changed()
    world.service.update(ALICE, first.id, DOWNVOTE)
    changed()
    world.service.delete(ALICE, first.id)  # the count goes down
    changed()
    world.service.create(ALICE, "m1", UPVOTE)  # and back up, with a later change
    changed()
    votes, _ = world.service.user_votes(ALICE.user_id, 1)
    assert [(v.movie_id, v.rating_type) for v in votes] == [("m1", UPVOTE)]
    assert world.service.user_votes(BOB.user_id, 0) == ([], "0:-")
    with pytest.raises(InvalidArgument):
        world.service.user_votes(ALICE.user_id, 2001)
