"""Property tests of the streamed multipart parsing (services/upload/multipart_stream.py):
whatever body and content type a client sends, in whatever pieces, the result is the file's
exact bytes or INVALID_ARGUMENT (never another exception, which would be a 500), in time that
grows linearly with the body."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import multipart
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.common.errors import InvalidArgument
from services.upload.multipart_stream import MAX_PART_HEADER_BYTES, FilePart
from tests.fuzz.linear_time import assert_linear

BOUNDARY = "----MarqueeFuzz7MA4YWxkTrZu0gW"
CONTENT_TYPE = f"multipart/form-data; boundary={BOUNDARY}"
# A deadline catches a pathological example, not a busy machine: 300 ms flaked at a load
# average of 4 (the time's growth is measured by the linear-time tests).
FAST = settings(max_examples=300, deadline=timedelta(seconds=2))

# File names as browsers send them (WHATWG: `"`, CR and LF percent-encoded); `%` and `\` are
# left out because the parser's legacy unquoting would read them back differently.
names = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="%\\"),
                max_size=200)


def _part(name: str, data: bytes, filename: str | None = None) -> bytes:
    disposition = f"form-data; name={multipart.content_disposition_quote(name)}"
    if filename is not None:
        disposition += f"; filename={multipart.content_disposition_quote(filename)}"
    return (f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + data
            + b"\r\n")


def _body(*parts: bytes) -> bytes:
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


def _pieces(data: bytes, sizes: list[int]) -> Iterator[bytes]:
    at = 0
    for size in sizes:
        yield data[at : at + size]
        at += size
    yield data[at:]


def _read(content_type: str, pieces: Iterator[bytes]) -> tuple[str, bytes] | None:
    """(file name, file bytes), or None when the body was refused as the client's error."""
    try:
        part = FilePart(content_type, pieces)
        return part.filename, b"".join(part)
    except InvalidArgument:
        return None


@FAST
@given(st.binary(max_size=3000), names, st.lists(st.integers(0, 700), max_size=20),
       st.lists(st.tuples(st.text(max_size=10), st.binary(max_size=200)), max_size=3))
def test_the_file_comes_back_exactly_in_any_pieces(data: bytes, filename: str,
                                                   sizes: list[int],
                                                   others: list[tuple[str, bytes]]) -> None:
    fields = [_part(name or "x", value) for name, value in others if name != "file"]
    body = _body(*fields, _part("file", data, filename), *fields)
    assert _read(CONTENT_TYPE, _pieces(body, sizes)) == (filename, data)


@FAST
@given(st.binary(max_size=4000), st.lists(st.integers(0, 500), max_size=10))
def test_any_bytes_are_a_file_or_invalid_argument(body: bytes, sizes: list[int]) -> None:
    _read(CONTENT_TYPE, _pieces(body, sizes))


@FAST
@given(st.binary(max_size=500), st.lists(st.tuples(st.integers(0, 10_000), st.binary(max_size=8)),
                                         min_size=1, max_size=8))
def test_a_damaged_body_is_a_file_or_invalid_argument(data: bytes,
                                                      damage: list[tuple[int, bytes]]) -> None:
    body = bytearray(_body(_part("file", data, "m.csv")))
    for at, junk in damage:
        at %= len(body)
        body[at : at + len(junk)] = junk
    _read(CONTENT_TYPE, iter([bytes(body)]))


@FAST
@given(st.text(max_size=3000))
def test_any_content_type_is_accepted_or_invalid_argument(content_type: str) -> None:
    _read(content_type, iter([_body(_part("file", b"id\n1\n", "m.csv"))]))


@FAST
@given(st.binary(max_size=200))
def test_a_file_name_in_any_encoding_is_shown_not_refused(raw_name: bytes) -> None:
    raw_name = raw_name.translate(None, b'\r\n"%\\')
    head = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"")
    body = head.encode() + raw_name + b"\"\r\n\r\nid\n" + f"\r\n--{BOUNDARY}--\r\n".encode()
    result = _read(CONTENT_TYPE, iter([body]))
    assert result == (raw_name.decode("utf-8", errors="replace"), b"id\n")


def test_a_file_name_over_the_header_limit_is_invalid_argument_saying_so() -> None:
    body = _body(_part("file", b"id\n", "x" * 5000))
    with pytest.raises(InvalidArgument, match=f"{MAX_PART_HEADER_BYTES} bytes.*shorter file "):
        FilePart(CONTENT_TYPE, iter([body]))


@pytest.mark.parametrize("content_type", [
    "multipart/form-data; boundary=" + "b" * 71,
    "multipart/form-data; boundary=ok; x=" + "y" * 2000,
    "multipart/form-data; boundary=\"a\nb\"",
])
def test_oversized_or_broken_boundaries_are_invalid_argument(content_type: str) -> None:
    with pytest.raises(InvalidArgument):
        FilePart(content_type, iter([b""]))


def _file_of(pattern: bytes) -> object:
    def make(size: int) -> bytes:
        return _body(_part("file", pattern * (size // len(pattern)), "m.csv"))

    return make


@pytest.mark.parametrize("pattern", [
    b"a", b"\r", b"\r\n--", f"\r\n--{BOUNDARY[:-1]}".encode(), b"\r\n" + b"-" * 40,
])
@pytest.mark.parametrize("piece", [1 << 10, 1 << 16])
def test_parsing_time_grows_linearly_with_the_body(pattern: bytes, piece: int) -> None:
    def parse(body: bytes) -> None:
        pieces = (body[i : i + piece] for i in range(0, len(body), piece))
        for _ in FilePart(CONTENT_TYPE, pieces):
            pass

    assert_linear(_file_of(pattern), parse, 1 << 20)  # type: ignore[arg-type]


def test_junk_before_the_first_boundary_costs_linear_time() -> None:
    def parse(body: bytes) -> None:
        pieces = (body[i : i + 1024] for i in range(0, len(body), 1024))
        assert _read(CONTENT_TYPE, pieces) is not None

    # Carriage returns could each start the delimiter's CRLF; a preamble must end with one.
    assert_linear(lambda size: b"\r" * size + b"\r\n" + _body(_part("file", b"id\n", "m.csv")),
                  parse, 1 << 20)
