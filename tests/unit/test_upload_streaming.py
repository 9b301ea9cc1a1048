"""The upload service's per-byte work: the hash of a streamed file and the read-ahead that
receives chunks while earlier ones are stored."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator

import pytest

from services.upload.hashing import BackgroundSha256
from services.upload.read_ahead import ReadAhead


def test_sha256_matches_hashing_the_whole_file() -> None:
    data = ("id,title\n" + "".join(f"{i},Amélie {i} 東京\n" for i in range(50_000))).encode()
    with BackgroundSha256() as sha:
        for i in range(0, len(data), 65_537):
            sha.update(data[i : i + 65_537])
        assert sha.hexdigest() == hashlib.sha256(data).hexdigest()


def test_read_ahead_yields_every_chunk_in_order() -> None:
    chunks = [bytes([i % 256]) * (i + 1) for i in range(200)]
    with ReadAhead(iter(chunks), max_bytes=300) as ahead:
        assert list(ahead) == chunks


def test_read_ahead_raises_the_sources_error_after_the_chunks_before_it() -> None:
    class Broken(Exception):
        pass

    def source() -> Iterator[bytes]:
        yield b"a"
        yield b"b"
        raise Broken("client went away")

    got = []
    with ReadAhead(source()) as ahead, pytest.raises(Broken, match="client went away"):
        for chunk in ahead:
            got.append(chunk)
    assert got == [b"a", b"b"]


def test_read_ahead_holds_at_most_max_bytes_and_stops_when_the_consumer_stops() -> None:
    produced = 0
    finished = threading.Event()

    def endless() -> Iterator[bytes]:
        nonlocal produced
        try:
            while True:
                produced += 1
                yield b"x" * 100
        finally:
            finished.set()

    with ReadAhead(endless(), max_bytes=250) as ahead:
        assert next(iter(ahead)) == b"x" * 100
        time.sleep(0.2)
        # One taken, three held (the third went in while 200 < 250), one waiting to go in.
        assert produced <= 5
    assert finished.wait(5), "the read-ahead thread kept pulling after the consumer left"


def test_a_chunk_larger_than_the_limit_still_passes_alone() -> None:
    chunks = [b"a" * 1000, b"b" * 1000]
    with ReadAhead(iter(chunks), max_bytes=10) as ahead:
        assert list(ahead) == chunks
