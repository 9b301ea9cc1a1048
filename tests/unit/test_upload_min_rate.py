"""MinRate: an upload that trickles is ended once its grace period is over; one that keeps up,
or starts slowly within its grace period, is not."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from google.api import httpbody_pb2

from services.upload.server import MinRate, UploadTooSlow


def _enforce(bytes_per_second: int, grace_seconds: float, pieces: list[tuple[float, int]]
             ) -> Iterator[httpbody_pb2.HttpBody]:
    """MinRate over messages of `size` bytes of data, each arriving at second `at`."""
    clock = iter([0.0, *(at for at, _ in pieces)])
    rate = MinRate(bytes_per_second, grace_seconds, clock=lambda: next(clock))
    return rate.enforce(httpbody_pb2.HttpBody(data=b"x" * size) for _, size in pieces)


def test_an_upload_that_keeps_up_passes() -> None:
    pieces = [(float(t), 1000) for t in range(1, 60)]
    assert len(list(_enforce(900, 5, pieces))) == len(pieces)


def test_a_slow_start_is_forgiven_within_the_grace_period() -> None:
    assert len(list(_enforce(1000, 5, [(4.0, 10), (6.0, 100_000)]))) == 2


def test_a_trickle_is_ended_after_the_grace_period() -> None:
    pieces = [(float(t), 10) for t in range(1, 60)]
    with pytest.raises(UploadTooSlow, match=r"upload too slow: .* at least 1000 bytes per second"):
        list(_enforce(1000, 5, pieces))


def test_zero_turns_the_check_off() -> None:
    pieces = [(t * 100.0, 1) for t in range(1, 10)]
    assert len(list(_enforce(0, 0, pieces))) == len(pieces)
