"""Bytes of an uploaded file to CSV records, incrementally: encoding, delimiter, line numbers."""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Callable, Iterable, Iterator

import charset_normalizer

from services.worker.movie_rows import FileRejected

SAMPLE_BYTES = 256 * 1024
MAX_FIELD = 1 << 20
_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
         (codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"),
         (codecs.BOM_UTF16_BE, "utf-16"))
_CONTROL = set(range(0x20)) - {0x09, 0x0A, 0x0D}

csv.field_size_limit(MAX_FIELD)


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


def _delimiter(first_line: str) -> str:
    try:
        return csv.Sniffer().sniff(first_line, delimiters=",;\t|").delimiter
    except csv.Error:
        return ","


def records(stream: ByteStream, whole_file_is_utf8: Callable[[], bool]
            ) -> Iterator[tuple[int, list[str]]]:
    """(line where the record starts, fields) for each non-blank record, header first."""
    sample = stream.peek_sample()
    encoding = choose_encoding(sample, whole_file_is_utf8)
    head = sample.decode(encoding, errors="ignore").lstrip("\ufeff")
    delimiter = _delimiter(next((line for line in head.splitlines() if line.strip()), ""))
    text = io.TextIOWrapper(io.BufferedReader(stream, 1 << 16), encoding=encoding,
                            errors="strict", newline="")
    reader = csv.reader(text, delimiter=delimiter)
    previous = 0
    try:
        for fields in reader:
            start, previous = previous + 1, reader.line_num
            if any(f.strip() for f in fields):
                yield start, fields
    except csv.Error as exc:
        raise FileRejected(f"line {previous + 1}: {exc} (an unclosed quote swallows every "
                           f"line after it)") from None
    except UnicodeDecodeError as exc:
        raise FileRejected(f"the text is not valid {encoding} near byte {stream.consumed}: "
                           f"{exc.reason}; save the file as UTF-8 and upload it again") from None
    if previous == 0:
        raise FileRejected("the file has no rows: upload a CSV with a header row")
