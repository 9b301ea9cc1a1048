"""Unit tests for services/task/service.py view(): progress, percent, rate and time left."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from bson import ObjectId

from services.task.service import view

T0 = datetime(2024, 5, 1, 12, 0, 0)  # naive UTC, as the repository stores it
TASK_ID = ObjectId("6632a1f0c2a4b5d6e7f80912")


def _task(status: str, progress: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
    task: dict[str, Any] = {
        "_id": TASK_ID, "user": "u1", "kind": "ingest_csv", "file_id": "f1",
        "original_name": "movies.csv", "status": status, "progress": progress or {},
        "bytes_total": 1000, "attempts": 0, "created_at": T0, "updated_at": T0,
    }
    task.update(fields)
    return task


def test_pending_task_has_zero_progress() -> None:
    shown = view(_task("pending"))
    assert shown["task_id"] == "6632a1f0c2a4b5d6e7f80912"
    assert (shown["rows_read"], shown["rows_imported"], shown["rows_rejected"],
            shown["bytes_processed"]) == (0, 0, 0, 0)
    assert shown["percent"] == 0.0
    assert shown["rows_per_second"] == 0.0
    assert shown["eta_seconds"] == 0.0
    assert shown["status"] == "pending"
    assert shown["_id"] == TASK_ID  # the stored fields are kept


def test_processing_task_percent_rate_and_eta() -> None:
    task = _task("processing",
                 {"rows_read": 500, "rows_imported": 480, "rows_rejected": 20,
                  "bytes_processed": 250},
                 started_at=T0, updated_at=T0 + timedelta(seconds=10))
    shown = view(task)
    assert shown["percent"] == 25.0
    assert shown["rows_per_second"] == 50.0  # 500 rows in 10 s
    assert shown["eta_seconds"] == 30.0  # 750 bytes left at 25 bytes/s
    assert (shown["rows_imported"], shown["rows_rejected"]) == (480, 20)


def test_rounding() -> None:
    task = _task("processing", {"rows_read": 1, "bytes_processed": 1}, bytes_total=3,
                 started_at=T0, updated_at=T0 + timedelta(seconds=3))
    shown = view(task)
    assert shown["percent"] == 33.33
    assert shown["rows_per_second"] == 0.3
    assert shown["eta_seconds"] == 6.0


def test_processing_task_without_bytes_yet_has_a_rate_but_no_eta() -> None:
    task = _task("processing", {"rows_read": 40}, started_at=T0,
                 updated_at=T0 + timedelta(seconds=4))
    shown = view(task)
    assert shown["percent"] == 0.0
    assert shown["rows_per_second"] == 10.0
    assert shown["eta_seconds"] == 0.0


def test_just_started_task_divides_by_nothing() -> None:
    task = _task("processing", {"rows_read": 40, "bytes_processed": 10}, started_at=T0,
                 updated_at=T0)
    shown = view(task)
    assert shown["rows_per_second"] == 0.0
    assert shown["eta_seconds"] == 0.0
    assert shown["percent"] == 1.0


def test_done_task_is_100_percent_with_rate_over_the_whole_run_and_no_eta() -> None:
    task = _task("done", {"rows_read": 9000, "rows_imported": 8990, "rows_rejected": 10,
                          "bytes_processed": 990},
                 started_at=T0, updated_at=T0 + timedelta(seconds=100),
                 finished_at=T0 + timedelta(seconds=60))
    shown = view(task)
    assert shown["percent"] == 100.0
    assert shown["rows_per_second"] == 150.0  # finished_at wins over updated_at
    assert shown["eta_seconds"] == 0.0


def test_failed_task_keeps_its_byte_percent_and_has_no_eta() -> None:
    task = _task("failed", {"rows_read": 100, "bytes_processed": 400}, started_at=T0,
                 finished_at=T0 + timedelta(seconds=20))
    shown = view(task)
    assert shown["percent"] == 40.0
    assert shown["rows_per_second"] == 5.0
    assert shown["eta_seconds"] == 0.0


def test_percent_is_capped_at_100_and_unknown_size_is_0() -> None:
    over = view(_task("processing", {"bytes_processed": 1500}))
    assert over["percent"] == 100.0
    unknown = view(_task("processing", {"bytes_processed": 1500}, bytes_total=0))
    assert unknown["percent"] == 0.0
    missing = _task("processing", {"bytes_processed": 1500})
    del missing["bytes_total"]
    assert view(missing)["percent"] == 0.0


@pytest.mark.parametrize("status", ["pending", "processing"])
def test_requeued_active_task_reports_rate_from_its_last_run(status: str) -> None:
    task = _task(status, {"rows_read": 200, "bytes_processed": 500}, started_at=T0,
                 updated_at=T0 + timedelta(seconds=20))
    shown = view(task)
    assert shown["rows_per_second"] == 10.0
    assert shown["eta_seconds"] == 20.0  # 500 bytes left at 25 bytes/s


def test_progress_values_are_ints_and_missing_ones_are_zero() -> None:
    shown = view(_task("processing", {"rows_read": 7.0, "bytes_processed": 3}))
    assert shown["rows_read"] == 7 and type(shown["rows_read"]) is int
    assert shown["rows_imported"] == 0
    missing = _task("pending")
    del missing["progress"]
    assert view(missing)["rows_read"] == 0
