"""Unit tests for services/worker/csv_source.py: chunked bytes to CSV records, encodings."""

from __future__ import annotations

import codecs
import random
from collections.abc import Callable, Iterator

import pytest

from services.worker import csv_source
from services.worker.csv_source import (
    ByteStream,
    CsvLimits,
    choose_encoding,
    is_utf8,
    records,
)
from services.worker.movie_rows import FileRejected

LIMITS = CsvLimits(max_row_chars=1 << 20, max_header_chars=64 << 10, max_columns=256)


def _chunks(data: bytes, sizes: list[int]) -> Iterator[bytes]:
    """Cuts data into chunks of the given sizes, repeating the list until the data runs out."""
    pos, i = 0, 0
    while pos < len(data):
        size = sizes[i % len(sizes)]
        yield data[pos : pos + size]
        pos, i = pos + size, i + 1


def _records(data: bytes, sizes: list[int] | None = None) -> list[tuple[int, list[str]]]:
    found = records(ByteStream(_chunks(data, sizes or [3])),
                    lambda: is_utf8(_chunks(data, [4096])), LIMITS)
    return [(r.line, r.fields) for r in found]


def _valid_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _says(answer: bool) -> Callable[[], bool]:
    return lambda: answer


# --- ByteStream ---------------------------------------------------------------------------------

def test_bytestream_gives_the_rest_counting_each_chunk_as_it_is_given() -> None:
    stream = ByteStream(iter([b"ab", b"", b"cde", b"f"]))
    rest = stream.rest()
    assert stream.consumed == 0
    assert next(rest) == b"ab"
    assert stream.consumed == 2
    assert b"".join(rest) == b"cdef"
    assert stream.consumed == 6


def test_peek_sample_does_not_consume() -> None:
    stream = ByteStream(iter([b"ab", b"cde", b"f"]))
    assert stream.peek_sample(4) == b"abcd"
    assert stream.consumed == 0
    assert b"".join(stream.rest()) == b"abcdef"
    assert stream.consumed == 6


def test_peek_sample_of_a_short_stream_returns_everything() -> None:
    stream = ByteStream(iter([b"ab", b"c"]))
    assert stream.peek_sample(100) == b"abc"
    assert b"".join(stream.rest()) == b"abc"


def test_consumed_after_records_is_the_file_size() -> None:
    data = "id,title\n1,Amélie\n2,Heat\n".encode()
    stream = ByteStream(_chunks(data, [5]))
    assert len(list(records(stream, _says(True), LIMITS))) == 3
    assert stream.consumed == len(data)


# --- records ------------------------------------------------------------------------------------

@pytest.mark.parametrize("sizes", [[1], [2], [3], [7], [1, 4, 2], [1 << 16]])
def test_records_survive_any_chunking(sizes: list[int]) -> None:
    # 'é' (2 bytes), '\u2013' (3 bytes) and '😀' (4 bytes) get cut by the small chunk sizes, and the
    # quoted field with a comma and a newline spans many chunks.
    data = ('id,title,overview\r\n'
            '1,Amélie,"Paris, Montmartre\r\nand a gnome \u2013 😀"\r\n'
            '2,Heat,"A heist"\r\n').encode()
    assert _records(data, sizes=sizes) == [
        (1, ["id", "title", "overview"]),
        (2, ["1", "Amélie", "Paris, Montmartre\r\nand a gnome \u2013 😀"]),
        (4, ["2", "Heat", "A heist"]),
    ]


def test_records_cut_inside_a_multibyte_char_at_the_sample_boundary() -> None:
    # The sample read for detection ends in the middle of 'é'; decoding must still be exact.
    prefix = b"title\n" + b"x" * (256 * 1024 - 10) + b"\n"
    data = prefix + "Amélie\n".encode()
    assert data[256 * 1024 - 1 : 256 * 1024 + 1] == "é".encode()
    rows = _records(data, sizes=[4096])
    assert rows[-1] == (3, ["Amélie"])


def test_utf8_bom_is_removed_from_the_first_field() -> None:
    rows = _records(codecs.BOM_UTF8 + b"id,title\n1,Heat\n", sizes=[1])
    assert rows[0] == (1, ["id", "title"])


def test_blank_lines_are_skipped_but_counted() -> None:
    data = b"id,title\r\n\r\n1,Heat\r\n   \r\n,\r\n\r\n2,Ronin\r\n\r\n"
    assert _records(data) == [(1, ["id", "title"]), (3, ["1", "Heat"]), (7, ["2", "Ronin"])]


def test_line_numbers_are_where_each_record_starts() -> None:
    data = (b'id,title,overview\n'
            b'1,A,"one\ntwo\nthree"\n'
            b'2,"B, the sequel","x"\n'
            b'3,C,"""quoted"" and\nsplit"\n'
            b'4,D,\n')
    assert _records(data) == [
        (1, ["id", "title", "overview"]),
        (2, ["1", "A", "one\ntwo\nthree"]),
        (5, ["2", "B, the sequel", "x"]),
        (6, ["3", "C", '"quoted" and\nsplit']),
        (8, ["4", "D", ""]),
    ]


