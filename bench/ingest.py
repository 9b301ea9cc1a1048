"""Ingestion: end to end through the stack, against the database's own insert ceiling, the
parser alone, and a naive load-everything baseline."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pymongo import ReplaceOne
from pymongo.collection import Collection
from pymongo.database import Database

from bench.memory import peaks_mb, reset_peaks
from bench.stack import Api
from bench.transfer import CHUNK, grpc_upload, post_multipart
from devstack.stack import Stack
from services.catalog.records import Movie
from services.catalog.repository import VOTE_FIELDS, index_specs, search_fields
from services.common.settings import Settings
from services.worker.csv_source import ByteStream, CsvLimits, is_utf8, records
from services.worker.movie_rows import RowRejected, parse_header, parse_row

BATCH = 1000


def end_to_end(api: Api, stack: Stack, path: Path, rows: int, timeout: float, via: str = "rest"
               ) -> dict[str, Any]:
    """From the first upload byte (REST multipart, or native gRPC, both through Envoy) until
    GET /task/{id} says done; exact counts; peak RSS of every stack process over the run."""
    reset_peaks(stack)
    start = time.perf_counter()
    if via == "rest":
        upload_s, r = post_multipart(api.http, api.base + "/files/upload", path, path.name,
                                     headers=api.headers)
        if r.status_code != 202:
            raise RuntimeError(f"upload answered {r.status_code}: {r.text[:300]}")
        task_id = str(r.json()["task_id"])
    else:
        upload_s, response = grpc_upload(f"127.0.0.1:{stack.ports['gateway']}", api.metadata,
                                         path, path.name)
        task_id = response.task_id
    task = api.wait_task(task_id, timeout)
    seconds = time.perf_counter() - start
    peaks = peaks_mb(stack)
    counts = {k: int(task.get(k, 0)) for k in ("rows_read", "rows_imported", "rows_rejected")}
    if task["status"] != "done" or counts != {"rows_read": rows, "rows_imported": rows,
                                              "rows_rejected": 0}:
        raise RuntimeError(f"ingestion of {rows} rows ended {task['status']} with {counts}: "
                           f"{task.get('error')}")
    return {"e2e_s": round(seconds, 2), "upload_s": round(upload_s, 2),
            "upload_mb_per_s": round(path.stat().st_size / 2**20 / upload_s, 1),
            "e2e_rows_per_s": round(rows / seconds, 1), "peak_rss_mb": peaks}


def _file_chunks(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            yield chunk


def stored_doc(row: dict[str, Any], now: datetime) -> dict[str, Any]:
    """A parsed row as the catalog stores it (services/catalog/server.py doc_from_proto, plus
    the repository's updated_at and zero vote counts; `with_search_fields` adds the rest)."""
    release = row["release_date"]
    doc = {"_id": row["id"], "title": row["title"], "original_language": row["original_language"],
           "overview": row["overview"], "genre": row["genre"], "release_date": release,
           "release_year": release.year if release else None, "popularity": row["popularity"],
           "vote_average": row["vote_average"], "vote_count": row["vote_count"],
           "updated_at": now, **dict.fromkeys(VOTE_FIELDS, 0)}
    if row["extra"]:
        doc["extra"] = row["extra"]
    return doc


def with_search_fields(doc: dict[str, Any]) -> dict[str, Any]:
    """The words and weighted rating the catalog computes at import (not the worker's work, so
    not part of the parse-only rate)."""
    return {**doc, **search_fields(Movie(doc["_id"], doc["title"], overview=doc["overview"],
                                         vote_average=doc["vote_average"],
                                         vote_count=doc["vote_count"]))}


def parsed_batches(path: Path, limit: int | None = None, size: int = BATCH
                   ) -> Iterator[list[dict[str, Any]]]:
    """The file through the worker's own reader and row parser, as stored documents."""
    rows = records(ByteStream(_file_chunks(path)), lambda: is_utf8(_file_chunks(path)),
                   CsvLimits.from_settings(Settings.from_env()))
    header = parse_header(next(rows).fields)
    now = datetime.now(UTC).replace(tzinfo=None)
    batch: list[dict[str, Any]] = []
    taken = 0
    for record in rows:
        if limit is not None and taken >= limit:
            break
        try:
            batch.append(stored_doc(parse_row(header, record.fields), now))
        except RowRejected:
            continue
        taken += 1
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def parse_rate(path: Path) -> dict[str, Any]:
    start = time.perf_counter()
    n = sum(len(b) for b in parsed_batches(path))
    seconds = time.perf_counter() - start
    return {"parse_rows": n, "parse_rows_per_s": round(n / seconds, 1)}


def fresh_collection(db: Database, name: str) -> Collection:
    """A new collection with the catalog's indexes (services/catalog/repository.py)."""
    db.drop_collection(name)
    coll = db[name]
    for name, keys in index_specs().items():
        coll.create_index(keys, name=name)
    return coll


def ceiling(db: Database, path: Path, name: str, *, upsert: bool, limit: int | None = None
            ) -> tuple[int, float]:
    """(rows written, seconds spent in the writes only): plain insert_many(ordered=False) or
    ReplaceOne upserts, in batches of 1000, into a fresh collection with the same indexes."""
    coll = fresh_collection(db, name)
    written, seconds = 0, 0.0
    try:
        for parsed in parsed_batches(path, limit):
            batch = [with_search_fields(d) for d in parsed]
            start = time.perf_counter()
            if upsert:
                coll.bulk_write([ReplaceOne({"_id": d["_id"]}, d, upsert=True) for d in batch],
                                ordered=False)
            else:
                coll.insert_many(batch, ordered=False)
            seconds += time.perf_counter() - start
            written += len(batch)
        if coll.estimated_document_count() != written:
            raise RuntimeError(f"{name}: wrote {written} rows but the collection has "
                               f"{coll.estimated_document_count()}")
    finally:
        db.drop_collection(name)
    return written, seconds


def fill(coll: Collection, path: Path, log: Callable[[str], None]) -> dict[str, Any]:
    """Puts the file's movies straight into the catalog's collection, in the form an import
    stores (the parser, the row rules and the search fields are the catalog's own): how reads,
    searches and recommendations are measured at a size whose import takes hours. Timed, with
    the rate, which is the database's own; the embedded one falls to ~60 movies/s by 60k
    movies (BENCHMARKS.md, "1.1M movies"), so 1.1M takes a real mongod (MONGO_URI)."""
    written, start = 0, time.perf_counter()
    for parsed in parsed_batches(path):
        coll.insert_many([with_search_fields(d) for d in parsed], ordered=False)
        written += len(parsed)
        if written % 10_000 < BATCH:
            log(f"fill: {written:,} movies in {time.perf_counter() - start:,.0f} s")
    seconds = time.perf_counter() - start
    return {"movies": written, "seconds": round(seconds, 1),
            "movies_per_s": round(written / seconds, 1)}


def naive(mongo_uri: str, db_name: str, path: Path, sample: int | None) -> dict[str, Any]:
    """pandas.read_csv of the whole file, to_dict("records"), one insert_many, in a separate
    process so that its peak memory is its own (bench/naive.py)."""
    argv = [sys.executable, "-m", "bench.naive", mongo_uri, db_name, str(path),
            str(sample or 0)]
    out = subprocess.run(argv, check=True, capture_output=True, text=True, timeout=7200)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))
