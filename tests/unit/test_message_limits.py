"""Each service's receive limit (`ServiceSpec.max_message_bytes`) holds the largest message its
callers send, computed from the senders' own bounds, so that changing one of them (a chunk, a
batch, a row) without the other fails here rather than in a task that gives up."""

from __future__ import annotations

import pytest
from google.api import httpbody_pb2

from marquee.catalog.v1 import catalog_pb2
from marquee.task.v1 import task_pb2
from marquee.upload.v1 import upload_pb2
from services.common import registry
from services.common.settings import Settings
from services.worker.csv_source import MAX_RAW
from services.worker.ingest import MAX_BATCH_BYTES, PIPELINE_DEPTH

CHUNK = 1 << 20  # what native clients send, and the most that Envoy forwards at once
LONGEST_UTF8_CHAR = "\U0001f600"  # 4 bytes


@pytest.fixture
def defaults(monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name in ("INGEST_BATCH_SIZE", "CSV_MAX_ROW_CHARS"):
        monkeypatch.delenv(name, raising=False)
    return Settings.from_env()


def test_upload_takes_a_chunk_as_clients_and_envoy_send_it() -> None:
    largest = max(upload_pb2.UploadFileRequest(chunk=bytes(CHUNK)).ByteSize(),
                  httpbody_pb2.HttpBody(content_type="text/csv", data=bytes(CHUNK)).ByteSize())
    assert largest <= registry.spec("upload").max_message_bytes


def test_catalog_takes_a_full_batch_and_its_last_movie(defaults: Settings) -> None:
    # A batch ends once it passes MAX_BATCH_BYTES, so it holds at most one movie beyond it:
    # one CSV row, each character at most 4 bytes, plus the fields' framing.
    last_movie = catalog_pb2.Movie(overview=LONGEST_UTF8_CHAR * defaults.csv_max_row_chars)
    largest = MAX_BATCH_BYTES + last_movie.ByteSize() + (64 << 10)
    assert largest <= registry.spec("catalog").max_message_bytes


def test_task_takes_every_row_rejected_since_the_last_report(defaults: Settings) -> None:
    # A report carries the rejections of the batches committed since the last one: at most
    # PIPELINE_DEPTH of them when the import drains.
    row = task_pb2.RejectedRow(line=2**31 - 1, reason="r" * 200, raw=LONGEST_UTF8_CHAR * MAX_RAW)
    rows = PIPELINE_DEPTH * defaults.ingest_batch_size
    largest = rows * (row.ByteSize() + 3) + (1 << 10)  # each row's tag and length; the rest
    assert largest <= registry.spec("task").max_message_bytes


def test_every_other_service_takes_one_megabyte() -> None:
    sized = {"upload", "catalog", "task"}
    assert {s.name: s.max_message_bytes for s in registry.SERVICES if s.name not in sized} == \
        {s.name: 1 << 20 for s in registry.SERVICES if s.name not in sized}
