"""Unit tests for services/upload/multipart_stream.py: the `file` field of a streamed body."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from services.common.errors import InvalidArgument
from services.upload.multipart_stream import FilePart

BOUNDARY = "----MarqueeBoundary7MA4YWxkTrZu0gW"
CONTENT_TYPE = f"multipart/form-data; boundary={BOUNDARY}"
# CSV bytes with CRLFs, a multi-byte char, something that looks like a boundary, and all bytes.
FILE_BYTES = ("id,title\r\n1,Amélie\r\n2,\"Heat\r\n--\"\r\n".encode()
              + f"\r\n--{BOUNDARY[:-1]}\r\n".encode() + bytes(range(256)))


def _part(name: str, data: bytes, filename: str | None = None) -> bytes:
    disposition = f'form-data; name="{name}"'
    headers = ""
    if filename is not None:
        disposition += f'; filename="{filename}"'
        headers = "Content-Type: text/csv\r\n"
    head = f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n{headers}\r\n"
    return head.encode() + data + b"\r\n"


def _body(*parts: bytes) -> bytes:
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


def _chunks(data: bytes, size: int) -> Iterator[bytes]:
    return iter([data[i : i + size] for i in range(0, len(data), size)])


FULL_BODY = _body(_part("description", b"my movies"), _part("file", FILE_BYTES, "movies.csv"),
                  _part("visibility", b"private" * 20))


@pytest.mark.parametrize("size", [1, 7, 64, len(FULL_BODY)])
def test_yields_exactly_the_file_bytes_and_the_filename(size: int) -> None:
    part = FilePart(CONTENT_TYPE, _chunks(FULL_BODY, size))
    assert part.filename == "movies.csv"
    assert b"".join(part) == FILE_BYTES


def test_file_as_the_only_field() -> None:
    body = _body(_part("file", FILE_BYTES, "only.csv"))
    part = FilePart(CONTENT_TYPE, _chunks(body, 7))
    assert part.filename == "only.csv"
    assert b"".join(part) == FILE_BYTES


def test_fields_after_the_file_are_ignored_and_read_to_the_end() -> None:
    body = _body(_part("file", b"title\nHeat\n", "a.csv"), _part("note", b"x" * 5000))
    chunks = _chunks(body, 7)
    part = FilePart(CONTENT_TYPE, chunks)
    assert b"".join(part) == b"title\nHeat\n"
    assert next(chunks, None) is None  # the whole body was consumed


def test_empty_chunks_are_harmless() -> None:
    pieces = [b""] + [FULL_BODY[i : i + 7] for i in range(0, len(FULL_BODY), 7)] + [b""]
    part = FilePart(CONTENT_TYPE, iter(pieces))
    assert b"".join(part) == FILE_BYTES


def test_empty_file() -> None:
    part = FilePart(CONTENT_TYPE, _chunks(_body(_part("file", b"", "empty.csv")), 1))
    assert part.filename == "empty.csv"
    assert b"".join(part) == b""


def test_file_field_without_a_filename_has_an_empty_name() -> None:
    part = FilePart(CONTENT_TYPE, _chunks(_body(_part("file", b"title\n")), 7))
    assert part.filename == ""
    assert b"".join(part) == b"title\n"


def test_case_and_quotes_in_the_content_type_are_accepted() -> None:
    content_type = f'Multipart/Form-Data; boundary="{BOUNDARY}"'
    part = FilePart(content_type, _chunks(FULL_BODY, 7))
    assert b"".join(part) == FILE_BYTES


def test_missing_file_field_names_file() -> None:
    body = _body(_part("upload", b"title\nHeat\n", "movies.csv"), _part("note", b"x"))
    with pytest.raises(InvalidArgument, match="missing multipart field 'file'"):
        FilePart(CONTENT_TYPE, _chunks(body, 7))


@pytest.mark.parametrize("content_type", [
    "", "text/csv", "application/json", "application/x-www-form-urlencoded",
    "multipart/form-data", "multipart/mixed; boundary=abc",
])
def test_non_multipart_content_type_is_refused(content_type: str) -> None:
    with pytest.raises(InvalidArgument, match="multipart/form-data") as info:
        FilePart(content_type, _chunks(FULL_BODY, 7))
    assert "'file'" in str(info.value)


@pytest.mark.parametrize("cut", [
    len(FULL_BODY) // 2,  # inside the file's bytes
    len(FULL_BODY) - 5,  # inside the closing boundary
    FULL_BODY.index(b"visibility"),  # inside a later field's headers
    30,  # inside the first boundary line
])
def test_truncated_body_is_refused(cut: int) -> None:
    with pytest.raises(InvalidArgument, match="malformed multipart body"):
        part = FilePart(CONTENT_TYPE, _chunks(FULL_BODY[:cut], 7))
        b"".join(part)


def test_body_with_a_different_boundary_is_refused() -> None:
    with pytest.raises(InvalidArgument):
        part = FilePart("multipart/form-data; boundary=other", _chunks(FULL_BODY, 7))
        b"".join(part)
