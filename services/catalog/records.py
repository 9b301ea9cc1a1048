"""A movie as the catalog's use cases, its repository and the ingestion worker exchange it, and
who imports it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class Provenance:
    """Who a stored movie belongs to and who changed it last. Movies stored before the catalog
    kept owners have none of it but `updated_at`; the next import claims them."""

    imported_by_id: str = ""  # the user id of the first importer: the owner
    imported_by: str = ""  # their username
    updated_at: datetime | None = None  # UTC without a zone
    updated_by: str = ""  # the username of the last importer


@dataclass(frozen=True)
class Movie:
    id: str  # the natural key: the CSV's id when present, else derived from title and date
    title: str
    original_language: str = ""
    overview: str = ""
    genre: list[str] = field(default_factory=list)
    release_date: datetime | None = None  # UTC without a zone
    popularity: float | None = None
    vote_average: float | None = None
    vote_count: int | None = None
    extra: dict[str, str] = field(default_factory=dict)  # CSV columns with no field here
    # Set by the catalog when it stores the movie; None in what the worker sends.
    provenance: Provenance | None = None
    # Kept by the catalog beside the movie and read from the store, never taken from an import:
    # the vote counts the ratings service sends, and the two values that order pages by score
    # (upvotes - downvotes; None on a movie stored before scores) and by relevance (the
    # weighted rating; None before the upgrade gave the movie one). Those two are for page
    # tokens only, not part of the movie shown: a page from the cache does not hold them, and
    # compares equal to the page as read.
    upvotes: int = 0
    downvotes: int = 0
    score: int | None = field(default=None, compare=False)
    weighted_rating: float | None = field(default=None, compare=False)

    @property
    def release_year(self) -> int | None:
        return self.release_date.year if self.release_date else None


@dataclass(frozen=True)
class Importer:
    """The user an import is for (the uploader of the file, as their task recorded them)."""

    user_id: str
    username: str
    is_admin: bool = False


@dataclass(frozen=True)
class ImportResult:
    inserted: int
    replaced: int
    # Movie id -> the owner's username, for the movies of the batch another user owns.
    skipped: dict[str, str] = field(default_factory=dict)
