"""A stored file's dialect and header row, read once when it is uploaded, with the worker's own
reader (services/worker/csv_source.py), so that what the files routes show and what operations
are checked against is what the worker will read."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from services.upload.records import CsvHeader
from services.worker.csv_source import ByteStream, CsvLimits, detect_dialect, is_utf8, records
from services.worker.movie_rows import FileRejected


def read_header(open_bytes: Callable[[], Iterator[bytes]], limits: CsvLimits) -> CsvHeader:
    """The header of the bytes that `open_bytes` streams from the start. Deciding that a file
    is UTF-8 takes a pass over all of it (about a second per GiB), as it does in the worker;
    it is made only when the first 256 KiB leave it open."""
    stream = ByteStream(open_bytes())
    try:
        dialect = detect_dialect(stream, lambda: is_utf8(open_bytes()))
        first = next(records(stream, lambda: True, limits, dialect), None)
    except FileRejected as exc:
        return CsvHeader(error=str(exc))
    if first is None:
        return CsvHeader(dialect.encoding, dialect.delimiter,
                         error="the file has only blank lines")
    return CsvHeader(dialect.encoding, dialect.delimiter, tuple(first.fields))
