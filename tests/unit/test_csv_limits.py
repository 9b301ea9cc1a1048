"""The bounds on a CSV's shape (services/worker/csv_source.py CsvLimits, issue 10 items 2 and
6): each is checked before the work it guards, and a hostile file costs little."""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Iterator

import pytest

from services.worker.csv_source import (
    HEAD_CHARS,
    MAX_RAW,
    ByteStream,
    CsvLimits,
    Record,
    raw_sample,
    records,
    sniff_delimiter,
)
from services.worker.movie_rows import FileRejected, RowRejected, parse_header, parse_row

LIMITS = CsvLimits(max_row_chars=100, max_header_chars=60, max_columns=8)
HEADER = b"id,title\n"


def _chunks(data: bytes, size: int = 7) -> Iterator[bytes]:
    return (data[i : i + size] for i in range(0, len(data), size))


def _read(data: bytes, limits: CsvLimits = LIMITS, size: int = 7) -> list[Record]:
    return list(records(ByteStream(_chunks(data, size)), lambda: True, limits))


def _read_rejected(data: bytes, limits: CsvLimits = LIMITS) -> str:
    with pytest.raises(FileRejected) as info:
        _read(data, limits)
    return str(info.value)


# --- rows ---------------------------------------------------------------------------------------

def test_a_row_at_the_bound_is_read_and_one_character_more_is_rejected() -> None:
    fits = b"1," + b"x" * (LIMITS.max_row_chars - 3) + b"\n"  # the line break counts
    assert len(fits) == LIMITS.max_row_chars
    assert _read(HEADER + fits)[1] == (2, ["1", "x" * (LIMITS.max_row_chars - 3)], "", "")
    over = _read(HEADER + b"1" + fits)[1]
    assert (over.line, over.fields) == (2, [])
    assert "longer than 100 characters" in over.rejected and "CSV_MAX_ROW_CHARS" in over.rejected


def test_an_over_long_row_is_rejected_with_its_start_and_reading_goes_on() -> None:
    data = HEADER + b"1,Heat\n" + b"ab," * 5000 + b"ab\n" + b"2,Ronin\n\n3,Alien\n"
    found = _read(data)
    assert [(r.line, r.fields, bool(r.rejected)) for r in found] == [
        (1, ["id", "title"], False), (2, ["1", "Heat"], False), (3, [], True),
        (4, ["2", "Ronin"], False), (6, ["3", "Alien"], False)]
    assert found[2].head == ("ab," * 5000)[: LIMITS.max_row_chars + 1]


def test_the_head_of_a_rejected_row_is_bounded() -> None:
    limits = CsvLimits(max_row_chars=10 * HEAD_CHARS, max_header_chars=60, max_columns=8)
    (_, rejected) = _read(HEADER + b"x" * (20 * HEAD_CHARS) + b"\n", limits)
    assert rejected.head == "x" * HEAD_CHARS


def test_a_quoted_field_with_line_breaks_counts_whole_and_reading_resumes_after_it() -> None:
    # 11 lines, the last one passing the bound; its quotes are balanced at that line's end.
    quoted = b'1,"' + b"x\n" * 10 + b"y" * 100 + b'"\n'
    found = _read(HEADER + quoted + b"2,Up\n")
    assert [(r.line, r.fields, bool(r.rejected)) for r in found] == [
        (1, ["id", "title"], False), (2, [], True), (13, ["2", "Up"], False)]


@pytest.mark.parametrize("row", [b'2,"never closed' + b"x" * 500 + b"\n",
                                 b'2,"never closed' + b"x\n" * 500])
def test_an_over_long_row_that_ends_inside_quotes_fails_the_file_naming_its_line(
        row: bytes) -> None:
    # Where the next row starts cannot be told: resuming would read the quote's contents as rows.
    reason = _read_rejected(HEADER + b"1,Heat\n" + row + b"3,Up\n")
    assert reason.startswith("line 3: ") and "unclosed quote" in reason


def test_a_crlf_cut_at_the_bound_ends_one_line_not_two() -> None:
    # The bound falls between the \r and the \n: the \n must not count as a line of its own.
    long_line = b"x" * LIMITS.max_row_chars + b"\r\n"
    found = _read(HEADER.replace(b"\n", b"\r\n") + long_line + b"1,Up\r\n", size=4096)
    assert [(r.line, bool(r.rejected)) for r in found] == [(1, False), (2, True), (3, False)]
    assert found[2].fields == ["1", "Up"]


@pytest.mark.parametrize("newline", [b"\n", b"\r", b"\r\n"])
def test_over_long_rows_with_any_line_break(newline: bytes) -> None:
    data = newline.join([b"id,title", b"1,A", b"y" * 333, b"2,B", b"z" * 1000, b"3,C", b""])
    found = _read(data)
    assert [(r.line, r.fields) for r in found] == [
        (1, ["id", "title"]), (2, ["1", "A"]), (3, []), (4, ["2", "B"]), (5, []), (6, ["3", "C"])]


