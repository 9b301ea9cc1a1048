"""Preferences as users send them, checked, and the criteria a run applies: the stored
preferences with a request's query parameters over them.

A preference keeps the shape it was sent in (`"genre": "Action"` stays a string, `"year": 2021`
a number), so that what is stored reads back as it was saved; `Criteria` is the one normalised
form the cache key and the runs use.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from services.common.errors import InvalidArgument

KEYS = ("genre", "year", "rating", "language")
MAX_GENRES = 20
MAX_GENRE_CHARS = 50
MAX_LANGUAGE_CHARS = 20
MAX_PARAM_CHARS = 40  # a year or rating query parameter: "7.5-9" and the like
MIN_YEAR, MAX_YEAR = 1, 9999
MIN_RATING, MAX_RATING = 0.0, 10.0
DEFAULT_LIMIT, MAX_LIMIT = 10, 100


@dataclass(frozen=True)
class Criteria:
    genres: tuple[str, ...] = ()  # any of these; sorted, without repeats
    year: tuple[int, int] | None = None  # inclusive
    rating: tuple[float, float] | None = None  # inclusive, on vote_average
    language: str = ""

    def as_key(self) -> dict[str, Any]:
        return {"genre": list(self.genres), "year": list(self.year or ()),
                "rating": list(self.rating or ()), "language": self.language}


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and \
        math.isfinite(value)


def _genre(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidArgument("genre must be a non-empty string or a list of them")
    if len(value) > MAX_GENRE_CHARS:
        raise InvalidArgument(f"a genre has at most {MAX_GENRE_CHARS} characters")
    return value.strip()


def _genres(value: Any) -> tuple[str, ...]:
    items = value if isinstance(value, list) else [value]
    if not items or len(items) > MAX_GENRES:
        raise InvalidArgument(f"genre must name 1 to {MAX_GENRES} genres")
    return tuple(sorted({_genre(item) for item in items}))


def _range(name: str, value: Any, low: float, high: float, *, whole: bool
           ) -> tuple[float, float]:
    """A number or an inclusive [low, high] pair, within the bounds."""
    kind = "a whole number" if whole else "a number"
    pair = value if isinstance(value, list) else [value, value]
    if len(pair) != 2 or not all(_is_number(v) for v in pair):
        raise InvalidArgument(f"{name} must be {kind} or a [low, high] pair of them")
    if whole and not all(float(v).is_integer() for v in pair):
        raise InvalidArgument(f"{name} must be {kind} or a [low, high] pair of them")
    lo, hi = float(pair[0]), float(pair[1])
    if not (low <= lo <= high and low <= hi <= high):
        shown = f"{int(low)} to {int(high)}"
        raise InvalidArgument(f"{name} must be from {shown} (got {value})")
    if lo > hi:
        raise InvalidArgument(f"{name} range is reversed: {lo:g} is above {hi:g}")
    return lo, hi


def _language(value: Any) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_LANGUAGE_CHARS:
        raise InvalidArgument("language must be a language code such as 'en'")
    return value.strip().lower()


def _as_sent(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


def check_preferences(preferences: dict[str, Any]) -> dict[str, Any]:
    """The preferences to store, in the shape they were sent; InvalidArgument naming the
    problem. A key set to null is left out."""
    unknown = sorted(set(preferences) - set(KEYS))
    if unknown:
        shown = ", ".join(repr(k[:40]) for k in unknown[:5])
        raise InvalidArgument(f"unknown preference {shown}: the keys are {', '.join(KEYS)}")
    stored: dict[str, Any] = {}
    for key in KEYS:
        value = preferences.get(key)
        if value is None:
            continue
        if key == "genre":
            _genres(value)
            stored[key] = value.strip() if isinstance(value, str) else [g.strip() for g in value]
        elif key == "year":
            _range("year", value, MIN_YEAR, MAX_YEAR, whole=True)
            stored[key] = [_as_sent(v) for v in value] if isinstance(value, list) \
                else _as_sent(value)
        elif key == "rating":
            _range("rating", value, MIN_RATING, MAX_RATING, whole=False)
            stored[key] = [_as_sent(v) for v in value] if isinstance(value, list) \
                else _as_sent(value)
        else:
            stored[key] = _language(value)
    return stored


def criteria_of(stored: dict[str, Any]) -> Criteria:
    """The criteria of checked preferences."""
    year = rating = None
    if "year" in stored:
        lo, hi = _range("year", stored["year"], MIN_YEAR, MAX_YEAR, whole=True)
        year = (int(lo), int(hi))
    if "rating" in stored:
        rating = _range("rating", stored["rating"], MIN_RATING, MAX_RATING, whole=False)
    return Criteria(genres=_genres(stored["genre"]) if "genre" in stored else (), year=year,
                    rating=rating, language=stored.get("language", ""))


def _param_range(name: str, text: str) -> list[float]:
    """"2021", "2021-2022" or "2021,2022" as a list of numbers."""
    if len(text) > MAX_PARAM_CHARS:
        raise InvalidArgument(f"{name} must be a number or a range such as 2021-2022")
    parts = text.replace(",", "-").split("-")
    try:
        numbers = [float(p) for p in parts]
    except ValueError:
        raise InvalidArgument(f"{name} must be a number or a range such as "
                              f"{'2021-2022' if name == 'year' else '7.5-9'} (got "
                              f"{text!r})") from None
    return numbers


def override(stored: dict[str, Any], *, genre: list[str], year: str, rating: str,
             language: str) -> Criteria:
    """The stored preferences with each query parameter given replacing its key."""
    if len(genre) > MAX_GENRES:
        raise InvalidArgument(f"genre must name 1 to {MAX_GENRES} genres")
    merged = dict(stored)
    genres = [g for text in genre for g in text[: MAX_GENRES * (MAX_GENRE_CHARS + 1)].split(",")
              if g.strip()]
    if genres:
        merged["genre"] = genres
    for name, text in (("year", year), ("rating", rating)):
        if text.strip():
            numbers = _param_range(name, text.strip())
            merged[name] = numbers if len(numbers) != 1 else numbers[0]
    if language.strip():
        merged["language"] = language
    return criteria_of(check_preferences(merged))


def check_limit(limit: int | None) -> int:
    if limit is None:
        return DEFAULT_LIMIT
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidArgument(f"limit must be from 1 to {MAX_LIMIT} (got {limit})")
    return limit
