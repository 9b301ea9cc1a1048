"""Finds the `file` field in a multipart/form-data body that arrives in chunks, and streams its
bytes without holding the body in memory."""

from __future__ import annotations

from collections.abc import Iterator

import multipart

from services.common.errors import InvalidArgument

FIELD = "file"
# RFC 2046 allows boundaries of 1-70 characters; a longer one only makes each parse step slower.
MAX_BOUNDARY_CHARS = 70
# Room for a boundary parameter and some others; the header is refused unread beyond that.
MAX_CONTENT_TYPE_CHARS = 1024
MAX_PART_HEADER_BYTES = 4224  # each header line of a part: a file name of about 4,000 bytes
MAX_PARTS = 64


class FilePart:
    """The `file` field of a streamed multipart body: `filename`, then iterate for the bytes."""

    def __init__(self, content_type: str, body: Iterator[bytes]) -> None:
        self._parser = _parser(_boundary(content_type or ""))
        self._body = body
        self._events = self._parse()
        self.filename = self._find_file_field()

    def _parse(self) -> Iterator[object]:
        try:
            for chunk in self._body:
                if chunk:
                    yield from self._parser.parse(chunk)
            yield from self._parser.parse(b"")
        except multipart.ParserLimitReached as exc:
            raise InvalidArgument(
                f"multipart body over a limit: {exc} (a part's header lines may have "
                f"{MAX_PART_HEADER_BYTES} bytes each, so send a shorter file name; a body may "
                f"have {MAX_PARTS} parts)") from None
        except multipart.MultipartError as exc:
            raise InvalidArgument(f"malformed multipart body: {exc}") from None

    def _find_file_field(self) -> str:
        for event in self._events:
            if isinstance(event, multipart.MultipartSegment) and event.name == FIELD:
                return _file_name(event.filename or "")
        raise InvalidArgument(f"missing multipart field '{FIELD}' with the CSV file")

    def __iter__(self) -> Iterator[bytes]:
        for event in self._events:
            if event is None:
                break
            if isinstance(event, bytes | bytearray):
                yield bytes(event)
        # Read the rest of the body so a truncated request is reported, not silently accepted.
        for _ in self._events:
            pass


def _boundary(content_type: str) -> str:
    if len(content_type) > MAX_CONTENT_TYPE_CHARS:
        raise InvalidArgument(f"the content type is longer than {MAX_CONTENT_TYPE_CHARS} "
                              "characters: send multipart/form-data with a short boundary")
    kind, options = multipart.parse_options_header(content_type)
    boundary = options.get("boundary", "")
    if kind != "multipart/form-data" or not boundary:
        raise InvalidArgument(
            "send the CSV as multipart/form-data with the file in the field 'file' "
            f"(got content type {content_type or 'none'!r})"
        )
    if len(boundary) > MAX_BOUNDARY_CHARS:
        raise InvalidArgument(f"the multipart boundary is longer than {MAX_BOUNDARY_CHARS} "
                              "characters (RFC 2046)")
    return str(boundary)


def _parser(boundary: str) -> multipart.PushMultipartParser:
    try:
        return multipart.PushMultipartParser(
            boundary, max_header_size=MAX_PART_HEADER_BYTES, max_segment_count=MAX_PARTS,
            # Never fails to decode: _file_name decodes the name.
            header_charset="latin-1")
    except multipart.MultipartError as exc:  # e.g. a line break in the boundary
        raise InvalidArgument(f"the multipart boundary is not valid: {exc}") from None


def _file_name(header_text: str) -> str:
    """The file name from part headers read as latin-1 (byte for byte): UTF-8 as browsers send
    it, and any other bytes as U+FFFD, since the name is only shown."""
    return header_text.encode("latin-1").decode("utf-8", errors="replace")
