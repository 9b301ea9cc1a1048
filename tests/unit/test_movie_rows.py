"""Unit tests for services/worker/movie_rows.py: header normalisation, row parsing, natural keys."""

from __future__ import annotations

import csv
import hashlib
import io
from datetime import datetime
from pathlib import Path

import pytest

from services.worker.movie_rows import (
    MAX_TITLE,
    FileRejected,
    Header,
    RowRejected,
    natural_key,
    normalise_name,
    parse_header,
    parse_row,
)

# The first lines of /work/shared/data/tmdb-top10k.csv (header, the junk placeholder row, and
# real rows), kept here verbatim so the tests do not depend on the shared data directory.
TMDB_HEAD = (
    "id,title,genre,original_language,overview,popularity,release_date,vote_average,vote_count\n"
    '000,Choose A Movie,,,"",,,,\n'
    '278,The Shawshank Redemption,"Drama,Crime",en,"Framed in the 1940s for the double murder of '
    "his wife and her lover, upstanding banker Andy Dufresne begins a new life at the Shawshank "
    "prison, where he puts his accounting skills to work for an amoral warden. During his long "
    "stretch in prison, Dufresne comes to be admired by the other inmates -- including an older "
    'prisoner named Red -- for his integrity and unquenchable sense of hope.",94.075,1994-09-23,'
    "8.7,21862\n"
    '424,Schindler\'s List,"Drama,History,War",en,The true story of how businessman Oskar '
    "Schindler saved over a thousand Jewish lives from the Nazis while they worked as slaves in "
    "his factory during World War II.,44.761,1993-12-15,8.6,12959\n"
    '429,"The Good, the Bad and the Ugly",Western,it,"While the Civil War rages between the Union '
    "and the Confederacy, three men \u2013 a quiet loner, a ruthless hit man and a Mexican bandit "
    "\u2013 comb the American Southwest in search of a strongbox containing $200,000 in stolen "
    'gold.",47.73,1966-12-23,8.5,6747\n'
)
TMDB_FILE = Path("/work/shared/data/tmdb-top10k.csv")
COLUMNS = ["id", "title", "genre", "original_language", "overview", "popularity",
           "release_date", "vote_average", "vote_count"]


