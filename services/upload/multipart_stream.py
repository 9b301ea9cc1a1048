"""Finds the `file` field in a multipart/form-data body that arrives in chunks, and streams its
bytes without holding the body in memory."""

from __future__ import annotations

from collections.abc import Iterator

import multipart

from services.common.errors import InvalidArgument

FIELD = "file"


class FilePart:
    """The `file` field of a streamed multipart body: `filename`, then iterate for the bytes."""

    def __init__(self, content_type: str, body: Iterator[bytes]) -> None:
        kind, options = multipart.parse_options_header(content_type or "")
        if kind != "multipart/form-data" or not options.get("boundary"):
            raise InvalidArgument(
                "send the CSV as multipart/form-data with the file in the field 'file' "
                f"(got content type {content_type or 'none'!r})"
            )
        self._parser = multipart.PushMultipartParser(options["boundary"], max_segment_count=64)
        self._body = body
        self._events = self._parse()
        self.filename = self._find_file_field()

    def _parse(self) -> Iterator[object]:
        try:
            for chunk in self._body:
                if chunk:
                    yield from self._parser.parse(chunk)
            yield from self._parser.parse(b"")
        except multipart.ParserError as exc:
            raise InvalidArgument(f"malformed multipart body: {exc}") from None

    def _find_file_field(self) -> str:
        for event in self._events:
            if isinstance(event, multipart.MultipartSegment) and event.name == FIELD:
                return event.filename or ""
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
