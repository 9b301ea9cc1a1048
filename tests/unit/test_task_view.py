"""A task as users see it: pace() (percent, rate, time left), a stored document as a record, and
the proto and REST forms with the owner's name as `user`."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pytest
from bson import ObjectId

from services.task.records import Progress, RejectedRow, Task
from services.task.repository import task_from_document
from services.task.server import _rest_json, to_proto
from services.task.service import pace

T0 = datetime(2024, 5, 1, 12, 0, 0)  # naive UTC, as the repository stores it
TASK_ID = "6632a1f0c2a4b5d6e7f80912"


NOTHING_YET = Progress()


def _task(status: str, progress: Progress = NOTHING_YET, **fields: Any) -> Task:
    task = Task(id=TASK_ID, user_id="u1", username="johndoe", kind="ingest_csv", file_id="f1",
                file_path="f1.csv", original_name="movies.csv", bytes_total=1000,
                created_at=T0, updated_at=T0, status=status, progress=progress)
    return replace(task, **fields)


# --- pace ---------------------------------------------------------------------------------------

def test_pending_task_has_zero_pace() -> None:
    shown = pace(_task("pending"))
    assert (shown.percent, shown.rows_per_second, shown.eta_seconds) == (0.0, 0.0, 0.0)


def test_processing_task_percent_rate_and_eta() -> None:
    task = _task("processing", Progress(rows_read=500, rows_imported=480, rows_rejected=20,
                                        bytes_processed=250),
                 started_at=T0, updated_at=T0 + timedelta(seconds=10))
    shown = pace(task)
    assert shown.percent == 25.0
    assert shown.rows_per_second == 50.0  # 500 rows in 10 s
    assert shown.eta_seconds == 30.0  # 750 bytes left at 25 bytes/s


def test_rounding() -> None:
    task = _task("processing", Progress(rows_read=1, bytes_processed=1), bytes_total=3,
                 started_at=T0, updated_at=T0 + timedelta(seconds=3))
    shown = pace(task)
    assert shown.percent == 33.33
    assert shown.rows_per_second == 0.3
    assert shown.eta_seconds == 6.0


def test_processing_task_without_bytes_yet_has_a_rate_but_no_eta() -> None:
    task = _task("processing", Progress(rows_read=40), started_at=T0,
                 updated_at=T0 + timedelta(seconds=4))
    shown = pace(task)
    assert shown.percent == 0.0
    assert shown.rows_per_second == 10.0
    assert shown.eta_seconds == 0.0


def test_just_started_task_divides_by_nothing() -> None:
    task = _task("processing", Progress(rows_read=40, bytes_processed=10), started_at=T0,
                 updated_at=T0)
    shown = pace(task)
    assert shown.rows_per_second == 0.0
    assert shown.eta_seconds == 0.0
    assert shown.percent == 1.0


def test_done_task_is_100_percent_with_rate_over_the_whole_run_and_no_eta() -> None:
    task = _task("done", Progress(rows_read=9000, rows_imported=8990, rows_rejected=10,
                                  bytes_processed=990),
                 started_at=T0, updated_at=T0 + timedelta(seconds=100),
                 finished_at=T0 + timedelta(seconds=60))
    shown = pace(task)
    assert shown.percent == 100.0
    assert shown.rows_per_second == 150.0  # finished_at wins over updated_at
    assert shown.eta_seconds == 0.0


def test_failed_task_keeps_its_byte_percent_and_has_no_eta() -> None:
    task = _task("failed", Progress(rows_read=100, bytes_processed=400), started_at=T0,
                 finished_at=T0 + timedelta(seconds=20))
    shown = pace(task)
    assert shown.percent == 40.0
    assert shown.rows_per_second == 5.0
    assert shown.eta_seconds == 0.0


def test_percent_is_capped_at_100_and_unknown_size_is_0() -> None:
    assert pace(_task("processing", Progress(bytes_processed=1500))).percent == 100.0
    assert pace(_task("processing", Progress(bytes_processed=1500), bytes_total=0)).percent == 0


@pytest.mark.parametrize("status", ["pending", "processing"])
def test_requeued_active_task_reports_rate_from_its_last_run(status: str) -> None:
    task = _task(status, Progress(rows_read=200, bytes_processed=500), started_at=T0,
                 updated_at=T0 + timedelta(seconds=20))
    shown = pace(task)
    assert shown.rows_per_second == 10.0
    assert shown.eta_seconds == 20.0  # 500 bytes left at 25 bytes/s


# --- stored documents ---------------------------------------------------------------------------

def _document(**fields: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "_id": ObjectId(TASK_ID), "user": "u1", "kind": "ingest_csv", "file_id": "f1",
        "file_path": "f1.csv", "original_name": "movies.csv", "bytes_total": 1000,
        "status": "processing", "progress": {}, "rejected_sample": [], "error": "",
        "attempts": 1, "cancel_requested": False, "created_at": T0, "updated_at": T0,
    }
    doc.update(fields)
    return doc


def test_a_document_from_before_usernames_and_retention_reads_with_defaults() -> None:
    task = task_from_document(_document())
    assert (task.id, task.user_id, task.username) == (TASK_ID, "u1", "")
    assert task.file_deleted is False
    assert task.progress == Progress()


def test_stored_progress_counts_are_ints_and_missing_ones_are_zero() -> None:
    task = task_from_document(_document(progress={"rows_read": 7.0, "bytes_processed": 3},
                                        username="johndoe"))
    assert task.progress == Progress(rows_read=7, bytes_processed=3)
    assert type(task.progress.rows_read) is int
    assert task.username == "johndoe"
    assert task_from_document(_document(progress=None)).progress == Progress()


# --- proto and REST -----------------------------------------------------------------------------

def test_the_task_shows_its_owners_name_as_user_and_the_id_as_user_id() -> None:
    task = _task("processing", Progress(rows_read=500, bytes_processed=250), started_at=T0,
                 updated_at=T0 + timedelta(seconds=10),
                 rejected_sample=(RejectedRow(2, "title is empty", ",x"),))
    message = to_proto(task)
    assert (message.user, message.user_id, message.task_id) == ("johndoe", "u1", TASK_ID)
    assert (message.rows_read, message.bytes_processed, message.percent) == (500, 250, 25.0)
    assert message.rejected_sample[0].reason == "title is empty"
    assert not message.HasField("finished_at")
    shown = _rest_json(message)
    assert (shown["user"], shown["user_id"], shown["status"]) == ("johndoe", "u1", "processing")
    assert shown["started_at"] == "2024-05-01T12:00:00Z"
    assert shown["bytes_total"] == "1000"  # int64 in proto JSON, as before


def test_a_task_from_before_usernames_shows_an_empty_user() -> None:
    shown = _rest_json(to_proto(task_from_document(_document())))
    assert (shown["user"], shown["user_id"]) == ("", "u1")