def _rows(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


def _tmdb() -> tuple[Header, list[list[str]]]:
    header_row, *rows = _rows(TMDB_HEAD)
    return parse_header(header_row), rows


def _header() -> Header:
    return parse_header(COLUMNS)


def _row(**values: str) -> list[str]:
    base = {"id": "1", "title": "Heat", "genre": "Crime,Drama", "original_language": "en",
            "overview": "A heist.", "popularity": "12.5", "release_date": "1995-12-15",
            "vote_average": "7.9", "vote_count": "6000"}
    base.update(values)
    return [base[c] for c in COLUMNS]


def _rejected(values: list[str], header: Header | None = None) -> str:
    with pytest.raises(RowRejected) as info:
        parse_row(header or _header(), values)
    return str(info.value)


# --- header -------------------------------------------------------------------------------------

def test_normalise_name_strips_bom_case_spaces_and_punctuation() -> None:
    assert normalise_name("\ufeffID") == "id"
    assert normalise_name("  Release Date ") == "release_date"
    assert normalise_name("Vote-Average") == "vote_average"
    assert normalise_name("__Title__") == "title"


def test_parse_header_normalises_the_real_header_with_a_bom() -> None:
    header = parse_header(["\ufeffid", "Title", " GENRE ", "Original Language", "overview",
                           "popularity", "Release Date", "vote_average", "Vote Count"])
    assert header.names == COLUMNS
    assert header.extra == []


@pytest.mark.parametrize(("alias", "field"), [
    ("movie_id", "id"), ("TMDB ID", "id"), ("Movie Title", "title"), ("name", "title"),
    ("Genres", "genre"), ("language", "original_language"), ("lang", "original_language"),
    ("description", "overview"), ("plot", "overview"), ("Released", "release_date"),
    ("date", "release_date"), ("rating", "vote_average"), ("average_vote", "vote_average"),
    ("votes", "vote_count"), ("num_votes", "vote_count"),
])
def test_parse_header_maps_aliases(alias: str, field: str) -> None:
    raw = [alias] if field == "title" else ["title", alias]
    assert field in parse_header(raw).names


def test_alias_is_not_applied_when_the_real_column_is_also_present() -> None:
    header = parse_header(["title", "name"])
    assert header.names == ["title", "name"]
    assert header.extra == ["name"]


def test_missing_title_is_a_file_rejection_naming_title() -> None:
    with pytest.raises(FileRejected, match="'title'") as info:
        parse_header(["id", "genre", "overview"])
    assert "'genre'" in str(info.value)  # it shows what it found


def test_empty_header_is_a_file_rejection() -> None:
    with pytest.raises(FileRejected, match="title"):
        parse_header([])


@pytest.mark.parametrize("raw", [
    ["title", "Title"], ["title", " TITLE "], ["id", "title", "genre", "Genre"],
    ["name", "movie_title"],  # two aliases of the same field
])
def test_duplicate_columns_are_a_file_rejection(raw: list[str]) -> None:
    with pytest.raises(FileRejected, match="twice"):
        parse_header(raw)


def test_unnamed_columns_are_allowed_and_dropped() -> None:
    header = parse_header(["", "title", ""])
    assert header.names == ["", "title", ""]
    assert header.extra == []
    movie = parse_row(header, ["x", "Heat", "y"])
    assert movie["title"] == "Heat"
    assert movie["extra"] == {}


def test_extra_columns_are_listed_and_kept() -> None:
    header = parse_header([*COLUMNS, "Director", "Box Office"])
    assert header.extra == ["director", "box_office"]
    movie = parse_row(header, [*_row(), "Michael Mann", ""])
    assert movie["extra"] == {"director": "Michael Mann"}  # empty extras are left out


def test_too_many_extra_columns_are_a_file_rejection() -> None:
    with pytest.raises(FileRejected, match="too many columns"):
        parse_header(["title", *[f"c{i}" for i in range(51)]])


# --- rows from the real file --------------------------------------------------------------------

def test_placeholder_row_of_the_real_file_is_rejected() -> None:
    header, rows = _tmdb()
    assert rows[0][:2] == ["000", "Choose A Movie"]
    assert "placeholder" in _rejected(rows[0], header)


def test_real_rows_parse_to_typed_movies() -> None:
    header, rows = _tmdb()
    shawshank = parse_row(header, rows[1])
    assert shawshank["id"] == "278"
    assert shawshank["title"] == "The Shawshank Redemption"
    assert shawshank["genre"] == ["Drama", "Crime"]
    assert shawshank["original_language"] == "en"
    assert shawshank["overview"].startswith("Framed in the 1940s")
    assert shawshank["popularity"] == pytest.approx(94.075)
    assert shawshank["release_date"] == datetime(1994, 9, 23)
    assert isinstance(shawshank["vote_average"], float)
    assert shawshank["vote_average"] == pytest.approx(8.7)
    assert shawshank["vote_count"] == 21862
    assert type(shawshank["vote_count"]) is int
    assert shawshank["extra"] == {}

    schindler = parse_row(header, rows[2])
    assert schindler["title"] == "Schindler's List"
    assert schindler["genre"] == ["Drama", "History", "War"]
    assert schindler["release_date"] == datetime(1993, 12, 15)
    assert schindler["vote_count"] == 12959

    ugly = parse_row(header, rows[3])
    assert ugly["title"] == "The Good, the Bad and the Ugly"
    assert ugly["genre"] == ["Western"]
    assert "\u2013 a quiet loner" in ugly["overview"]


@pytest.mark.skipif(not TMDB_FILE.exists(), reason="shared data file not present")
def test_first_rows_of_the_shared_file_only_reject_the_placeholder() -> None:
    with TMDB_FILE.open(encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        header = parse_header(next(reader))
        rows = [next(reader) for _ in range(20)]
    assert "placeholder" in _rejected(rows[0], header)
    movies = [parse_row(header, r) for r in rows[1:]]
    assert all(isinstance(m["release_date"], datetime) for m in movies)
    assert all(isinstance(m["vote_count"], int) and m["genre"] for m in movies)


# --- values -------------------------------------------------------------------------------------

def test_values_are_stripped_language_lowered_and_empty_numbers_are_none() -> None:
    movie = parse_row(_header(), _row(title="  Heat ", original_language=" EN ", popularity="",
                                      vote_average="", vote_count="", release_date=""))
    assert movie["title"] == "Heat"
    assert movie["original_language"] == "en"
    assert movie["popularity"] is None
    assert movie["vote_average"] is None
    assert movie["vote_count"] is None
    assert movie["release_date"] is None


@pytest.mark.parametrize(("text", "genres"), [
    ("Drama,Crime", ["Drama", "Crime"]),
    ("['Drama', 'Crime']", ["Drama", "Crime"]),
    ("Drama|Crime", ["Drama", "Crime"]),
    ("Drama; Crime ;", ["Drama", "Crime"]),
    ("", []),
])
def test_genre_lists(text: str, genres: list[str]) -> None:
    assert parse_row(_header(), _row(genre=text))["genre"] == genres


@pytest.mark.parametrize(("text", "expected"), [
    ("1994-09-23", datetime(1994, 9, 23)),
    ("1994/09/23", datetime(1994, 9, 23)),
    ("23.09.1994", datetime(1994, 9, 23)),
    ("19940923", datetime(1994, 9, 23)),
    ("1994-09-23T10:00:00+02:00", datetime(1994, 9, 23, 8, 0)),  # to naive UTC
])
def test_release_date_formats(text: str, expected: datetime) -> None:
    value = parse_row(_header(), _row(release_date=text))["release_date"]
    assert value == expected
    assert value.tzinfo is None


@pytest.mark.parametrize(("values", "field"), [
    ({"vote_average": "eight"}, "vote_average"),
    ({"vote_average": "nan"}, "vote_average"),
    ({"vote_average": "10.5"}, "vote_average"),
    ({"vote_average": "-0.1"}, "vote_average"),
    ({"vote_count": "many"}, "vote_count"),
    ({"vote_count": "-3"}, "vote_count"),
    ({"vote_count": "2.5"}, "vote_count"),
    ({"popularity": "inf"}, "popularity"),
    ({"popularity": "high"}, "popularity"),
    ({"release_date": "1994-13-45"}, "release_date"),
    ({"release_date": "next year"}, "release_date"),
    ({"release_date": "0001-01-01T00:00:00+01:00"}, "release_date"),  # the year 0 in UTC
    ({"release_date": "9999-12-31T23:00:00-01:00"}, "release_date"),  # the year 10000 in UTC
    ({"title": ""}, "title"),
    ({"title": "   "}, "title"),
    ({"title": "x" * (MAX_TITLE + 1)}, "title"),
    ({"overview": "x" * 20_001}, "overview"),
    ({"id": "9" * 101}, "id"),
    ({"original_language": "x" * 21}, "original_language"),
])
def test_bad_values_are_rejected_naming_the_field(values: dict[str, str], field: str) -> None:
    assert field in _rejected(_row(**values))


def test_title_of_exactly_the_maximum_length_is_accepted() -> None:
    assert len(parse_row(_header(), _row(title="x" * MAX_TITLE))["title"]) == MAX_TITLE


def test_vote_average_bounds_are_inclusive() -> None:
    assert parse_row(_header(), _row(vote_average="0"))["vote_average"] == 0.0
    assert parse_row(_header(), _row(vote_average="10"))["vote_average"] == 10.0


def test_whole_float_vote_count_becomes_int() -> None:
    value = parse_row(_header(), _row(vote_count="120.0"))["vote_count"]
    assert value == 120
    assert type(value) is int


def test_vote_count_beyond_int64_is_rejected() -> None:
    assert "vote_count" in _rejected(_row(vote_count="1e30"))


@pytest.mark.parametrize("values", [_row()[:-1], [*_row(), "extra"], ["Heat"]])
def test_wrong_field_count_is_rejected_with_both_counts(values: list[str]) -> None:
    reason = _rejected(values)
    assert f"row has {len(values)} fields" in reason
    assert f"header has {len(COLUMNS)}" in reason


def test_title_only_header_accepts_a_bare_title() -> None:
    movie = parse_row(parse_header(["title"]), ["Heat"])
    assert movie["title"] == "Heat"
    assert movie["id"].startswith("t-")


# --- natural key --------------------------------------------------------------------------------

def test_natural_key_is_the_csv_id_when_present() -> None:
    assert natural_key("278", "The Shawshank Redemption", datetime(1994, 9, 23)) == "278"
    assert parse_row(_header(), _row(id=" 000278 "))["id"] == "000278"


def test_natural_key_without_id_is_a_stable_hash_of_title_and_date() -> None:
    key = natural_key("", "Heat", datetime(1995, 12, 15))
    digest = hashlib.sha1(b"heat|1995-12-15").hexdigest()[:24]
    assert key == "t-" + digest
    assert natural_key("", "Heat", None) == "t-" + hashlib.sha1(b"heat|").hexdigest()[:24]


def test_natural_key_ignores_case_whitespace_and_time_of_day() -> None:
    day = datetime(1995, 12, 15)
    key = natural_key("", "The Dark Knight", day)
    assert natural_key("", "  the   DARK\tknight ", day) == key
    assert natural_key("", "The Dark Knight", datetime(1995, 12, 15, 23, 59)) == key
    assert natural_key("", "The Dark Knight", datetime(1995, 12, 16)) != key
    assert natural_key("", "The Dark Night", day) != key
    assert natural_key("", "The Dark Knight", None) != key


def test_rows_without_id_get_the_same_key_however_the_title_is_spelled() -> None:
    first = parse_row(_header(), _row(id="", title="Heat"))
    second = parse_row(_header(), _row(id="", title="  HEAT "))
    assert first["id"] == second["id"] == natural_key("", "heat", datetime(1995, 12, 15))
    assert first["title"] == "Heat"  # the title itself keeps its spelling
