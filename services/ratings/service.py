"""Ratings use cases: a user's ratings (create, read, list, flip, delete), each movie's exact
counts, telling the catalog those counts, and the sweep that proves them.

One rating per (user, movie), which the database's unique index decides. Every change of a vote
then moves its movie's counts by its delta in one atomic step (which also bumps the counts'
version), and the call returns once the catalog holds counts at least that new, so the next read
of the movie shows the vote. A change the catalog cannot be told of is undone (the vote and its
delta) and answered UNAVAILABLE: the caller sees the state it had before and may simply retry.
The sweep pushes counts the catalog has not confirmed, and recomputes counts from the votes for
movies whose votes changed (and, a slice at a time, for all), fixing drift left by a crash
between a vote's write and its delta.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from services.common.errors import AlreadyExists, InvalidArgument, NotFound, Unavailable
from services.common.ids import random_id
from services.common.tokens import Caller
from services.ratings.rating_pages import Position, encode_token, list_query, position_of
from services.ratings.records import (
    RATING_TYPES,
    Delta,
    Rating,
    VoteCounts,
    created,
    deleted,
    flipped,
    now,
)

log = logging.getLogger(__name__)

MAX_MOVIE_ID_CHARS = 100  # the catalog's bound on a movie id
MAX_RATING_ID_CHARS = 64  # ids are 32 hex digits; a longer one names nothing, unread
MAX_RATING_TYPE_CHARS = 20
# A flip that loses a race reads the rating again and retries; each loss means another call
# changed the rating, so only a client flipping without pause could exhaust these.
FLIP_ATTEMPTS = 5
# A movie whose votes or counts changed within this long is left to the calls in flight: its
# vote may be written and its delta not applied yet. Calls take milliseconds; a delta still
# missing after this is one that a crash lost.
RECONCILE_GRACE = timedelta(seconds=30)
# At start, the sweep looks back this far for votes a crash may have left uncounted.
RECONCILE_LOOKBACK = timedelta(days=1)
# Per sweep round: counts pushed, recently changed votes read, counts re-checked in the slice.
PUSH_BATCH = 200
# The most votes ListUserVotes returns (the recommendations exclude these movies).
MAX_USER_VOTES = 2000
RECENT_BATCH = 1000
SLICE_BATCH = 100


class Votes(Protocol):
    """The ratings: RatingRepository, or an in-memory fake in the unit tests. Changes are
    conditional, so that of two racing calls one changes the rating and the other sees it."""

    def insert(self, rating: Rating) -> bool:
        """Stores the rating; False when the user has rated the movie already."""
        ...

    def get(self, rating_id: str) -> Rating | None: ...
    def find(self, user_id: str, movie_id: str) -> Rating | None: ...

    def list_for_user(self, user_id: str, *, movie_id: str, limit: int, skip: int = 0,
                      after: Position | None = None) -> list[Rating]:
        """Up to `limit` of the user's ratings (of `movie_id` only, unless empty), newest first
        on (created_ns, id), after skipping `skip`, or those that come after `after`."""
        ...

    def count_for_user(self, user_id: str, *, movie_id: str) -> int: ...

    def recently_changed(self, user_id: str, limit: int) -> list[Rating]:
        """Up to `limit` of the user's ratings, the most recently changed first (ties by id,
        descending)."""
        ...

    def change_type(self, rating: Rating, new_type: str, at: datetime) -> Rating | None:
        """Sets the rating's type if it is still as `rating` holds it (type and updated_at);
        the changed rating, or None."""
        ...

    def delete(self, rating_id: str, user_id: str) -> Rating | None:
        """Deletes the user's rating, returning it as it was at that moment."""
        ...

    def remove(self, rating: Rating) -> bool:
        """Deletes the rating if it is still as `rating` holds it."""
        ...

    def delete_for_movie(self, movie_id: str) -> int: ...

    def tally(self, movie_id: str) -> tuple[int, int]:
        """(upvotes, downvotes) among the movie's stored ratings."""
        ...

    def latest_change(self, movie_id: str) -> datetime | None:
        """When a rating of the movie last changed (created, flipped)."""
        ...

    def changed_since(self, cursor: tuple[datetime, str], until: datetime, limit: int
                      ) -> list[tuple[datetime, str, str]]:
        """(updated_at, id, movie_id) of up to `limit` ratings changed after `cursor` (in
        (updated_at, id) order) and before `until`, in that order."""
        ...


