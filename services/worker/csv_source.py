"""Bytes of an uploaded file to CSV records, incrementally: encoding, delimiter, line numbers.

A hostile file costs no more than a fair one: every record is bounded (CsvLimits) while it is
read, before the csv module or anything after it works on it, and a record over its bound is
skipped in pieces, never held whole.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

import charset_normalizer

from services.worker.movie_rows import FileRejected

if TYPE_CHECKING:
    from services.common.settings import Settings

SAMPLE_BYTES = 256 * 1024
HEAD_CHARS = 2000  # what a record skipped for its length keeps, to show which row it was
MAX_RAW = 2000  # the characters of a rejected row that its report shows
DELIMITERS = ",;\t|"  # the sniffer's candidates; a comma wins ties
_SKIP_CHARS = 1 << 16  # the piece size in which an over-long record is read past
_QUOTED = re.compile(r'"[^"]*"')
# Blank lines are skipped before csv.reader sees them: a file of nothing else is read at a
# fraction of a microsecond per line, not the microsecond and more that a record costs.
_BARE_LINE_BREAKS = frozenset({"\n", "\r\n", "\r"})
_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
         (codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"),
         (codecs.BOM_UTF16_BE, "utf-16"))
_CONTROL = set(range(0x20)) - {0x09, 0x0A, 0x0D}

# A field cannot outgrow its record, which CsvLines bounds; the csv module's own field limit
# (128 KiB) would only refuse long fields of records within their bound.
csv.field_size_limit(sys.maxsize)


@dataclass(frozen=True)
class CsvLimits:
    """Bounds on a file's shape (the CSV_MAX_* settings). A record's length is counted in
    characters of decoded text, line breaks inside quotes included."""

    max_row_chars: int
    max_header_chars: int
    max_columns: int

    def __post_init__(self) -> None:
        # A bound below 1 would read every file as empty: refuse it when the worker starts.
        for name, value in vars(self).items():
            if value < 1:
                raise ValueError(f"setting CSV_{name.upper()} must be at least 1, got {value}")

    @classmethod
    def from_settings(cls, settings: Settings) -> CsvLimits:
        return cls(max_row_chars=settings.csv_max_row_chars,
                   max_header_chars=settings.csv_max_header_chars,
                   max_columns=settings.csv_max_columns)


class Record(NamedTuple):
    """A non-blank record: the line it starts on and its fields. A record over its bound has no
    fields: `rejected` says why, and `head` holds its first characters."""

    line: int
    fields: list[str]
    rejected: str = ""
    head: str = ""


class ByteStream(io.RawIOBase):
    """A file-like view of an iterator of byte chunks that counts what was consumed."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buffer = b""
        self._pos = 0
        self.consumed = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        while self._pos >= len(self._buffer):
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._buffer, self._pos = chunk, 0
        n = min(len(b), len(self._buffer) - self._pos)
        b[:n] = memoryview(self._buffer)[self._pos : self._pos + n]
        self._pos += n
        self.consumed += n
        return n

    def peek_sample(self, size: int = SAMPLE_BYTES) -> bytes:
        """The first bytes of the file, without consuming them."""
        self._buffer = self._buffer[self._pos :]
        self._pos = 0
        while len(self._buffer) < size:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._buffer += chunk
        return self._buffer[:size]


def _utf16_without_bom(sample: bytes) -> str | None:
    even, odd = sample[0::2], sample[1::2]
    if len(sample) >= 64:
        if odd.count(0) > 0.4 * len(odd) and even.count(0) < 0.05 * len(even):
            return "utf-16-le"
        if even.count(0) > 0.4 * len(even) and odd.count(0) < 0.05 * len(odd):
            return "utf-16-be"
    return None


def is_utf8(chunks: Iterable[bytes]) -> bool:
    """Whether the bytes, in order, are all valid UTF-8."""
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    try:
        for chunk in chunks:
            decoder.decode(chunk)
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


def _starts_as_utf8(sample: bytes) -> bool:
    try:  # not final: the sample may end inside a character
        codecs.getincrementaldecoder("utf-8")("strict").decode(sample)
    except UnicodeDecodeError:
        return False
    return True


