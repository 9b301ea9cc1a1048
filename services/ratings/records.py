"""Ratings and vote counts as the ratings use cases and the repository exchange them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

UPVOTE = "UPVOTE"
DOWNVOTE = "DOWNVOTE"
RATING_TYPES = (UPVOTE, DOWNVOTE)


def now() -> datetime:
    """The time as rating records hold it: UTC without a zone, to the millisecond (what Mongo
    gives back), so that a record the service made compares equal to its stored form."""
    t = datetime.now(UTC).replace(tzinfo=None)
    return t.replace(microsecond=t.microsecond // 1000 * 1000)


@dataclass(frozen=True, kw_only=True)
class Rating:
    id: str
    user_id: str  # the owner: access checks compare this
    username: str  # the owner's name when they rated, for display
    movie_id: str
    rating_type: str  # UPVOTE or DOWNVOTE
    created_at: datetime
    updated_at: datetime
    # Orders ratings newest first: created_at keeps only milliseconds.
    created_ns: int


@dataclass(frozen=True)
class Delta:
    """What one change of a vote does to its movie's counts."""

    upvotes: int = 0
    downvotes: int = 0

    @staticmethod
    def of(rating_type: str, sign: int) -> Delta:
        return Delta(upvotes=sign) if rating_type == UPVOTE else Delta(downvotes=sign)

    def __add__(self, other: Delta) -> Delta:
        return Delta(self.upvotes + other.upvotes, self.downvotes + other.downvotes)

    def __neg__(self) -> Delta:
        return Delta(-self.upvotes, -self.downvotes)


def created(rating_type: str) -> Delta:
    return Delta.of(rating_type, +1)


def deleted(rating_type: str) -> Delta:
    return Delta.of(rating_type, -1)


def flipped(old: str, new: str) -> Delta:
    return deleted(old) + created(new)


@dataclass(frozen=True, kw_only=True)
class VoteCounts:
    """A movie's counts. `version` grows with every change; the catalog keeps the counts of the
    highest version it was told, and `synced_version` is the highest one it confirmed."""

    movie_id: str
    upvotes: int = 0
    downvotes: int = 0
    version: int = 0
    synced_version: int = 0
    updated_at: datetime | None = None
