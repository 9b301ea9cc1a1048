"""Property-based tests (hypothesis) of the CSV reader, the delimiter sniffer, and header and row
parsing: on any input they answer or raise only their documented rejection, each example within
a deadline, and their time grows linearly with the input (issue 10's fuzzing bullet)."""

from __future__ import annotations

import csv
import gc
import io
import re
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone, tzinfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.catalog.movie_message import movie_message
from services.catalog.records import Movie
from services.worker import csv_source
from services.worker.csv_source import (
    DELIMITERS,
    HEAD_CHARS,
    ByteStream,
    CsvLimits,
    Record,
    records,
    sniff_delimiter,
)
from services.worker.movie_rows import (
    ALIASES,
    KNOWN,
    FileRejected,
    Header,
    RowRejected,
    parse_header,
    parse_row,
)

# A deadline catches a pathological example, not a busy machine: 300 ms flaked at a load
# average of 4 (the time's growth is measured by the linear-time tests).
FUZZ = settings(deadline=timedelta(seconds=2), max_examples=100,
                suppress_health_check=[HealthCheck.too_slow])
SMALL = CsvLimits(max_row_chars=40, max_header_chars=30, max_columns=5)
ROOMY = CsvLimits(max_row_chars=1 << 20, max_header_chars=1 << 20, max_columns=1000)

# Text made of what CSV parsing turns on: delimiters, quotes, line breaks, blanks, multi-byte.
CSV_TEXT = st.text(alphabet=st.sampled_from(list('ab ,;\t|"\r\n\u00e9\u20ac\U0001f600')),
                   max_size=300)
CHUNK = st.integers(min_value=1, max_value=64)


def _chunks(data: bytes, size: int) -> Iterator[bytes]:
    return (data[i : i + size] for i in range(0, len(data), size))


def _read(data: bytes, size: int, limits: CsvLimits) -> list[Record]:
    return list(records(ByteStream(_chunks(data, size)), lambda: True, limits))


# --- the reader ---------------------------------------------------------------------------------

@FUZZ
@given(st.binary(max_size=600), CHUNK)
def test_any_bytes_give_bounded_records_or_a_file_rejection(data: bytes, size: int) -> None:
    try:
        found = _read(data, size, SMALL)
    except FileRejected:
        return
    lines = [r.line for r in found]
    assert lines == sorted(set(lines)) and all(line >= 1 for line in lines)
    for i, record in enumerate(found):
        limit = SMALL.max_header_chars if i == 0 else SMALL.max_row_chars
        assert sum(map(len, record.fields)) <= limit
        assert not (record.rejected and record.fields) and len(record.head) <= HEAD_CHARS
    if found:
        assert not found[0].rejected and len(found[0].fields) <= SMALL.max_columns


@FUZZ
@given(CSV_TEXT, CHUNK)
def test_within_its_bounds_the_reader_reads_as_the_csv_module_does(text: str, size: int) -> None:
    """However the bytes are chunked, the records, their fields and the lines they start on are
    csv.reader's on the whole text (with the sniffed delimiter), blank records left out."""
    try:
        found = _read(text.encode(), size, ROOMY)
    except FileRejected:
        assert text == ""
        return
    assert [(r.line, r.fields) for r in found] == _reference(text)


def _reference(text: str) -> list[tuple[int, list[str]]]:
    header = next((line for line in text.splitlines() if line.strip()), "")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=sniff_delimiter(header))
    expected, previous = [], 0
    for fields in reader:
        start, previous = previous + 1, reader.line_num
        if any(f.strip() for f in fields):
            expected.append((start, fields))
    return expected


@FUZZ
@given(CSV_TEXT, CHUNK)
def test_csv_text_under_small_bounds_gives_bounded_records_or_a_file_rejection(
        text: str, size: int) -> None:
    try:
        found = _read(text.encode("utf-16"), size, SMALL)
    except FileRejected:
        return
    assert all(sum(map(len, r.fields)) <= SMALL.max_row_chars for r in found)


STEPS = st.lists(st.tuples(st.booleans(), st.integers(1, 40), st.integers(0, 40)), max_size=40)


@FUZZ
@given(CSV_TEXT, CHUNK, STEPS)
def test_the_text_reads_and_splits_lines_as_textiowrapper_without_translation(
        text: str, size: int, steps: list[tuple[bool, int, int]]) -> None:
    data = text.encode()
    ours = csv_source._Text(_chunks(data, size), "utf-8")
    theirs = io.TextIOWrapper(io.BytesIO(data), encoding="utf-8", newline="")
    for by_line, n, _ in steps:
        if by_line:
            assert ours.readline(n) == theirs.readline(n)
        else:
            assert ours.read(n) == theirs.read(n)


