"""A movie as the catalog's use cases, its repository and the ingestion worker exchange it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


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

    @property
    def release_year(self) -> int | None:
        return self.release_date.year if self.release_date else None