def choose_encoding(sample: bytes, whole_file_is_utf8: Callable[[], bool]) -> str:
    """The file's text encoding, from its first bytes and, when they leave it open, whether all
    of the file is valid UTF-8 (a pass over the whole file, so asked only then)."""
    for bom, name in _BOMS:
        if sample.startswith(bom):
            return name
    if b"\x00" in sample:
        guess = _utf16_without_bom(sample)
        if guess:
            return guess
        raise FileRejected("not a CSV text file: it contains binary data (NUL bytes)")
    if sum(1 for b in sample[:65536] if b in _CONTROL) > max(8, len(sample[:65536]) // 100):
        raise FileRejected("not a CSV text file: it contains binary data (control bytes)")
    if _starts_as_utf8(sample) and whole_file_is_utf8():
        return "utf-8"
    # Not UTF-8 somewhere in the file. Western exports are nearly always Windows-1252 (a
    # superset of Latin-1's printable range); detectors misjudge short samples, so prefer it
    # whenever it decodes, and ask the detector only otherwise (e.g. Shift-JIS, GBK).
    try:
        sample.decode("cp1252")
        return "cp1252"
    except UnicodeDecodeError:
        pass
    best = charset_normalizer.from_bytes(sample).best()
    if best is None or best.encoding in ("ascii", "utf_8"):
        raise FileRejected("the text is not UTF-8 and its encoding could not be recognised: "
                           "save the file as UTF-8 and upload it again")
    return best.encoding


def sniff_delimiter(header_line: str) -> str:
    """The header's delimiter: the candidate it holds most often outside quotes, else a comma.
    One pass per candidate, where csv.Sniffer's regexes take quadratic time on a long line."""
    unquoted = _QUOTED.sub("", header_line)
    return max(DELIMITERS, key=unquoted.count)


def _first_line(sample: bytes, encoding: str) -> str:
    """The first non-blank line of the sample: the header, or as much of it as the sample holds."""
    text = sample.decode(encoding, errors="ignore").lstrip("\ufeff")
    return next((line for line in text.splitlines() if line.strip()), "")


class _RecordTooLong(Exception):
    """Raised by CsvLines, through csv.reader, when a record outgrows its bound."""


class CsvLines:
    """The physical lines of the text, each with its line break, as csv.reader asks for them.

    A record (the lines since `start_record`) may hold at most `limit` characters: each line is
    read with the room the record has left, so an over-long one is cut there and raises
    _RecordTooLong before csv.reader sees it. A class, not a generator, so it can go on after
    raising; csv.reader starts afresh at its next record.
    """

    def __init__(self, text: io.TextIOBase, limit: int) -> None:
        self._text = text
        self.limit = limit
        self.lines_read = 0
        self._last_char = ""  # of the piece at which a record outgrew its bound
        self._after_cr = False  # a line read past ended with \r, perhaps cut from its \n
        self.start_record()

    def start_record(self) -> None:
        self.record_line = self.lines_read + 1
        self.head = ""
        self._chars = 0
        self._quotes = 0

    def __iter__(self) -> CsvLines:
        return self

    def __next__(self) -> str:
        room = self.limit - self._chars
        line = self._text.readline(room + 1)
        if self._after_cr:
            self._after_cr = False
            if line == "\n":
                # The \n of a \r\n that a size cut in two: it ends no line of its own. (Only a
                # cut parts them: the decoder holds a final \r back until it sees what follows.)
                line = self._text.readline(room + 1)
        if not self._chars:
            while line in _BARE_LINE_BREAKS:  # blank lines between records: count them only
                self.lines_read += 1
                self.record_line += 1
                line = self._text.readline(room + 1)
            self.head = line[:HEAD_CHARS]
        if not line:
            raise StopIteration
        self._chars += len(line)
        self._quotes += line.count('"')
        if self._chars > self.limit:
            self._last_char = line[-1]
            raise _RecordTooLong()
        self.lines_read += 1
        return line

    def skip_rest_of_line(self) -> bool:
        """Reads past the rest of the line on which the record outgrew its bound, a piece at a
        time; whether the record's quotes are balanced at its end, so that the next line starts
        a new record."""
        last = self._last_char
        while last not in ("\n", "\r"):
            piece = self._text.readline(_SKIP_CHARS)
            if not piece:
                break
            self._quotes += piece.count('"')
            last = piece[-1]
        self._after_cr = last == "\r"
        self.lines_read += 1
        return self._quotes % 2 == 0


class Dialect(NamedTuple):
    """How a file's text is written, as detected from its first bytes (and, for UTF-8, all of
    them)."""

    encoding: str
    delimiter: str


def detect_dialect(stream: ByteStream, whole_file_is_utf8: Callable[[], bool]) -> Dialect:
    sample = stream.peek_sample()
    encoding = choose_encoding(sample, whole_file_is_utf8)
    return Dialect(encoding, sniff_delimiter(_first_line(sample, encoding)))


def records(stream: ByteStream, whole_file_is_utf8: Callable[[], bool], limits: CsvLimits,
            dialect: Dialect | None = None) -> Iterator[Record]:
    """Each non-blank record, the header first. A header over a bound rejects the file; a later
    record over its bound comes rejected, unread, and reading goes on at the next line. A
    caller that detected the dialect already passes it."""
    encoding, delimiter = dialect or detect_dialect(stream, whole_file_is_utf8)
    text = io.TextIOWrapper(io.BufferedReader(stream, 1 << 16), encoding=encoding,
                            errors="strict", newline="")
    lines = CsvLines(text, limits.max_header_chars)
    reader = csv.reader(lines, delimiter=delimiter)
    try:
        header = _header(lines, reader, limits)
        if header is None:
            return
        yield header
        lines.limit = limits.max_row_chars
        yield from _rows(lines, reader)
    except csv.Error as exc:
        raise FileRejected(f"line {lines.record_line}: {exc}") from None
    except UnicodeDecodeError as exc:
        raise FileRejected(f"the text is not valid {encoding} near byte {stream.consumed}: "
                           f"{exc.reason}; save the file as UTF-8 and upload it again") from None


def _header(lines: CsvLines, reader: Iterator[list[str]], limits: CsvLimits) -> Record | None:
    """The first non-blank record, within the header's bounds; None for a file of blank lines."""
    try:
        for fields in reader:
            if any(map(str.strip, fields)):
                break
            lines.start_record()
        else:
            if lines.lines_read == 0:
                raise FileRejected("the file has no rows: upload a CSV with a header row")
            return None
    except _RecordTooLong:
        raise FileRejected(
            f"the header (line {lines.record_line}) is longer than {limits.max_header_chars:,} "
            f"characters, the limit (CSV_MAX_HEADER_CHARS): the first row must be the column "
            f"names, such as id,title,release_date") from None
    if len(fields) > limits.max_columns:
        raise FileRejected(
            f"the header has {len(fields):,} columns, more than the limit of "
            f"{limits.max_columns:,} (CSV_MAX_COLUMNS): remove the columns you do not need")
    return Record(lines.record_line, fields)


def _rows(lines: CsvLines, reader: Iterator[list[str]]) -> Iterator[Record]:
    """Every non-blank record after the header; one over its bound comes rejected, unread."""
    while True:
        lines.start_record()
        try:
            for fields in reader:
                if any(map(str.strip, fields)):
                    yield Record(lines.record_line, fields)
                lines.start_record()
            return
        except _RecordTooLong:
            yield _skipped(lines)


def _skipped(lines: CsvLines) -> Record:
    """The record that outgrew its bound, read past to the end of its line and rejected."""
    line, head = lines.record_line, lines.head
    if not lines.skip_rest_of_line():
        raise FileRejected(
            f"line {line}: a row longer than {lines.limit:,} characters (CSV_MAX_ROW_CHARS) "
            f"ends inside a quoted field, so where the next row starts cannot be told: most "
            f"likely an unclosed quote, which swallows every line after it; close the quote")
    return Record(line, [], head=head, rejected=(
        f"the row is longer than {lines.limit:,} characters, the limit (CSV_MAX_ROW_CHARS), so "
        f"it was skipped unread: split it into rows or shorten its fields"))


def raw_sample(record: Record) -> str:
    """A rejected row as text, at most MAX_RAW characters. A row skipped for its length shows its
    first characters as they were; a parsed row is written as CSV from only as many fields, each
    cut, as can show, so a row of a million fields costs what a short one does."""
    if record.rejected:
        return record.head[:MAX_RAW]
    shown: list[str] = []
    size = 0
    for value in record.fields:
        if size > MAX_RAW:
            break
        shown.append(value[:MAX_RAW])
        size += len(shown[-1]) + 1
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow(shown)
    return out.getvalue()[:MAX_RAW]
