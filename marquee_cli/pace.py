"""Rows per second and time left for a running task, from what the watch stream reports.

The task service's own figures average over the whole run and change only when a batch is
committed; a person watching wants the recent pace, and an ETA that counts down between
reports. So the CLI keeps the reports of the last WINDOW_SECONDS and measures over them,
falling back to the server's figures until it has two."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

WINDOW_SECONDS = 20.0


@dataclass(frozen=True)
class Sample:
    # Monotonic seconds when the report arrived.
    at: float
    bytes_done: int
    rows_read: int


class Pace:
    def __init__(self, window: float = WINDOW_SECONDS) -> None:
        self.window = window
        self._samples: deque[Sample] = deque()

    def add(self, at: float, bytes_done: int, rows_read: int) -> None:
        if self._samples and bytes_done < self._samples[-1].bytes_done:
            # A retried task starts its counts again from its checkpoint: old pace is wrong.
            self._samples.clear()
        self._samples.append(Sample(at, bytes_done, rows_read))
        # Keep one sample older than the window, so the span covers the whole window.
        while len(self._samples) > 2 and self._samples[1].at <= at - self.window:
            self._samples.popleft()

    def _span(self) -> tuple[Sample, Sample] | None:
        if len(self._samples) < 2:
            return None
        first, last = self._samples[0], self._samples[-1]
        return (first, last) if last.at > first.at else None

    def rows_per_second(self, fallback: float = 0.0) -> float:
        span = self._span()
        if span is None:
            return fallback
        first, last = span
        return (last.rows_read - first.rows_read) / (last.at - first.at)

    def eta_seconds(self, bytes_total: int, now: float, fallback: float = 0.0) -> float | None:
        """Seconds until the last byte at the recent byte rate, counted down from the last
        report to `now`; the server's estimate (`fallback`, counted down the same way) before
        there is a pace of our own; None when it cannot be told (nothing processed yet, or
        no total)."""
        if not self._samples or bytes_total <= 0:
            return None
        last = self._samples[-1]
        left = max(0, bytes_total - last.bytes_done)
        span = self._span()
        if span is not None and span[1].bytes_done > span[0].bytes_done:
            first = span[0]
            rate = (last.bytes_done - first.bytes_done) / (last.at - first.at)
            eta = left / rate
        elif fallback > 0:
            eta = fallback
        else:
            return None if left else 0.0
        return max(0.0, eta - (now - last.at))
