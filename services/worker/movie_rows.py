"""CSV rows to movies: header normalisation, value parsing and the natural key. Pure logic.

A row that cannot become a movie raises RowRejected with a reason a person can act on; the file
goes on. A header that cannot describe movies raises FileRejected; the file stops.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

KNOWN = ("id", "title", "genre", "original_language", "overview", "popularity", "release_date",
         "vote_average", "vote_count")
ALIASES = {
    "movie_id": "id", "tmdb_id": "id",
    "movie_title": "title", "name": "title",
    "genres": "genre",
    "language": "original_language", "lang": "original_language",
    "description": "overview", "plot": "overview",
    "released": "release_date", "release": "release_date", "date": "release_date",
    "rating": "vote_average", "vote_avg": "vote_average", "average_vote": "vote_average",
    "votes": "vote_count", "num_votes": "vote_count",
}
MAX_TITLE = 500
MAX_TEXT = 20_000
MAX_ID = 100
MAX_EXTRA_COLUMNS = 50
MAX_VOTE_COUNT = 2**53  # stored as a number: keep it exact in JSON and int64
SHOWN_CHARS = 60  # of a column name quoted in an error: enough to recognise it
DATE_FORMATS = ("%Y/%m/%d", "%d.%m.%Y", "%Y%m%d")


class RowRejected(ValueError):
    pass


class FileRejected(ValueError):
    pass


@dataclass(frozen=True)
class Header:
    """Each CSV column's normalised name: a known field, or kept as an extra column."""

    names: list[str]
    extra: list[str] = field(default_factory=list)


def normalise_name(raw: str) -> str:
    name = raw.replace("\ufeff", "").strip().lower()
    return re.sub(r"[^a-z0-9]+", "_", name).strip("_")


def parse_header(raw: list[str]) -> Header:
    """The columns' names. Linear in the header: the caller bounds its length and column count
    (csv_source.CsvLimits) before this runs."""
    names = [normalise_name(c) for c in raw]
    present = set(names)  # an alias is kept as is when its field is also a column
    names = [ALIASES.get(n, n) if ALIASES.get(n, n) not in present else n for n in names]
    if "title" not in names:
        shown = ", ".join(repr(c[:SHOWN_CHARS]) for c in raw[:12]) or "nothing"
        raise FileRejected(
            f"no usable header: the first row must name the columns and include 'title' "
            f"(found {shown})"
        )
    seen: set[str] = set()
    for name in names:
        if name and name in seen:
            raise FileRejected(f"the header names the column {name[:SHOWN_CHARS]!r} twice")
        seen.add(name)
    extra = [n for n in names if n and n not in KNOWN]
    if len(extra) > MAX_EXTRA_COLUMNS:
        raise FileRejected(f"too many columns: at most {MAX_EXTRA_COLUMNS} besides the movie "
                           "fields")
    return Header(names=names, extra=extra)


def _number(name: str, text: str) -> float | None:
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise RowRejected(f"{name} {text[:40]!r} is not a number") from None
    if not math.isfinite(value):
        raise RowRejected(f"{name} {text[:40]!r} is not a finite number")
    return value


def _date(text: str) -> datetime | None:
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        for fmt in DATE_FORMATS:
            try:
                value = datetime.strptime(text, fmt)
                break
            except ValueError:
                continue
        else:
            raise RowRejected(f"release_date {text[:40]!r} is not a date (use YYYY-MM-DD)") \
                from None
    if value.tzinfo is not None:
        try:
            value = value.astimezone(UTC).replace(tzinfo=None)
        except OverflowError:  # e.g. 0001-01-01T00:00+01:00 is in the year 0 in UTC
            raise RowRejected(f"release_date {text[:40]!r} is out of range") from None
    return value


def _genres(text: str) -> list[str]:
    text = text.strip("[]")
    return [g.strip(" '\"") for g in re.split(r"[,|;]", text) if g.strip(" '\"")]


def natural_key(movie_id: str, title: str, release: datetime | None) -> str:
    """The CSV's id when present; else the normalised title and release date."""
    if movie_id:
        return movie_id
    norm = " ".join(title.casefold().split())
    digest = hashlib.sha1(f"{norm}|{release.date() if release else ''}".encode()).hexdigest()
    return "t-" + digest[:24]


def field_count_reason(fields: int, columns: int) -> str:
    """Why a row whose field count is not the header's is rejected (imports and operations)."""
    return (f"row has {fields} fields but the header has {columns}: check for unquoted commas "
            "or a broken quote")


def parse_row(header: Header, values: list[str]) -> dict[str, Any]:
    """One CSV row as a movie dict for the catalog. Raises RowRejected."""
    if len(values) != len(header.names):
        raise RowRejected(field_count_reason(len(values), len(header.names)))
    row = {name: value.strip() for name, value in zip(header.names, values, strict=True) if name}
    title = row.get("title", "")
    if not title:
        raise RowRejected("title is empty")
    if len(title) > MAX_TITLE:
        raise RowRejected(f"title is longer than {MAX_TITLE} characters")
    for name, value in row.items():
        if len(value) > MAX_TEXT:
            raise RowRejected(f"{name} is longer than {MAX_TEXT} characters")
    movie_id = row.get("id", "")
    if len(movie_id) > MAX_ID:
        raise RowRejected(f"id is longer than {MAX_ID} characters")
    described = [n for n in header.names if n in KNOWN and n not in ("id", "title")]
    if described and not any(row.get(n) for n in described):
        raise RowRejected("row has no movie data besides its id and title (a placeholder row?)")
    release = _date(row.get("release_date", ""))
    vote_average = _number("vote_average", row.get("vote_average", ""))
    if vote_average is not None and not 0 <= vote_average <= 10:
        raise RowRejected(f"vote_average {vote_average} is outside 0-10")
    vote_count = _number("vote_count", row.get("vote_count", ""))
    if vote_count is not None and (not 0 <= vote_count <= MAX_VOTE_COUNT
                                   or vote_count != int(vote_count)):
        raise RowRejected(f"vote_count {row['vote_count'][:40]!r} is not a whole number from 0 "
                          f"to {MAX_VOTE_COUNT}")
    language = row.get("original_language", "").lower()
    if len(language) > 20:
        raise RowRejected("original_language is longer than 20 characters")
    return {
        "id": natural_key(movie_id, title, release),
        "title": title,
        "genre": _genres(row.get("genre", "")),
        "original_language": language,
        "overview": row.get("overview", ""),
        "popularity": _number("popularity", row.get("popularity", "")),
        "release_date": release,
        "vote_average": vote_average,
        "vote_count": int(vote_count) if vote_count is not None else None,
        "extra": {n: row[n] for n in header.extra if row.get(n)},
    }
