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
    with ReadAhead(iter(chunks), depth=3) as ahead:
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


def test_read_ahead_stays_bounded_and_stops_when_the_consumer_stops() -> None:
    produced = 0
    finished = threading.Event()

    def endless() -> Iterator[bytes]:
        nonlocal produced
        try:
            while True:
                produced += 1
                yield b"x"
        finally:
            finished.set()

    with ReadAhead(endless(), depth=2) as ahead:
        assert next(iter(ahead)) == b"x"
        time.sleep(0.2)
        assert produced <= 4  # one taken, two queued, one waiting to be queued
    assert finished.wait(5), "the read-ahead thread kept pulling after the consumer left"