@FUZZ
@given(CSV_TEXT, CHUNK, STEPS)
def test_text_and_bytes_read_in_turns_give_the_file_once_in_order(
        text: str, size: int, steps: list[tuple[bool, int, int]]) -> None:
    """Reading raw bytes after text encodes the text decoded but not read back first, and
    bytes given back are decoded before what follows: in any order, nothing is lost."""
    data = text.encode()
    ours = csv_source._Text(_chunks(data, size), "utf-8")
    got = b""
    for as_bytes, n, _ in steps:
        if as_bytes:
            piece = ours.read_bytes(n)
            # What follows the last line break is given back, as _raw_block gives it back: a
            # block ends at a line break, never inside a character.
            kept = piece[: max(piece.rfind(b"\n"), piece.rfind(b"\r")) + 1]
            ours.unread_bytes(piece[len(kept) :])
            got += kept
        else:
            got += ours.read(n).encode()
    assert got + ours.read(len(text) + 1).encode() == data


@FUZZ
@given(CSV_TEXT, st.integers(1, 80))
def test_a_block_ends_after_a_line_break_with_its_quotes_even_in_text_and_in_bytes(
        text: str, size: int) -> None:
    """_records_end: where the last line break after an even number of quotes ends, or 0; the
    same place whether the block is cut as text or as its bytes (UTF-8)."""
    chunk = text[:size]
    cut = csv_source._records_end(chunk, csv_source._TEXT_MARKS)
    assert cut == len(chunk[:cut].encode()) if chunk.isascii() else True
    assert csv_source._records_end(chunk.encode(), csv_source._BYTE_MARKS) \
        == len(chunk[:cut].encode())
    breaks = [m.end() for m in csv_source._LINE_END.finditer(chunk)
              if not (m.group() == "\r" and m.end() == len(chunk))
              and chunk[: m.end()].count('"') % 2 == 0]
    assert cut == (breaks[-1] if breaks else 0)


@FUZZ
@given(CSV_TEXT, st.sampled_from([1, 3, 8, 64, 1 << 16]))
def test_stepped_blocks_read_what_record_batches_read(text: str, block: int) -> None:
    """The operations' reader (stepped_blocks, in this process) gives the records, the
    malformed ones with their lines, and nothing else, that the imports' reader gives."""
    data = text.encode()
    original = csv_source.BLOCK_CHARS
    csv_source.BLOCK_CHARS = block
    try:
        expected = _split(_read(data, 7, SMALL))
        parsed = list(csv_source.stepped_blocks(
            ByteStream(_chunks(data, 7)), lambda: True, SMALL, None,
            lambda header, dialect: csv_source.InProcess(
                csv_source.BlockJob(dialect.delimiter, len(header), list))))
    except FileRejected as exc:
        with pytest.raises(FileRejected, match=re.escape(str(exc))):
            _read(data, 7, SMALL)
        return
    finally:
        csv_source.BLOCK_CHARS = original
    rows = [row for p in parsed for row in p.value]
    malformed = [(r.line, r.fields, r.rejected) for p in parsed for r in p.malformed]
    assert (rows, malformed) == expected[1:]
    assert sum(p.records for p in parsed) == expected[0]


def _split(found: list[Record]) -> tuple[int, list[list[str]], list[tuple[int, list[str], str]]]:
    """The records after the header: how many, those with the header's field count, the rest."""
    if not found:
        return 0, [], []
    columns = len(found[0].fields)
    rest = found[1:]
    return (len(rest), [r.fields for r in rest if not r.rejected and len(r.fields) == columns],
            [(r.line, r.fields, r.rejected) for r in rest
             if r.rejected or len(r.fields) != columns])


@FUZZ
@given(CSV_TEXT, CHUNK, STEPS)
def test_text_put_back_is_read_again_and_nothing_is_lost(
        text: str, size: int, steps: list[tuple[bool, int, int]]) -> None:
    ours = csv_source._Text(_chunks(text.encode(), size), "utf-8")
    kept = []
    for by_line, n, put_back in steps:
        got = ours.readline(n) if by_line else ours.read(n)
        cut = len(got) - min(put_back, len(got))
        ours.unread(got[cut:])
        kept.append(got[:cut])
    assert "".join(kept) + ours.read(len(text) + 1) == text


@FUZZ
@given(st.text())
def test_the_sniffer_always_names_a_candidate(line: str) -> None:
    assert sniff_delimiter(line) in DELIMITERS


# --- header and row parsing ---------------------------------------------------------------------

COLUMN_NAME = st.one_of(st.text(max_size=20), st.sampled_from([*KNOWN, *ALIASES]))


@FUZZ
@given(st.lists(COLUMN_NAME, max_size=70))
def test_any_header_gives_names_or_a_file_rejection(raw: list[str]) -> None:
    try:
        header = parse_header(raw)
    except FileRejected as exc:
        assert len(str(exc)) < 2000
        return
    assert len(header.names) == len(raw) and "title" in header.names