def test_lone_cr_line_endings() -> None:
    assert _records(b"id,title\r1,Heat\r2,Ronin\r") == [
        (1, ["id", "title"]), (2, ["1", "Heat"]), (3, ["2", "Ronin"])]


@pytest.mark.parametrize("delimiter", [";", "\t", "|"])
def test_other_delimiters_are_detected_from_the_header(delimiter: str) -> None:
    data = delimiter.join(["id", "title", "genre"]).encode() + b"\n"
    data += delimiter.join(["1", '"Heat, 1995"', "Crime,Drama"]).encode() + b"\n"
    assert _records(data) == [(1, ["id", "title", "genre"]),
                              (2, ["1", "Heat, 1995", "Crime,Drama"])]


def test_comma_header_stays_comma_even_with_semicolons_in_rows() -> None:
    data = b"id,title\n1,A; B\n"
    assert _records(data) == [(1, ["id", "title"]), (2, ["1", "A; B"])]


def test_semicolon_header_after_blank_lines_is_detected() -> None:
    assert _records(b"\r\n\r\nid;title\r\n1;Heat\r\n") == [(3, ["id", "title"]),
                                                           (4, ["1", "Heat"])]


def test_empty_file_is_rejected() -> None:
    with pytest.raises(FileRejected, match="no rows"):
        _records(b"")


def test_file_of_blank_lines_has_no_records() -> None:
    assert _records(b"\n\r\n\n") == []


def test_unclosed_quote_beyond_the_row_bound_names_the_line() -> None:
    data = (b'id,title\n1,Heat\n\n2,"Ronin\n3,Alien\n' + b"x" * LIMITS.max_row_chars
            + b"\n4,Up\n")
    stream = ByteStream(_chunks(data, [65536]))
    it = records(stream, _says(True), LIMITS)
    assert next(it)[:2] == (1, ["id", "title"])
    assert next(it)[:2] == (2, ["1", "Heat"])
    with pytest.raises(FileRejected, match=r"line 4\b.*unclosed quote"):
        next(it)


def test_non_utf8_bytes_after_the_sample_are_seen_by_the_whole_file_check() -> None:
    data = b"id,title\n" + b"1,Heat\n" * 40_000 + "2,Amélie\n".encode("cp1252")
    assert len(data) > 256 * 1024
    assert _records(data, sizes=[65536])[-1] == (40_002, ["2", "Amélie"])


def test_a_decoding_error_past_the_encoding_choice_is_rejected_with_a_position() -> None:
    data = b"id,title\n" + b"1,Heat\n" * 40_000 + b"2,\xff\xfe\n"
    stream = ByteStream(_chunks(data, [65536]))
    with pytest.raises(FileRejected, match="not valid utf-8 near byte"):
        list(records(stream, _says(True), LIMITS))  # as if the file had changed after the check


def test_the_whole_file_is_read_only_when_the_first_bytes_leave_the_encoding_open() -> None:
    asked = []

    def whole_file() -> bool:
        asked.append(True)
        return True

    choose_encoding(codecs.BOM_UTF8 + b"id,title\n", whole_file)
    choose_encoding("id,title\n1,Amélie\n".encode("cp1252"), whole_file)
    assert asked == []
    assert choose_encoding("id,title\n1,Amélie\n".encode(), whole_file) == "utf-8"
    assert asked == [True]


def test_a_sample_cut_inside_a_character_still_counts_as_utf8() -> None:
    data = "id,title\n1,Amélie\n".encode()
    cut = data[: data.index("é".encode()) + 1]
    assert choose_encoding(cut, _says(True)) == "utf-8"


@pytest.mark.parametrize(("chunks", "valid"), [
    ([b"ok"], True), (["é東".encode()[:1], "é東".encode()[1:3], "é東".encode()[3:]], True),
    ([b"caf\xe9\n"], False), ([b"ok\n", b"\xff"], False), ([b"cut \xe6\x9d"], False),
])
def test_is_utf8(chunks: list[bytes], valid: bool) -> None:
    assert is_utf8(chunks) is valid


# --- encodings ----------------------------------------------------------------------------------

TEXT = "id,title,original_language\n1,Amélie,fr\n2,Spirited Away,ja\n3,Your Name.,ja\n"
EXPECTED = [(1, ["id", "title", "original_language"]), (2, ["1", "Amélie", "fr"]),
            (3, ["2", "Spirited Away", "ja"]), (4, ["3", "Your Name.", "ja"])]


