"""The CLI's rows/s and ETA while it watches a task."""

from __future__ import annotations

import pytest

from marquee_cli.pace import Pace


def test_no_estimate_before_anything_is_known() -> None:
    pace = Pace()
    assert pace.eta_seconds(1000, now=0.0) is None
    assert pace.rows_per_second(fallback=12.5) == 12.5


def test_the_servers_figures_until_there_are_two_reports() -> None:
    pace = Pace()
    pace.add(10.0, 100, 10)
    assert pace.rows_per_second(fallback=7.0) == 7.0
    # The server's ETA, counted down since the report arrived.
    assert pace.eta_seconds(1000, now=12.0, fallback=30.0) == pytest.approx(28.0)
    assert pace.eta_seconds(1000, now=12.0) is None


def test_eta_from_the_recent_byte_rate_counts_down() -> None:
    pace = Pace()
    pace.add(0.0, 0, 0)
    pace.add(10.0, 1000, 500)  # 100 B/s, 50 rows/s
    assert pace.rows_per_second() == pytest.approx(50.0)
    assert pace.eta_seconds(5000, now=10.0) == pytest.approx(40.0)
    assert pace.eta_seconds(5000, now=25.0) == pytest.approx(25.0)
    assert pace.eta_seconds(5000, now=100.0) == 0.0


def test_only_the_window_counts() -> None:
    pace = Pace(window=10.0)
    pace.add(0.0, 0, 0)
    pace.add(10.0, 10_000, 1000)  # fast start: 1000 B/s
    pace.add(20.0, 11_000, 1100)  # then 100 B/s
    pace.add(30.0, 12_000, 1200)
    assert pace.rows_per_second() == pytest.approx(10.0)
    assert pace.eta_seconds(13_000, now=30.0) == pytest.approx(10.0)


def test_counts_going_back_start_the_pace_again() -> None:
    pace = Pace()
    pace.add(0.0, 5000, 500)
    pace.add(10.0, 6000, 600)
    pace.add(20.0, 1000, 100)  # a retried task restarts from its checkpoint
    assert pace.rows_per_second(fallback=3.0) == 3.0


def test_a_finished_file_has_no_time_left() -> None:
    pace = Pace()
    pace.add(0.0, 1000, 10)
    assert pace.eta_seconds(1000, now=1.0) == 0.0
    assert pace.eta_seconds(0, now=1.0) is None
