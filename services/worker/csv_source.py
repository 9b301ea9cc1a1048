"""Bytes of an uploaded file to CSV records, incrementally: encoding, delimiter, line numbers.

A hostile file costs no more than a fair one: every record is bounded (CsvLimits) while it is
read, before the csv module or anything after it works on it, and a record over its bound is
skipped in pieces, never held whole.

Rows are parsed a block of text at a time (BLOCK_CHARS, never more than the row bound): every
record that starts and ends inside a block is within its bound, so the csv module reads the
block straight through, with no Python code per line. A record that a block cannot hold whole
is read line by line by CsvLines, which bounds it as it goes; so is the header.

The operations read the same blocks through stepped_blocks, which gives each block's rows to
the operation's step, in this process or in others (services/worker/block_workers.py).
"""

from __future__ import annotations

import codecs
import csv
import io
import itertools
import operator
import re
import sys
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, AnyStr, NamedTuple, Protocol, TypeVar, cast

from services.worker.movie_rows import FileRejected

if TYPE_CHECKING:
    from services.common.settings import Settings

SAMPLE_BYTES = 256 * 1024
HEAD_CHARS = 2000  # what a record skipped for its length keeps, to show which row it was
MAX_RAW = 2000  # the characters of a rejected row that its report shows
DELIMITERS = ",;\t|"  # the sniffer's candidates; a comma wins ties
_SKIP_CHARS = 1 << 16  # the piece size in which an over-long record is read past
# Characters parsed at a time; a record longer than this is read line by line (CsvLines).
BLOCK_CHARS = 1 << 16
_DECODE_BYTES = 1 << 16
# What str.splitlines splits at besides \n, \r\n and \r (csv.reader is given lines split
# where TextIOWrapper(newline="") splits them, as CsvLines gives them).
_OTHER_BREAKS = "\v\f\x1c\x1d\x1e\x85\u2028\u2029"
_LINE_END = re.compile(r"\r\n?|\n")
_QUOTED = re.compile(r'"[^"]*"')
# Blank lines are skipped before csv.reader sees them: a file of nothing else is read at a
# fraction of a microsecond per line, not the microsecond and more that a record costs.
_BARE_LINE_BREAKS = frozenset({"\n", "\r\n", "\r"})
_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
         (codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"),
         (codecs.BOM_UTF16_BE, "utf-16"))
_CONTROL = set(range(0x20)) - {0x09, 0x0A, 0x0D}
_first = operator.itemgetter(0)
_TEXT_MARKS = ("\n", "\r", "\r\n", '"')  # what _records_end looks for, in text or in bytes
_BYTE_MARKS = (b"\n", b"\r", b"\r\n", b'"')
_T = TypeVar("_T")

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


class _Source(NamedTuple):
    """The text a block's records were parsed from, to find the lines they start on."""

    text: str
    first_line: int
    delimiter: str


class Batch:
    """Consecutive non-blank records: their fields, and the line each starts on. A record
    skipped for its length comes alone, as `skipped`, in a batch with no rows. The lines of a
    block's records are found only when asked for (a malformed row, an import): by parsing its
    text again, which costs less than counting lines for the rows that never need them."""

    __slots__ = ("_lines", "_source", "rows", "skipped")

    def __init__(self, rows: list[list[str]], lines: list[int] | None = None,
                 skipped: Record | None = None, source: _Source | None = None) -> None:
        self.rows = rows
        self.skipped = skipped
        self._lines = lines
        self._source = source

    @property
    def lines(self) -> list[int]:
        if self._lines is None:
            assert self._source is not None
            text, first_line, delimiter = self._source
            reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
            self._lines = []
            start = first_line
            for fields in reader:
                if any(map(str.strip, fields)):
                    self._lines.append(start)
                start = first_line + reader.line_num
        return self._lines

    def split(self, columns: int) -> tuple[list[list[str]], list[Record]]:
        """The rows with `columns` fields, and the other records (malformed)."""
        rows = self.rows
        if rows and min(map(len, rows)) == columns == max(map(len, rows)):
            return rows, []  # the common case, checked without a Python step per row
        good: list[list[str]] = []
        bad = [self.skipped] if self.skipped else []
        for line, fields in zip(self.lines, rows, strict=True):
            if len(fields) == columns:
                good.append(fields)
            else:
                bad.append(Record(line, fields))
        return good, bad