@pytest.mark.parametrize(("data", "encoding"), [
    (codecs.BOM_UTF8 + TEXT.encode(), "utf-8-sig"),
    (codecs.BOM_UTF16_LE + TEXT.encode("utf-16-le"), "utf-16"),
    (codecs.BOM_UTF16_BE + TEXT.encode("utf-16-be"), "utf-16"),
    (codecs.BOM_UTF32_LE + TEXT.encode("utf-32-le"), "utf-32"),
    (TEXT.encode("utf-16-le"), "utf-16-le"),
    (TEXT.encode("utf-16-be"), "utf-16-be"),
    (TEXT.encode(), "utf-8"),
])
def test_encoding_from_bom_or_byte_pattern(data: bytes, encoding: str) -> None:
    assert choose_encoding(data, _says(_valid_utf8(data))) == encoding
    assert _records(data, sizes=[1, 2, 5]) == EXPECTED


@pytest.mark.parametrize("encoding", ["cp1252", "latin-1"])
def test_western_single_byte_text_is_decoded_correctly(encoding: str) -> None:
    text = ("id,title,original_language\n1,Amélie,fr\n2,Le Fabuleux Destin,fr\n"
            "3,Café au lait crème brûlée,fr\n")
    data = text.encode(encoding)
    assert not _valid_utf8(data)
    rows = _records(data, sizes=[2])
    assert rows[1] == (2, ["1", "Amélie", "fr"])
    assert rows[3] == (4, ["3", "Café au lait crème brûlée", "fr"])


def test_small_cp1252_files_are_never_mojibake() -> None:
    texts = ["title\nAmélie\n", "id,title,original_language\n1,Amélie,fr\n",
             "title\nAmélie\nLéon\nDéjà vu\n", "title\nSeñor\n"]
    decoded = []
    for text in texts:
        data = text.encode("cp1252")
        decoded.append([f for _, row in _records(data) for f in row])
    assert decoded == [[f for line in t.splitlines() for f in line.split(",")] for t in texts]


def test_cp1252_after_a_long_ascii_start_is_decoded() -> None:
    data = b"id,title\n" + b"".join(b"%d,Movie %d\n" % (i, i) for i in range(30_000))
    assert len(data) > 256 * 1024
    data += "99999,Amélie\n".encode("cp1252")
    rows = _records(data, sizes=[65536])
    assert rows[-1] == (30_002, ["99999", "Amélie"])


def test_random_binary_with_nul_bytes_is_rejected() -> None:
    rng = random.Random(1)
    garbage = bytes(rng.randrange(256) for _ in range(4096))
    assert b"\x00" in garbage
    with pytest.raises(FileRejected, match="binary data"):
        choose_encoding(garbage, _says(False))
    with pytest.raises(FileRejected, match="binary data"):
        _records(garbage)


def test_png_is_rejected_as_binary() -> None:
    png = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x01\x00\x00\x00\x01\x00\x08\x06\x00\x00"
           b"\x00\x5c\x72\xa8\x66" + random.Random(2).randbytes(500))
    with pytest.raises(FileRejected, match="binary data"):
        choose_encoding(png, _says(False))


def test_control_bytes_without_nuls_are_rejected_as_binary() -> None:
    data = bytes(range(1, 32)) * 20 + b"id,title\n"
    with pytest.raises(FileRejected, match="binary data"):
        choose_encoding(data, _says(False))


def test_a_few_control_bytes_in_text_are_tolerated() -> None:
    data = b"id,title\n" + b"1,Heat\x0c\n" * 3 + b"2,Ronin\n" * 100
    assert choose_encoding(data, _says(True)) == "utf-8"


# Quoted CRLFs and commas, a lone CR, a blank line, a vertical tab (which str.splitlines would
# split at), a row over the bound, a short row, and a last line with no line break.
MIXED = ('id,title,note\r\n1,Heat,"a\r\nb"\n\n2,"Ronin, the",x\r3,"Up ""q""",\v\n'
         '4,' + 'y' * 40 + ',z\n5,"two\nlines",ok\n 6 ,short\n\n7,"' + 'w' * 20
         + '\n",end\n8,last').encode()


@pytest.mark.parametrize("block", [1, 3, 16, 64, 1 << 16])
def test_blocks_of_any_size_read_what_line_by_line_reads(monkeypatch: pytest.MonkeyPatch,
                                                        block: int) -> None:
    """A block as short as a character leaves every record to the line reader, which bounds it
    as it reads; longer blocks parse whole records at once: the same records either way, with
    the same lines, and a record cut off by a block's end is read again whole."""
    monkeypatch.setattr(csv_source, "BLOCK_CHARS", block)
    limits = CsvLimits(max_row_chars=40, max_header_chars=100, max_columns=8)
    found = [(r.line, r.fields, bool(r.rejected))
             for r in records(ByteStream(_chunks(MIXED, [5])), _says(True), limits)]
    assert found == [
        (1, ["id", "title", "note"], False), (2, ["1", "Heat", "a\r\nb"], False),
        (5, ["2", "Ronin, the", "x"], False), (6, ["3", 'Up "q"', "\v"], False),
        (7, [], True), (8, ["5", "two\nlines", "ok"], False), (10, [" 6 ", "short"], False),
        (12, ["7", "w" * 20 + "\n", "end"], False), (14, ["8", "last"], False)]