def test_an_over_long_last_row_without_a_line_break_is_rejected() -> None:
    found = _read(HEADER + b"1,Up\n" + b"q" * 1000)
    assert [(r.line, bool(r.rejected)) for r in found] == [(1, False), (2, False), (3, True)]


def test_a_long_line_is_never_held_whole() -> None:
    # 4 MB of tiny fields on one line, a 64 Ki-character bound: what is held stays near it.
    limits = CsvLimits(max_row_chars=64 << 10, max_header_chars=1 << 10, max_columns=8)
    data = HEADER + b"ab," * ((4 << 20) // 3) + b"\n1,Up\n"
    tracemalloc.start()
    try:
        found = _read(data, limits, size=1 << 16)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [bool(r.rejected) for r in found] == [False, True, False]
    assert peak < 1 << 20, peak  # the line is 4 MiB; its fields would be some 80 MB


@pytest.mark.parametrize("field", ["max_row_chars", "max_header_chars", "max_columns"])
def test_a_bound_below_one_is_refused_naming_its_setting(field: str) -> None:
    with pytest.raises(ValueError, match=f"CSV_{field.upper()} must be at least 1, got 0"):
        CsvLimits(**{**vars(LIMITS), field: 0})


# --- header -------------------------------------------------------------------------------------

def test_an_over_long_header_fails_the_file_at_once_naming_the_bound() -> None:
    stream = ByteStream(_chunks(b"title," * 1_000_000 + b"\n1\n", 1 << 16))
    with pytest.raises(FileRejected) as info:
        list(records(stream, lambda: True, LIMITS))
    reason = str(info.value)
    assert "header (line 1) is longer than 60 characters" in reason
    assert "CSV_MAX_HEADER_CHARS" in reason
    assert stream.consumed < 1 << 20  # of 6 MB: it stopped at the bound, not at the line's end


def test_blank_lines_before_the_header_are_counted_in_its_line() -> None:
    reason = _read_rejected(b"\n\n" + b"t" * 100 + b"\n")
    assert "header (line 3)" in reason


@pytest.mark.parametrize("columns", [8, 9])
def test_the_header_may_have_up_to_max_columns(columns: int) -> None:
    header = ",".join(["title", *[f"c{i}" for i in range(columns - 1)]]).encode() + b"\n"
    if columns <= LIMITS.max_columns:
        assert len(_read(header)[0].fields) == columns
    else:
        reason = _read_rejected(header)
        assert "the header has 9 columns, more than the limit of 8 (CSV_MAX_COLUMNS)" in reason


def test_the_column_count_is_checked_before_the_names_are_mapped() -> None:
    limits = CsvLimits(max_row_chars=1 << 20, max_header_chars=1 << 20, max_columns=256)
    header = b",".join(b"c%d" % i for i in range(100_000)) + b"\n"
    started = time.process_time()
    with pytest.raises(FileRejected, match="100,000 columns"):
        _read(header, limits, size=1 << 16)
    assert time.process_time() - started < 1.0


# --- data rows: fields ----------------------------------------------------------------------------

def test_a_row_of_a_million_fields_is_rejected_by_its_count_first() -> None:
    header = parse_header(["id", "title"])
    started = time.process_time()
    with pytest.raises(RowRejected, match="row has 1000000 fields but the header has 2"):
        parse_row(header, ["x"] * 1_000_000)
    assert time.process_time() - started < 0.5


def test_the_raw_sample_of_a_rejected_row_is_written_from_a_bounded_prefix() -> None:
    record = Record(7, ["ab"] * 1_000_000)
    started = time.process_time()
    raw = raw_sample(record)
    assert time.process_time() - started < 0.05  # the whole row as CSV takes some 0.3 s
    assert raw == ",".join(["ab"] * 1000)[:MAX_RAW]


def test_the_raw_sample_cuts_a_huge_field() -> None:
    assert raw_sample(Record(7, ["1", "x" * 10_000_000, "y"])) == ("1," + "x" * MAX_RAW)[:MAX_RAW]


def test_the_raw_sample_of_a_row_skipped_for_its_length_is_its_head() -> None:
    record = Record(7, [], rejected="too long", head="1,2,3" * 1000)
    assert raw_sample(record) == ("1,2,3" * 1000)[:MAX_RAW]


# --- delimiter ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("line", "delimiter"), [
    ("id,title,genre", ","), ("id;title;genre", ";"), ("id\ttitle\tgenre", "\t"),
    ("id|title|genre", "|"), ("title", ","), ("", ","),
    ("id;title,genre", ","),  # a tie goes to the comma
    ('"a,b,c";"d,e";f', ";"),  # delimiters inside quotes do not count
    ('"Movie Title";"Released";"Rating"', ";"),
])
def test_the_delimiter_is_the_most_frequent_candidate_outside_quotes(line: str,
                                                                    delimiter: str) -> None:
    assert sniff_delimiter(line) == delimiter