class Counts(Protocol):
    """Each movie's counts: CountRepository, or an in-memory fake."""

    def apply(self, movie_id: str, delta: Delta, at: datetime) -> VoteCounts:
        """Adds the delta and one to the version, in one atomic step (creating the counts at
        zero first); a count that would go below zero stays at zero. The counts after it."""
        ...

    def get(self, movie_id: str) -> VoteCounts | None: ...
    def mark_synced(self, movie_id: str, version: int) -> None: ...

    def unsynced(self, limit: int) -> list[VoteCounts]:
        """Counts whose version the catalog has not confirmed."""
        ...

    def after(self, movie_id: str, limit: int) -> list[VoteCounts]:
        """Up to `limit` counts whose movie id sorts after `movie_id`, in that order."""
        ...

    def correct(self, movie_id: str, version: int, upvotes: int, downvotes: int,
                at: datetime) -> VoteCounts | None:
        """Sets the counts (one version more) if their version is still `version` (0: there
        are none yet); the new counts, or None."""
        ...

    def delete(self, movie_id: str) -> None: ...


class Catalog(Protocol):
    """The catalog service, as this one needs it (CatalogClient). Each raises Unavailable when
    the catalog cannot answer."""

    def existing(self, movie_ids: list[str]) -> set[str]: ...

    def set_counts(self, counts: VoteCounts) -> None:
        """Tells the catalog the counts (it keeps the highest version); NotFound when the movie
        is not in the catalog."""
        ...


@dataclass(frozen=True)
class RatingPage:
    ratings: list[Rating]
    next_page_token: str  # "" on the last page
    total_size: int | None


@dataclass(frozen=True)
class SweepReport:
    pushed: int = 0
    corrected: int = 0
    forgotten: int = 0  # movies the catalog no longer has, whose ratings went


def _movie_id(movie_id: str) -> str:
    if not movie_id:
        raise InvalidArgument("movie_id is required")
    if len(movie_id) > MAX_MOVIE_ID_CHARS:
        raise InvalidArgument(f"movie_id must have at most {MAX_MOVIE_ID_CHARS} characters "
                              f"(got {len(movie_id)})")
    return movie_id


def _rating_type(rating_type: str) -> str:
    if not rating_type:
        raise InvalidArgument("rating_type is required: UPVOTE or DOWNVOTE")
    wanted = rating_type.strip().upper() if len(rating_type) <= MAX_RATING_TYPE_CHARS else ""
    if wanted not in RATING_TYPES:
        shown = repr(rating_type) if len(rating_type) <= MAX_RATING_TYPE_CHARS else \
            f"{len(rating_type)} characters"
        raise InvalidArgument(f"rating_type must be UPVOTE or DOWNVOTE (got {shown})")
    return wanted


def _plausible(rating_id: str) -> bool:
    """Whether the id could name a rating (a longer one is not looked up); InvalidArgument for
    none at all."""
    if not rating_id:
        raise InvalidArgument("rating_id is required")
    return len(rating_id) <= MAX_RATING_ID_CHARS


def _not_found(rating_id: str) -> NotFound:
    shown = repr(rating_id) if len(rating_id) <= MAX_RATING_ID_CHARS else "of that length"
    return NotFound(f"no rating with id {shown}")


def _already_rated(existing: Rating | None) -> AlreadyExists:
    if existing is None:  # deleted again since
        return AlreadyExists("you have rated this movie already; try again")
    return AlreadyExists(
        f"you have rated this movie already (rating {existing.id}): change that rating with "
        f"PUT or PATCH /ratings/{existing.id}, or delete it")


