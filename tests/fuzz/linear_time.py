"""A check that work grows linearly with its input: doubling the input must not quadruple the
time. Quadratic work (a list searched per item, a buffer copied per chunk) is what lets a
client's input of a few megabytes hold a CPU for minutes."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def best_seconds(run: Callable[[], object], repeats: int = 3) -> float:
    """The fastest of `repeats` runs: the least disturbed by whatever else the machine does."""
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return best


def assert_linear(make: Callable[[int], T], run: Callable[[T], object], size: int) -> None:
    """`run` on an input of 2 * `size` takes less than 3 times as long as on `size` (twice as
    long is linear; 4 times, quadratic). Choose `size` so that a run takes tens of milliseconds,
    above the timer's noise."""
    small, large = make(size), make(2 * size)
    t_small = best_seconds(lambda: run(small))
    t_large = best_seconds(lambda: run(large))
    assert t_large < 3 * t_small + 0.005, (
        f"{t_small:.4f} s for size {size}, {t_large:.4f} s for {2 * size}: not linear")