class ByteStream:
    """An iterator of byte chunks that can show its first bytes before they are read, and
    counts what was consumed."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buffer = b""
        self.consumed = 0

    def rest(self) -> Iterator[bytes]:
        """The bytes not consumed yet, a chunk at a time, consumed as each is given."""
        if self._buffer:
            chunk, self._buffer = self._buffer, b""
            self.consumed += len(chunk)
            yield chunk
        for chunk in self._chunks:
            self.consumed += len(chunk)
            yield chunk

    def peek_sample(self, size: int = SAMPLE_BYTES) -> bytes:
        """The first bytes of the file, without consuming them."""
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
    # Imported here: the processes that parse blocks (block_workers) never detect an encoding.
    import charset_normalizer

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


class _Text:
    """The decoded text, read in blocks (the fast path) or by lines (CsvLines), as
    TextIOWrapper(newline="") gives it: a line ends at \n, \r\n or a lone \r. The bytes are
    decoded 64 KiB at a time, without TextIOWrapper's 8 KiB steps and the buffered reader under
    it (a sixth of the reader's time), and text read but not used is put back by stepping back
    over it."""

    def __init__(self, chunks: Iterator[bytes], encoding: str) -> None:
        # Decoded in pieces that the processor's cache holds (a MiB at once took twice as long).
        self._chunks = (memoryview(chunk)[i : i + _DECODE_BYTES] for chunk in chunks
                        for i in range(0, len(chunk), _DECODE_BYTES))
        self._decoder = codecs.getincrementaldecoder(encoding)("strict")
        # After the first bytes, utf-8-sig is utf-8: its BOM is only ever the first character.
        self._plain = "utf-8" if codecs.lookup(encoding).name == "utf-8-sig" else encoding
        self._raw = b""  # bytes before the chunks, not decoded: given back, or text re-encoded
        self._text = ""
        self._pos = 0
        self._ended = False

    def _more(self) -> bool:
        """Appends the next piece's text to the text not read yet; False at the end."""
        while not self._ended:
            if self._raw:
                piece: bytes | memoryview | None = self._raw[:_DECODE_BYTES]
                self._raw = self._raw[_DECODE_BYTES:]
            else:
                piece = next(self._chunks, None)
            self._ended = piece is None
            decoded = self._decoder.decode(piece or b"", final=self._ended)
            if decoded:
                self._text = self._text[self._pos :] + decoded
                self._pos = 0
                return True
        return False

    def push_back(self, text: str) -> None:
        """Puts `text` before what is not read yet: blocks read ahead and left unparsed."""
        self._text = text + self._text[self._pos :]
        self._pos = 0

    def read_bytes(self, size: int) -> bytes:
        """`size` bytes of the file, not decoded (fewer only at the end): for an encoding in
        which a line break or a quote is always the one byte, so that blocks can be cut before
        they are decoded (block_workers). Text decoded but not read comes first, encoded
        again with what the decoder held back."""
        self._encode_unread()
        parts: list[bytes | memoryview] = [self._raw]
        have = len(self._raw)
        while have < size and (piece := next(self._chunks, None)) is not None:
            parts.append(piece)
            have += len(piece)
        data = b"".join(parts)
        self._raw = data[size:]
        return data[:size]

    def unread_bytes(self, data: bytes) -> None:
        """Puts bytes before what is not read yet (read_bytes' or blocks left unparsed)."""
        self._encode_unread()
        self._raw = data + self._raw
        self._ended = self._ended and not data

    def _encode_unread(self) -> None:
        """Text decoded but not read, and what the decoder held back, back to bytes."""
        held = self._decoder.getstate()[0]
        if self._pos < len(self._text) or held:
            self._raw = self._text[self._pos :].encode(self._plain) + held + self._raw
            self._text, self._pos = "", 0
            self._decoder = codecs.getincrementaldecoder(self._plain)("strict")
            self._ended = False

    def unread(self, text: str) -> None:
        """Puts back the end of what the last read gave."""
        self._pos -= len(text)
        if not self._text.startswith(text, self._pos):
            raise AssertionError("only the end of the last read can be put back")

    def read(self, size: int) -> str:
        """`size` characters, fewer only at the end of the text."""
        while len(self._text) - self._pos < size and self._more():
            pass
        text = self._text[self._pos : self._pos + size]
        self._pos += len(text)
        return text

    def readline(self, size: int) -> str:
        """A line with its line break, cut at `size` characters."""
        while True:
            limit = self._pos + size
            end = _LINE_END.search(self._text, self._pos, limit)
            cut: int | None
            if end is None:  # no line break within `size` characters: cut there
                cut = limit if len(self._text) >= limit else None
            elif end.group() == "\r" and end.end() == len(self._text) < limit:
                cut = None  # perhaps the first half of a \r\n
            else:
                cut = end.end()
            if cut is None and self._more():
                continue
            cut = len(self._text) if cut is None else cut
            line = self._text[self._pos : cut]
            self._pos = cut
            return line


class _RecordTooLong(Exception):
    """Raised by CsvLines, through csv.reader, when a record outgrows its bound."""


class CsvLines:
    """The physical lines of the text, each with its line break, as csv.reader asks for them.

    A record (the lines since `start_record`) may hold at most `limit` characters: each line is
    read with the room the record has left, so an over-long one is cut there and raises
    _RecordTooLong before csv.reader sees it. A class, not a generator, so it can go on after
    raising; csv.reader starts afresh at its next record.
    """

    def __init__(self, text: _Text, limit: int) -> None:
        self._text = text
        self.limit = limit
        self.lines_read = 0
        self._last_char = ""  # of the piece at which a record outgrew its bound
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
        if last == "\r":
            # The \n of a \r\n that a size cut in two ends no line of its own. (Only a cut
            # parts them: the decoder holds a final \r back until it sees what follows.)
            after = self._text.read(1)
            if after != "\n":
                self._text.unread(after)
        self.lines_read += 1
        return self._quotes % 2 == 0


class Dialect(NamedTuple):
    """How a file's text is written, as detected from its first bytes (and, for UTF-8, all of
    them)."""

    encoding: str
    delimiter: str


def stored_dialect(encoding: str, delimiter: str) -> Dialect | None:
    """The dialect the upload detected with this reader (services/upload/csv_header.py), when
    it detected one: reading a file in it streams the file once, where detecting it again
    streams a file whose first bytes are UTF-8 twice."""
    return Dialect(encoding, delimiter) if encoding and delimiter else None


def detect_dialect(stream: ByteStream, whole_file_is_utf8: Callable[[], bool]) -> Dialect:
    sample = stream.peek_sample()
    encoding = choose_encoding(sample, whole_file_is_utf8)
    return Dialect(encoding, sniff_delimiter(_first_line(sample, encoding)))


def records(stream: ByteStream, whole_file_is_utf8: Callable[[], bool], limits: CsvLimits,
            dialect: Dialect | None = None) -> Iterator[Record]:
    """Each non-blank record, the header first (record_batches, one at a time)."""
    for batch in record_batches(stream, whole_file_is_utf8, limits, dialect):
        yield from map(Record, batch.lines, batch.rows)
        if batch.skipped:
            yield batch.skipped


def record_batches(stream: ByteStream, whole_file_is_utf8: Callable[[], bool],
                   limits: CsvLimits, dialect: Dialect | None = None) -> Iterator[Batch]:
    """The non-blank records in batches, the header alone in the first. A header over a bound
    rejects the file; a later record over its bound comes rejected, unread, and reading goes on
    at the next line. A caller that detected the dialect already passes it."""
    def batches(reading: _Reading, header: Record) -> Iterator[Batch]:
        yield Batch([header.fields], [header.line])
        yield from _batches(reading.text, reading.lines, reading.reader,
                            reading.dialect.delimiter)

    return _read(stream, whole_file_is_utf8, limits, dialect, batches)


def stepped_blocks(stream: ByteStream, whole_file_is_utf8: Callable[[], bool],
                   limits: CsvLimits, dialect: Dialect | None,
                   begin: Callable[[list[str], Dialect], Parser]) -> Iterator[Parsed]:
    """What a step made of the records after the header, a block at a time, in the file's
    order. `begin` is given the header and the dialect, and returns the parser that runs the
    step on each block's well-formed rows (InProcess, or services/worker/block_workers.py);
    it is closed at the end. Nothing is yielded, and `begin` is not called, for a file of blank
    lines. Bounds and errors are record_batches'."""
    def stepped(reading: _Reading, header: Record) -> Iterator[Parsed]:
        parser = begin(header.fields, reading.dialect)
        try:
            yield from _stepped(reading, parser)
        finally:
            parser.close()

    return _read(stream, whole_file_is_utf8, limits, dialect, stepped)


class _Reading(NamedTuple):
    text: _Text
    lines: CsvLines
    reader: Iterator[list[str]]
    dialect: Dialect


def _read(stream: ByteStream, whole_file_is_utf8: Callable[[], bool], limits: CsvLimits,
          dialect: Dialect | None, after_header: Callable[[_Reading, Record], Iterator[_T]]
          ) -> Iterator[_T]:
    """The file's header, read within its bounds, then `after_header` for the rest; a csv or
    decoding error rejects the file, naming where."""
    encoding, delimiter = dialect or detect_dialect(stream, whole_file_is_utf8)
    text = _Text(stream.rest(), encoding)
    lines = CsvLines(text, limits.max_header_chars)
    reader = csv.reader(lines, delimiter=delimiter)
    try:
        header = _header(lines, reader, limits)
        if header is None:
            return
        lines.limit = limits.max_row_chars
        yield from after_header(_Reading(text, lines, reader, Dialect(encoding, delimiter)),
                                header)
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


def _batches(text: _Text, lines: CsvLines, reader: Iterator[list[str]], delimiter: str
             ) -> Iterator[Batch]:
    """Every non-blank record after the header, a block at a time. A record that no block holds
    whole is read alone, line by line; after a csv error, the rest is, so that the error names
    its record's line."""
    size = min(BLOCK_CHARS, lines.limit)
    while True:
        block, final = _block(text, size)
        try:
            batch, used_lines, used_chars = _parse(block, final, lines.lines_read + 1, delimiter)
        except csv.Error:
            text.unread(block)
            while (one := _one_record(lines, reader)) is not None:
                yield one
            return
        text.unread(block[used_chars:])
        lines.lines_read += used_lines
        if batch.rows:
            yield batch
        if final:
            return
        if not used_lines:  # the block's first record does not end in it
            one = _one_record(lines, reader)
            if one is None:
                return
            yield one


Block = str | bytes  # of text, or of the file's bytes (Parser.cuts_bytes)


def cut_as_bytes(encoding: str) -> bool:
    """Whether blocks of a file in `encoding` can be cut in its bytes, before they are decoded:
    a line break and a quote are each one byte, and no other character's bytes hold those
    (UTF-8 and the single-byte encodings; not UTF-16, nor Shift-JIS or GBK)."""
    name = codecs.lookup(encoding).name
    return name in ("utf-8", "utf-8-sig", "ascii") or name.startswith(("cp125", "iso8859-"))


class Parsed(NamedTuple):
    """What a step made of consecutive records: a block's, or one record read alone."""

    records: int  # non-blank records read, malformed ones included
    malformed: list[Record]  # the records with another field count, or over their bound
    value: Any  # the step's result for the well-formed rows
    used_lines: int = 0  # of the block: the lines and characters its whole records take
    used_chars: int = 0


class BlockJob(NamedTuple):
    """What each block's records go through: parsed with `delimiter`, split into the rows with
    `columns` fields and the malformed ones, and the rows given to `step`, whose result is
    Parsed.value. The step is pickled to the processes that parse (block_workers)."""

    delimiter: str
    columns: int
    step: Callable[[list[list[str]]], Any]


class Parser(Protocol):
    """Parses groups of blocks, each cut by _block, and gives their results back in the order
    they were submitted."""

    job: BlockJob
    blocks_per_group: int
    cuts_bytes: bool  # blocks are the file's bytes, cut before they are decoded (cut_as_bytes)
    reads_ahead: bool  # blocks are cut before the ones before them are parsed

    def room(self, in_flight: int) -> bool:
        """Whether one more group may be submitted while `in_flight` have no results taken."""

    def submit(self, blocks: list[Block], final: bool) -> None:
        """`final`: the last block is the rest of the text."""

    def take(self) -> list[Parsed | None]:
        """The results of the oldest group submitted (parse_blocks')."""

    def close(self) -> None: ...


def parse_blocks(job: BlockJob, blocks: list[str], final: bool) -> list[Parsed | None]:
    """The job run on each block, in order, up to and including the first block whose last
    record is cut off by its end (used_chars short of it), or None for the first that the csv
    module refuses: the blocks after it were cut assuming it ends in a whole record, so they are
    left to be read again."""
    results: list[Parsed | None] = []
    for index, block in enumerate(blocks):
        try:
            batch, used_lines, used_chars = _parse(
                block, final and index == len(blocks) - 1, 1, job.delimiter)
        except csv.Error:
            results.append(None)
            break
        rows, malformed = batch.split(job.columns)
        results.append(Parsed(len(batch.rows), malformed, job.step(rows), used_lines,
                              used_chars))
        if used_chars < len(block):
            break
    return results


class InProcess:
    """Parses each block in this process, when its result is taken."""

    blocks_per_group = 1
    cuts_bytes = reads_ahead = False

    def __init__(self, job: BlockJob) -> None:
        self.job = job
        self._submitted: tuple[list[str], bool] = ([], False)

    def room(self, in_flight: int) -> bool:
        return in_flight == 0

    def submit(self, blocks: list[Block], final: bool) -> None:
        self._submitted = (cast(list[str], blocks), final)  # text: cuts_bytes is False

    def take(self) -> list[Parsed | None]:
        return parse_blocks(self.job, *self._submitted)

    def close(self) -> None:
        pass


def _stepped(reading: _Reading, parser: Parser) -> Iterator[Parsed]:
    """_batches for a parser that may parse blocks ahead, in other processes: blocks are cut
    and submitted while the parser has room, each where its quotes say a record ends (_block
    by quotes, or _raw_block for a parser that decodes them itself), and their results taken
    in order. A result that says otherwise (a record cut off, a csv or decoding error) gives
    back every block read after it, to be read again in this process: each block's start is
    then known, not guessed."""
    text, lines, reader, _ = reading
    size = min(BLOCK_CHARS, lines.limit)
    flight: deque[list[Block]] = deque()  # the groups submitted, oldest first
    alone = final = False  # reading ahead stops at a record no block holds, and at the end
    while True:
        while not (alone or final) and parser.room(len(flight)):
            group: list[Block] = []
            while len(group) < parser.blocks_per_group and not (alone or final):
                block, final = (_raw_block(text, size) if parser.cuts_bytes
                                else _block(text, size, parser.reads_ahead))
                if block or final:
                    group.append(block)
                else:
                    alone = True
            if group:
                parser.submit(group, final)
                flight.append(group)
        if not flight:
            if final:
                return
            alone = False
            if (one := _one_record(lines, reader)) is None:
                return
            yield _stepped_batch(one, parser.job)
            continue
        blocks = flight.popleft()
        for index, parsed in enumerate(parser.take()):
            if parsed is not None:
                yield _at_line(parsed, lines.lines_read) if parsed.malformed else parsed
                lines.lines_read += parsed.used_lines
                if parsed.used_chars == len(blocks[index]):
                    continue
            rest = [blocks[index][parsed.used_chars if parsed else 0 :], *blocks[index + 1 :]]
            while flight:  # their results are not taken: the parser is closed
                rest += flight.popleft()
            for block in reversed(rest):
                if isinstance(block, bytes):
                    text.unread_bytes(block)
                else:
                    text.push_back(block)
            final = False
            job = parser.job
            parser.close()
            if parsed is None:  # a csv or decoding error: read record by record, to name it
                while (one := _one_record(lines, reader)) is not None:
                    yield _stepped_batch(one, job)
                return
            alone = parsed.used_lines == 0
            parser = InProcess(job)
            break


def _at_line(parsed: Parsed, lines_before: int) -> Parsed:
    """The malformed records of a block parsed from line 1, with the lines they start on."""
    return parsed._replace(malformed=[
        record._replace(line=record.line + lines_before) for record in parsed.malformed])


def _stepped_batch(batch: Batch, job: BlockJob) -> Parsed:
    rows, malformed = batch.split(job.columns)
    return Parsed(len(batch.rows) + bool(batch.skipped), malformed, job.step(rows))


def _block(text: _Text, size: int, by_quotes: bool = False) -> tuple[str, bool]:
    """At most `size` characters of whole lines, and whether they are the rest of the text. A
    record cut off by the block's end is found by the parse and read again (_parse). No line
    break within `size`: an empty block, and the record is read alone.

    `by_quotes`, for blocks cut before the ones before them are parsed (block_workers): the
    block ends at the last line break after an even number of quotes. In a file quoted as RFC
    4180 quotes, that is a record's end, so a block's start is known before the block before it
    is parsed (a file quoted otherwise is still read right, see _stepped). Counting the quotes
    costs more than re-reading the records cut off, so a parse in order does without it."""
    return _cut(text.read(size), size, _TEXT_MARKS, text.unread, by_quotes)


def _raw_block(text: _Text, size: int) -> tuple[bytes, bool]:
    """_block by quotes, cut in the bytes (text.read_bytes): at most `size` characters."""
    return _cut(text.read_bytes(size), size, _BYTE_MARKS, text.unread_bytes, True)


def _cut(chunk: AnyStr, size: int, marks: tuple[AnyStr, AnyStr, AnyStr, AnyStr],
         unread: Callable[[AnyStr], None], by_quotes: bool) -> tuple[AnyStr, bool]:
    if len(chunk) < size:
        return chunk, True
    cut = _records_end(chunk, marks, by_quotes)
    unread(chunk[cut:])
    return chunk[:cut], False


def _records_end(chunk: AnyStr, marks: tuple[AnyStr, AnyStr, AnyStr, AnyStr],
                 by_quotes: bool = True) -> int:
    """Where the last line break (after an even number of quotes) ends; 0 if none does."""
    newline, cr, crlf, quote = marks
    quotes = chunk.count(quote) if by_quotes else 0
    end = len(chunk)
    while True:
        # A \r that ends the chunk may be the first half of a \r\n: no line break yet.
        cut = max(chunk.rfind(newline, 0, end), chunk.rfind(cr, 0, min(end, len(chunk) - 1))) + 1
        if cut == 0 or not by_quotes:
            return cut
        quotes -= chunk.count(quote, cut, end)
        if quotes % 2 == 0:
            return cut
        end = cut - 2 if chunk.startswith(crlf, cut - 2) else cut - 1  # before that break


def _lines_of(block: str) -> list[str]:
    """The block's lines, split where TextIOWrapper(newline="") splits them. str.splitlines is
    the fastest way, and splits there too unless the text holds one of its other breaks."""
    if any(map(block.__contains__, _OTHER_BREAKS)):
        return list(io.StringIO(block, newline=""))
    return block.splitlines(keepends=True)


def _parse(block: str, final: bool, first_line: int, delimiter: str
           ) -> tuple[Batch, int, int]:
    """The non-blank records that end in `block` (the whole of it when `final`), and the lines
    and characters they take: a record cut off by the block's end is left to be read again
    with what follows. Each record is within its bound, as the block is."""
    lines = _lines_of(block)
    # A blank line after the block: a blank record if the last record ended, else more of it.
    # (A lone \r: it cannot make one line break with the block's last.)
    rows = list(csv.reader(lines if final else itertools.chain(lines, ("\r",)),
                           delimiter=delimiter))
    used_lines, used_chars = len(lines), len(block)
    if not final and (cut_off := rows.pop()):  # not the blank line: a record cut off
        # Each of its lines ended inside its quotes, as did the blank line, so each of their
        # breaks is in its fields: their count says on which line it starts.
        breaks = sum(f.count("\n") + f.count("\r") - f.count("\r\n") for f in cut_off)
        used_lines = len(lines) + 1 - breaks
        used_chars = sum(map(len, lines[:used_lines]))
    # Blank records (no fields, or only spaces) are dropped, with no Python step per row. Most
    # blocks have none, as a look at each record's first field shows for less than joining it.
    if not (all(rows) and all(map(str.strip, map(_first, rows)))):
        rows = list(itertools.compress(rows, map(str.strip, map("".join, rows))))
    return (Batch(rows, source=_Source(block[:used_chars], first_line, delimiter)), used_lines,
            used_chars)


def _one_record(lines: CsvLines, reader: Iterator[list[str]]) -> Batch | None:
    """The next non-blank record, read line by line within its bound; None at the end."""
    lines.start_record()
    try:
        for fields in reader:
            if any(map(str.strip, fields)):
                return Batch([fields], [lines.record_line])
            lines.start_record()
        return None
    except _RecordTooLong:
        return Batch([], [], _skipped(lines))


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