class _MovieGone(Exception):
    """The catalog no longer has the movie; its ratings have been deleted."""


class RatingsService:
    def __init__(self, votes: Votes, counts: Counts, catalog: Catalog, *,
                 clock: Callable[[], datetime] = now,
                 clock_ns: Callable[[], int] = time.time_ns) -> None:
        self._votes = votes
        self._counts = counts
        self._catalog = catalog
        self._clock = clock
        self._clock_ns = clock_ns
        # Where the sweep goes on: ratings changed after this (updated_at, id), and the slice
        # of counts after this movie id.
        self._recent: tuple[datetime, str] = (clock() - RECONCILE_LOOKBACK, "")
        self._slice_after = ""

    # --- for users -------------------------------------------------------------------------

    def create(self, caller: Caller, movie_id: str, rating_type: str) -> Rating:
        movie_id, rating_type = _movie_id(movie_id), _rating_type(rating_type)
        if movie_id not in self._catalog.existing([movie_id]):
            raise NotFound(f"no movie with id {movie_id!r}")
        t = self._clock()
        rating = Rating(id=random_id(), user_id=caller.user_id, username=caller.username,
                        movie_id=movie_id, rating_type=rating_type, created_at=t, updated_at=t,
                        created_ns=self._clock_ns())
        if not self._votes.insert(rating):
            raise _already_rated(self._votes.find(caller.user_id, movie_id))
        try:
            self._commit(movie_id, created(rating_type), undo=lambda: self._votes.remove(rating))
        except _MovieGone:
            raise NotFound(f"no movie with id {movie_id!r}") from None
        log.info("rating created", extra={"rating_id": rating.id, "movie_id": movie_id,
                                          "rating_type": rating_type})
        return rating

    def get(self, caller: Caller, rating_id: str) -> Rating:
        """The caller's rating; another user's is NotFound exactly as a missing one, so that ids
        cannot be probed."""
        rating = self._votes.get(rating_id) if _plausible(rating_id) else None
        if rating is None or rating.user_id != caller.user_id:
            raise _not_found(rating_id)
        return rating

    def list_ratings(self, caller: Caller, *, movie_id: str = "", page: int | None = None,
                     limit: int | None = None, page_size: int = 0, page_token: str = "",
                     with_total: bool = False) -> RatingPage:
        """A page of the caller's ratings, newest first (see rating_pages for the paging)."""
        if movie_id:
            _movie_id(movie_id)
        query = list_query(page=page, limit=limit, page_size=page_size, page_token=page_token)
        # One rating more than the page tells whether another page follows.
        ratings = self._votes.list_for_user(caller.user_id, movie_id=movie_id,
                                            limit=query.limit + 1, skip=query.skip,
                                            after=query.after)
        total = self._votes.count_for_user(caller.user_id, movie_id=movie_id) \
            if with_total else None
        if len(ratings) <= query.limit:
            return RatingPage(ratings, "", total)
        ratings = ratings[: query.limit]
        return RatingPage(ratings, encode_token(position_of(ratings[-1])), total)

    def update(self, caller: Caller, rating_id: str, rating_type: str, *, movie_id: str = "",
               sent_id: str = "") -> Rating:
        """Sets the rating's type. `movie_id` and `sent_id` are what the client sent back of
        the rating; they must not differ from the stored ones."""
        rating_type = _rating_type(rating_type)
        current = self.get(caller, rating_id)
        if movie_id and movie_id != current.movie_id:
            raise InvalidArgument("a rating's movie_id cannot change: delete this rating and rate "
                                  "the other movie")
        if sent_id and sent_id != current.id:
            raise InvalidArgument("the rating's id in the body differs from the one in the path")
        for _ in range(FLIP_ATTEMPTS):
            if current.rating_type == rating_type:
                # Nothing to change: a concurrent call may have flipped it. Its counts should
                # reach the catalog before this answer too.
                self._settle(current.movie_id)
                return current
            changed = self._flip(current, rating_type)
            if changed is not None:
                return changed
            current = self.get(caller, rating_id)  # changed or deleted meanwhile
        raise Unavailable("the rating kept changing while this call changed it; try again")

    def _flip(self, current: Rating, rating_type: str) -> Rating | None:
        """Changes the rating from its type in `current` to `rating_type` and moves the counts;
        None when another call changed the rating first (that call moved the counts)."""
        changed = self._votes.change_type(current, rating_type, self._clock())
        if changed is None:
            return None
        try:
            self._commit(changed.movie_id, flipped(current.rating_type, rating_type),
                         undo=lambda: self._votes.change_type(
                             changed, current.rating_type, self._clock()) is not None)
        except _MovieGone:
            raise NotFound(f"no movie with id {changed.movie_id!r}") from None
        log.info("rating changed", extra={"rating_id": changed.id, "movie_id": changed.movie_id,
                                          "rating_type": rating_type})
        return changed

    def delete(self, caller: Caller, rating_id: str) -> None:
        # Deleted only if it is the caller's: another user's id is answered as a missing one.
        gone = self._votes.delete(rating_id, caller.user_id) if _plausible(rating_id) else None
        if gone is None:
            raise _not_found(rating_id)
        # If the movie went meanwhile, its ratings went with it: this one is gone either way.
        with contextlib.suppress(_MovieGone):
            self._commit(gone.movie_id, deleted(gone.rating_type),
                         undo=lambda: self._votes.insert(gone))
        log.info("rating deleted", extra={"rating_id": rating_id, "movie_id": gone.movie_id})

    # --- for services ----------------------------------------------------------------------

    def delete_movie_ratings(self, movie_id: str) -> int:
        """Deletes a movie's ratings and counts (the catalog deleted the movie)."""
        movie_id = _movie_id(movie_id)
        count = self._votes.delete_for_movie(movie_id)
        self._counts.delete(movie_id)
        log.info("movie's ratings deleted", extra={"movie_id": movie_id, "deleted": count})
        return count

    def user_votes(self, user_id: str, limit: int) -> tuple[list[Rating], str]:
        """Up to `limit` of the user's ratings, most recently changed first, and their version:
        the count of the user's ratings and the latest change among them. Creating or flipping
        a vote moves the latest change forward; deleting one lowers the count, and the count can
        only come back by a creation, which moves the latest change. So every change gives a new
        version, derived from the votes themselves: no counter to keep in step with them."""
        if not user_id:
            raise InvalidArgument("user_id is required")
        if not 0 <= limit <= MAX_USER_VOTES:
            raise InvalidArgument(f"limit must be from 0 to {MAX_USER_VOTES} (got {limit})")
        latest = self._votes.recently_changed(user_id, max(limit, 1))
        count = self._votes.count_for_user(user_id, movie_id="")
        changed = latest[0].updated_at.isoformat() if latest else "-"
        return latest[:limit], f"{count}:{changed}"

    def sweep(self) -> SweepReport:
        """One round: recounts movies whose counts may have drifted, then pushes the counts the
        catalog has not confirmed."""
        corrected, forgotten = self._reconcile()
        pushed = 0
        for counts in self._counts.unsynced(PUSH_BATCH):
            try:
                self._push(counts)
                pushed += 1
            except _MovieGone:
                forgotten += 1
            except Unavailable as exc:
                log.warning("vote counts not pushed; next round tries again",
                            extra={"reason": str(exc)})
                break
        report = SweepReport(pushed=pushed, corrected=corrected, forgotten=forgotten)
        if pushed or corrected or forgotten:
            log.info("ratings sweep", extra={"pushed": pushed, "corrected": corrected,
                                             "forgotten": forgotten})
        return report

    # --- counts ----------------------------------------------------------------------------

    def _commit(self, movie_id: str, delta: Delta, undo: Callable[[], bool]) -> None:
        """Applies the delta of a vote just changed and tells the catalog. If the catalog cannot
        be told, the vote's change is undone with the opposite delta (unless another call has
        changed the rating since, in which case both stand and the sweep pushes the counts),
        and the call answers UNAVAILABLE."""
        counts = self._counts.apply(movie_id, delta, self._clock())
        try:
            self._push(counts)
        except Unavailable as exc:
            if not undo():
                raise Unavailable(f"{exc}; your change is recorded and the movie's counts will "
                                  "show it once the catalog is back") from None
            undone = self._counts.apply(movie_id, -delta, self._clock())
            log.warning("vote undone: the catalog cannot be told", extra={
                "movie_id": movie_id, "reason": str(exc), "version": undone.version})
            # A slow catalog may have applied the change after the deadline: the undone counts,
            # newer, replace it there now if it answers, else the sweep does.
            self._settle(movie_id)
            raise Unavailable(f"{exc}; nothing was changed, try again") from None

    def _push(self, counts: VoteCounts) -> None:
        """Tells the catalog the counts and records that it has them; _MovieGone, after
        deleting the movie's ratings, when the catalog has no such movie."""
        try:
            self._catalog.set_counts(counts)
        except NotFound:
            self.delete_movie_ratings(counts.movie_id)
            raise _MovieGone(counts.movie_id) from None
        self._counts.mark_synced(counts.movie_id, counts.version)

    def _settle(self, movie_id: str) -> None:
        """Pushes the movie's counts if the catalog has not confirmed them; best effort (a call
        that changed nothing does not fail for it)."""
        counts = self._counts.get(movie_id)
        if counts is None or counts.synced_version >= counts.version:
            return
        with contextlib.suppress(_MovieGone, Unavailable):  # the sweep goes on with it
            self._push(counts)

    def _reconcile(self) -> tuple[int, int]:
        """Recounts the movies whose ratings changed since the last round (settled ones only),
        and the next slice of all counts, whose movies it also asks the catalog about (one whose
        deletion this service missed still has ratings). Returns how many counts it corrected
        and how many movies it forgot."""
        t = self._clock()
        settled_before = t - RECONCILE_GRACE
        changed = self._votes.changed_since(self._recent, settled_before, RECENT_BATCH)
        if changed:
            self._recent = changed[-1][:2]
        movie_ids = [movie_id for _, _, movie_id in changed]
        in_slice = [c.movie_id for c in self._counts.after(self._slice_after, SLICE_BATCH)]
        self._slice_after = in_slice[-1] if len(in_slice) == SLICE_BATCH else ""
        gone = self._missing_from_catalog(in_slice)
        for movie_id in gone:
            self.delete_movie_ratings(movie_id)
        movie_ids += in_slice
        corrected = sum(self._recount(m, settled_before) for m in dict.fromkeys(movie_ids)
                        if m not in gone)
        return corrected, len(gone)

    def _missing_from_catalog(self, movie_ids: list[str]) -> set[str]:
        if not movie_ids:
            return set()
        try:
            return set(movie_ids) - self._catalog.existing(movie_ids)
        except Unavailable:
            return set()  # a later round asks again

    def _recount(self, movie_id: str, settled_before: datetime) -> bool:
        counts = self._counts.get(movie_id) or VoteCounts(movie_id=movie_id)
        if counts.updated_at is not None and counts.updated_at >= settled_before:
            return False  # calls may be in flight: a later round looks again
        last_vote = self._votes.latest_change(movie_id)
        if last_vote is not None and last_vote >= settled_before:
            return False
        upvotes, downvotes = self._votes.tally(movie_id)
        if (upvotes, downvotes) == (counts.upvotes, counts.downvotes):
            return False
        fixed = self._counts.correct(movie_id, counts.version, upvotes, downvotes, self._clock())
        if fixed is None:
            return False  # a vote came in meanwhile; a later round looks again
        log.warning("vote counts corrected from the stored ratings", extra={
            "movie_id": movie_id, "was": [counts.upvotes, counts.downvotes],
            "now": [upvotes, downvotes], "version": fixed.version})
        return True