_ZONES: list[tzinfo] = [UTC, timezone(timedelta(hours=14)),
                        timezone(-timedelta(hours=14, minutes=30))]
TEXT = st.text(max_size=30)
ZONED = st.sampled_from(_ZONES)
DATE = st.one_of(  # dates near the ends of the calendar too, where a zone can push them off
    TEXT, st.from_regex(r"\d{1,8}([-/.]\d{1,4}){0,2}", fullmatch=True),
    st.datetimes(timezones=ZONED).map(datetime.isoformat),
    st.datetimes(max_value=datetime(1, 1, 2), timezones=ZONED).map(datetime.isoformat),
    st.datetimes(min_value=datetime(9999, 12, 30), timezones=ZONED).map(datetime.isoformat),
)
NUMBER = st.one_of(TEXT, st.floats().map(str), st.integers().map(str))
ROW = st.fixed_dictionaries({
    "id": TEXT, "title": TEXT, "genre": TEXT, "original_language": TEXT, "overview": TEXT,
    "release_date": DATE, "vote_average": NUMBER, "vote_count": NUMBER, "popularity": NUMBER,
})


@FUZZ
@given(ROW)
def test_any_row_gives_a_movie_message_or_a_row_rejection(row: dict[str, str]) -> None:
    header = parse_header(list(row))
    try:
        movie = movie_message(Movie(**parse_row(header, list(row.values()))))
    except RowRejected as exc:
        assert len(str(exc)) < 500
        return
    assert movie.title and movie.id


# --- linear time --------------------------------------------------------------------------------

def _best_seconds(work: Callable[[], object], repeat: int = 5) -> float:
    """The least CPU time of a few runs: the least disturbed by other processes."""
    best = float("inf")
    gc.disable()  # a collection landing in one run would say nothing about the code
    try:
        for _ in range(repeat):
            started = time.process_time()
            work()
            best = min(best, time.process_time() - started)
    finally:
        gc.enable()
    return best


def _assert_linear(work_for: Callable[[int], Callable[[], object]], n: int) -> None:
    """Doubling the input must not quadruple the time: under 3x (linear gives about 2x). Up to
    three tries, so that a busy machine cannot fail it; quadratic work gives 4x every time."""
    works = work_for(n), work_for(2 * n)
    ratios = []
    for _ in range(3):
        small, large = _best_seconds(works[0]), _best_seconds(works[1])
        ratios.append(round(large / small, 2))
        if large < 3 * small:
            return
    raise AssertionError(f"n={n}: doubling the input multiplied the time by {ratios}")


def _reading(data: bytes, limits: CsvLimits = ROOMY) -> Callable[[], object]:
    return lambda: _read(data, 1 << 16, limits)


def test_reading_a_long_header_line_is_linear() -> None:
    limits = CsvLimits(max_row_chars=1 << 20, max_header_chars=1 << 20, max_columns=1 << 20)
    _assert_linear(lambda n: _reading(b"title" + b",c" * (n // 2) + b"\n", limits), 200_000)


def test_reading_a_long_data_line_of_tiny_fields_is_linear() -> None:
    _assert_linear(lambda n: _reading(b"id,title\n" + b"ab," * (n // 3) + b"\n"), 200_000)


def test_reading_past_an_over_long_data_line_is_linear() -> None:
    limits = CsvLimits(max_row_chars=1 << 16, max_header_chars=1 << 10, max_columns=8)
    _assert_linear(lambda n: _reading(b"id,title\n" + b"a," * (n // 2) + b"\n1,A\n", limits),
                   2_000_000)


def test_sniffing_a_long_line_is_linear() -> None:
    _assert_linear(lambda n: lambda: sniff_delimiter('"a;b",c|d\t' * (n // 10)), 300_000)


def test_parsing_a_header_of_many_columns_is_linear() -> None:
    def parsing(n: int) -> Callable[[], object]:
        raw = [f"c{i}" for i in range(n)] + ["name"]
        return lambda: _rejected_or_none(FileRejected, parse_header, raw)
    _assert_linear(parsing, 10_000)


def test_parsing_a_row_of_many_fields_is_linear() -> None:
    def parsing(n: int) -> Callable[[], object]:
        header = Header(names=["title", *(f"c{i}" for i in range(n))], extra=[])
        values = ["Heat", *("x" for _ in range(n))]
        return lambda: parse_row(header, values)
    _assert_linear(parsing, 20_000)


def _rejected_or_none(rejection: type[Exception], parse: Callable[[list[str]], object],
                      raw: list[str]) -> object:
    try:
        return parse(raw)
    except rejection:
        return None
