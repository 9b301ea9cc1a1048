"""python -m bench --tiers quick|full: start a stack, measure, stop it, write and print results.

    --keep            keep the temporary directory (stack data, logs, generated files)
    --rows N[,N...]   ingest these row counts instead of the tier's (e.g. only 1000000)
    --fill N          first put N generated movies straight into the catalog's collection
                      (bench/ingest.py fill), to measure reads at a size whose import takes
                      hours (1.1M movies need a real mongod: set MONGO_URI)
    --parts P[,P...]  measure only these of ingest, reads, recommend, votes, upload, scale,
                      auth (default: all; reads, recommend and votes run after each
                      ingestion tier)
    --markdown FILE   print FILE's results as Markdown tables (for BENCHMARKS.md) and exit
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests
from pymongo import MongoClient

from bench import auth, csv_ops, ingest, machine, recommend, report, votes
from bench.datagen import write_csv
from bench.memory import cpu_seconds, peaks_mb, reset_peaks
from bench.reads import Budget, Reader
from bench.stack import Api, running_stack
from bench.transfer import (
    GrpcSink,
    RawSink,
    grpc_upload,
    post_multipart,
    upload_in_process,
)
from devstack.stack import Stack

RESULTS = Path(__file__).resolve().parent / "results"
MIB = 2**20
ID_BASES = {10_000: 100_000_000, 100_000: 200_000_000, 1_000_000: 300_000_000}
FILL_ID_BASE = 400_000_000
UPLOAD_ID_BASE = 900_000_000
SCALE_ID_BASE = 1_000_000_000
PARTS = ("ingest", "reads", "recommend", "votes", "upload", "scale", "auth", "csvops")
# Cached GET /recommendations: requests per concurrency level, within this many seconds.
RECOMMEND_BUDGET = Budget(500, 20, 60)


@dataclass(frozen=True)
class Tier:
    ingest_rows: tuple[int, ...]
    upload_bytes: int
    upload_repeats: int
    reads: Budget | None  # None: no read measurements
    sample_rows: int  # cap of the upsert-ceiling and naive runs
    # Files of at least these sizes ingested to done for the memory-flatness figures, through
    # REST; the largest also through native gRPC.
    scale_bytes: tuple[int, ...] = ()
    # Files of these sizes for the CSV operations against pandas and the shell (csvops).
    csvops_bytes: tuple[int, ...] = (10 * MIB, 100 * MIB)


TIERS = {
    "quick": Tier((10_000, 100_000), 100 * MIB, 3, Budget(200, 6, 20), 20_000),
    "full": Tier((10_000, 100_000, 1_000_000), 1024 * MIB, 2, Budget(200, 10, 60), 100_000,
                 scale_bytes=(10 * MIB, 100 * MIB, 1024 * MIB),
                 csvops_bytes=(10 * MIB, 100 * MIB, 1024 * MIB)),
    # A minute-long run of every code path, for working on the benchmark itself.
    "smoke": Tier((2_000,), 8 * MIB, 1, Budget(20, 2, 5), 1_000, scale_bytes=(MIB, 2 * MIB),
                  csvops_bytes=(MIB,)),
}

_start = time.monotonic()


def log(message: str) -> None:
    print(f"[{time.monotonic() - _start:7.1f}s] {message}", file=sys.stderr, flush=True)


def _catalog_count(db: Any, lo: int, hi: int) -> int:
    """Movies with ids lo..hi-1 (all of one length, so string order is numeric order)."""
    assert len(str(lo)) == len(str(hi - 1))
    return int(db["catalog_movies"].count_documents({"_id": {"$gte": str(lo),
                                                             "$lte": str(hi - 1)}}))


def run_ingest_tier(rows: int, tier: Tier, work: Path, stack: Stack, api: Api, db: Any,
                    reader: Reader, results: dict[str, Any], parts: set[str]) -> None:
    base = ID_BASES.get(rows, 500_000_000)
    path = work / f"movies-{rows}.csv"
    written, size = write_csv(path, id_base=base, rows=rows)
    log(f"ingest {rows}: generated {size / MIB:.1f} MiB")
    entry: dict[str, Any] = {"rows": written, "bytes": size}
    results["ingest"].append(entry)  # filled in as the measurements finish
    entry.update(ingest.parse_rate(path))
    log(f"ingest {rows}: parse only {entry['parse_rows_per_s']:,.0f} rows/s")
    e2e = ingest.end_to_end(api, stack, path, rows, timeout=max(600.0, rows / 50))
    in_catalog = _catalog_count(db, base, base + rows)
    if in_catalog != rows:
        raise RuntimeError(f"catalog holds {in_catalog} of the {rows} ingested movies")
    entry.update(e2e)
    log(f"ingest {rows}: e2e {e2e['e2e_rows_per_s']:,.0f} rows/s ({e2e['e2e_s']} s), peak RSS "
        f"{e2e['peak_rss_mb']}")

    if tier.reads is not None:
        movies = int(db["catalog_movies"].estimated_document_count())
        log(f"reads at {movies} movies")
        reader.measure(movies, tier.reads, log, results["reads"])
    if "recommend" in parts:
        movies = int(db["catalog_movies"].estimated_document_count())
        results["recommend"] += recommend.measure(api, stack, movies, RECOMMEND_BUDGET, log)
    if "votes" in parts:  # on this tier's first movies
        movies = int(db["catalog_movies"].estimated_document_count())
        cast = votes.measure(stack.gateway_url, [str(base + i) for i in range(votes.MOVIES)])
        results["votes"].append({"movies_in_catalog": movies, **cast})
        log(f"votes at {movies} movies: {cast}")

    n, seconds = ingest.ceiling(db, path, "bench_ceiling", upsert=False)
    entry.update({"ceiling_rows": n, "ceiling_rows_per_s": round(n / seconds, 1)})
    entry["ratio_to_ceiling"] = round(entry["e2e_rows_per_s"] / entry["ceiling_rows_per_s"], 3)
    log(f"ingest {rows}: insert ceiling {entry['ceiling_rows_per_s']:,.0f} rows/s")
    sample = tier.sample_rows if rows > tier.sample_rows else None
    n, seconds = ingest.ceiling(db, path, "bench_upsert", upsert=True, limit=sample)
    entry.update({"ceiling_upsert_rows": n, "ceiling_upsert_rows_per_s": round(n / seconds, 1)})
    log(f"ingest {rows}: upsert ceiling {entry['ceiling_upsert_rows_per_s']:,.0f} rows/s "
        f"({n} rows)")
    naive = ingest.naive(stack.env["MONGO_URI"], stack.settings.mongo_db, path, sample)
    entry.update({
        "naive_rows_per_s": round(naive["inserted_rows"] / naive["insert_s"], 1),
        "naive_peak_rss_mb": naive["peak_rss_mb"], "naive_load_s": naive["load_s"],
        "naive_loaded_rows": naive["loaded_rows"], "naive_inserted_rows": naive["inserted_rows"],
    })
    log(f"ingest {rows}: naive {entry['naive_rows_per_s']:,.0f} rows/s, peak RSS "
        f"{naive['peak_rss_mb']} MB")
    if sample:
        entry["sample_rows"] = sample
        entry["sample_note"] = (f"upsert ceiling and naive insert timed on the first {sample} "
                                "rows; naive still loads the whole file (its peak RSS)")
    path.unlink()


def run_scale(tier: Tier, work: Path, stack: Stack, api: Api, db: Any,
              results: dict[str, Any]) -> None:
    """Each size ingested to done (fresh ids, so every run inserts), with the peak RSS of every
    process: memory must not grow with the file."""
    sizes = sorted(tier.scale_bytes)
    runs = [(size, "rest") for size in sizes] + [(sizes[-1], "grpc")]
    for i, (size, via) in enumerate(runs):
        base = SCALE_ID_BASE + i * 100_000_000
        path = work / f"scale-{size}.csv"
        rows, written = write_csv(path, id_base=base, min_bytes=size)
        log(f"scale: {written / MIB:.0f} MiB ({rows} rows) via {via}")
        entry: dict[str, Any] = {"bytes": written, "rows": rows, "via": via}
        entry.update(ingest.end_to_end(api, stack, path, rows, timeout=max(600.0, rows / 50),
                                       via=via))
        in_catalog = _catalog_count(db, base, base + rows)
        if in_catalog != rows:
            raise RuntimeError(f"catalog holds {in_catalog} of the {rows} ingested movies")
        results["scale"].append(entry)
        log(f"scale: {written / MIB:.0f} MiB via {via}: {entry['e2e_rows_per_s']:,.0f} rows/s, "
            f"peak RSS {entry['peak_rss_mb']}")
        path.unlink()


def _end_task(api: Api, task_id: str) -> str:
    api.post(f"/task/{task_id}/cancel")  # 400 when it already ended: fine
    return str(api.wait_task(task_id, timeout=900)["status"])


def run_upload(tier: Tier, work: Path, stack: Stack, api: Api) -> dict[str, Any]:
    """The same file sent each way `upload_repeats` times; the median MiB/s of each way. Every
    upload to the stack starts an ingestion task, cancelled at once (it is not measured)."""
    path = work / "upload.csv"
    _, size = write_csv(path, id_base=UPLOAD_ID_BASE, min_bytes=tier.upload_bytes)
    log(f"upload: generated {size / MIB:.1f} MiB")
    watched = ("envoy", "upload")
    gateway = f"127.0.0.1:{stack.ports['gateway']}"
    direct = f"127.0.0.1:{stack.ports['upload']}"
    speeds: dict[str, list[float]] = {}
    peaks: dict[str, dict[str, float]] = {}
    cpu: dict[str, dict[str, list[float]]] = {}  # way -> process -> CPU ms per MiB, each run

    def rest() -> tuple[float, str, int]:
        seconds, r = post_multipart(api.http, api.base + "/files/upload", path, path.name,
                                    headers=api.headers)
        if r.status_code != 202:
            raise RuntimeError(f"REST upload answered {r.status_code}: {r.text[:300]}")
        return seconds, str(r.json()["task_id"]), int(r.json()["size_bytes"])

    def native(target: str) -> tuple[float, str, int]:
        seconds, response = grpc_upload(target, api.metadata, path, path.name)
        return seconds, response.task_id, response.size_bytes

    def measure(way: str, send: Callable[[], tuple[float, str, int]]) -> None:
        for _ in range(tier.upload_repeats):
            reset_peaks(stack, watched)
            cpu_before = cpu_seconds(stack, watched)
            seconds, task_id, stored = send()
            for name, used in cpu_seconds(stack, watched).items():
                per_mib = (used - cpu_before[name]) * 1000 / (size / MIB)
                cpu.setdefault(way, {}).setdefault(name, []).append(per_mib)
            way_peaks = peaks.setdefault(way, {})
            for name, mb in peaks_mb(stack, watched).items():
                way_peaks[name] = max(way_peaks.get(name, 0.0), mb)
            if stored != size:
                raise RuntimeError(f"{way} upload stored {stored} of {size} bytes")
            speeds.setdefault(way, []).append(size / MIB / seconds)
            if task_id:
                _end_task(api, task_id)
        log(f"upload: {way} {statistics.median(speeds[way]):.0f} MiB/s, peak RSS "
            f"{peaks.get(way)}")

    with RawSink() as sink, requests.Session() as session:
        def raw() -> tuple[float, str, int]:
            seconds, r = post_multipart(session, sink.url, path, path.name)
            r.raise_for_status()
            return seconds, "", size

        measure("raw", raw)
    measure("rest", rest)
    measure("grpc", lambda: native(gateway))
    measure("grpc_direct", lambda: native(direct))
    with GrpcSink() as grpc_sink:
        measure("grpc_sink", lambda: native(grpc_sink.target))
    measure("service_in_process",
            lambda: (upload_in_process(path, work / "in-process"), "", size))
    path.unlink()
    mb = {way: statistics.median(v) for way, v in speeds.items()}
    return {"bytes": size, "runs": tier.upload_repeats,
            "rest_mb_per_s": round(mb["rest"], 1), "grpc_mb_per_s": round(mb["grpc"], 1),
            "raw_mb_per_s": round(mb["raw"], 1),
            "rest_ratio": round(mb["rest"] / mb["raw"], 3),
            "grpc_ratio": round(mb["grpc"] / mb["raw"], 3),
            "grpc_direct_mb_per_s": round(mb["grpc_direct"], 1),
            "grpc_sink_mb_per_s": round(mb["grpc_sink"], 1),
            "service_in_process_mb_per_s": round(mb["service_in_process"], 1),
            "runs_mb_per_s": {way: [round(v, 1) for v in runs] for way, runs in speeds.items()},
            "peak_rss_mb": {name: max(peaks[way][name] for way in ("rest", "grpc"))
                            for name in watched},
            "peak_rss_mb_by_way": {way: peaks[way] for way in ("rest", "grpc", "grpc_direct")},
            "cpu_ms_per_mib": {way: {name: round(statistics.median(v), 2)
                                     for name, v in by_name.items()}
                               for way, by_name in cpu.items()},
            "notes": "grpc_direct: UploadFile straight to the upload service, bypassing Envoy; "
                     "grpc_sink: to a discarding gRPC server in the bench process; "
                     "service_in_process: UploadService.upload called in the bench process "
                     "(sha256, write, fsync; no gRPC, no database); cpu_ms_per_mib: CPU time "
                     "per MiB sent of Envoy, the upload service and the bench process (client, "
                     "and the sinks when they are in it)"}


def run(tier_name: str, tier: Tier, parts: set[str], keep: bool, results: dict[str, Any],
        fill: int = 0) -> None:
    """Fills `results` as the measurements finish, so that an interrupted run keeps them."""
    work = Path(tempfile.mkdtemp(prefix="marquee-bench-"))
    log(f"tier {tier_name}; working in {work}")
    results.update({
        "tier": tier_name, "complete": False, "machine": machine.describe(),
        "config": {"ingest_rows": list(tier.ingest_rows), "upload_bytes": tier.upload_bytes,
                   "upload_repeats": tier.upload_repeats, "sample_rows": tier.sample_rows,
                   "reads": vars(tier.reads) if tier.reads else None, "workers": 1,
                   "worker_concurrency": 1, "mb": "MiB (2^20 bytes)",
                   "scale_bytes": list(tier.scale_bytes), "parts": sorted(parts),
                   "fill": fill},
        "ingest": [], "upload": [], "reads": [], "recommend": [], "votes": [], "scale": [],
        "auth": {}, "csvops": [], "fill": {},
    })
    ok = False
    try:
        if "csvops" in parts:  # no stack: the worker's code against pandas and the shell
            results["csvops"] = csv_ops.measure(list(tier.csvops_bytes), work, log)
        if not parts - {"csvops"}:
            ok = True
            results["complete"] = True
            return
        with running_stack(work) as stack:
            log("stack ready")
            api = Api(stack.gateway_url)
            client: MongoClient = MongoClient(stack.env["MONGO_URI"])
            db = client[stack.settings.mongo_db]
            reader = Reader(api, stack.env["MONGO_URI"], stack.settings.mongo_db,
                            stack.env["REDIS_URL"])
            try:
                if "auth" in parts:  # first: nothing else has loaded the database yet
                    results["auth"] = auth.measure(stack.gateway_url)
                    log(f"auth: {results['auth']}")
                if fill:
                    path = work / "fill.csv"
                    write_csv(path, id_base=FILL_ID_BASE, rows=fill)
                    results["fill"] = ingest.fill(db["catalog_movies"], path, log)
                    path.unlink()
                    log(f"fill: {results['fill']}")
                if "ingest" in parts:
                    for rows in tier.ingest_rows:
                        run_ingest_tier(rows, tier, work, stack, api, db, reader, results,
                                        parts)
                if "upload" in parts:
                    results["upload"].append(run_upload(tier, work, stack, api))
                if "scale" in parts and tier.scale_bytes:
                    run_scale(tier, work, stack, api, db, results)
            finally:
                reader.close()
                client.close()
        ok = True
        results["complete"] = True
    finally:
        results["runtime_s"] = round(time.monotonic() - _start, 1)
        if ok and not keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            log(f"kept {work} (stack logs in {work / 'logs'})")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--tiers", choices=sorted(TIERS), default="quick")
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--markdown", type=Path)
    parser.add_argument("--parts", default=",".join(PARTS),
                        help=f"comma-separated, of {', '.join(PARTS)}")
    parser.add_argument("--fill", type=int, default=0,
                        help="movies put straight into the catalog before the ingestion tiers")
    parser.add_argument("--rows", help="comma-separated ingestion tiers instead of the tier's, "
                                       "e.g. 1000000")
    args = parser.parse_args()
    # Stop the stack on SIGTERM, and on SIGINT even when a background shell ignores it.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if args.markdown:
        print(report.markdown(json.loads(args.markdown.read_text())))
        return
    tier = TIERS[args.tiers]
    if args.rows:
        tier = replace(tier, ingest_rows=tuple(int(n) for n in args.rows.split(",")))
    parts = set(args.parts.split(","))
    if parts - set(PARTS):
        parser.error(f"--parts takes {', '.join(PARTS)}")
    if "reads" not in parts:
        tier = replace(tier, reads=None)
    results: dict[str, Any] = {}
    try:
        with machine.InterferenceWatch() as watch:
            try:
                run(args.tiers, tier, parts, args.keep, results, args.fill)
            finally:
                results["interference"] = watch.seen
    finally:
        if results.get("machine"):
            RESULTS.mkdir(exist_ok=True)
            out = RESULTS / f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
            out.write_text(json.dumps(results, indent=2) + "\n")
            print(report.text(results))
            state = "" if results.get("complete") else " (INCOMPLETE: the run stopped early)"
            if results.get("interference"):
                print(f"\nWARNING: a test suite ran during the measurements (seconds into the "
                      f"run): {results['interference']}; the numbers are not clean")
            print(f"\nruntime {results['runtime_s']:.0f} s; results in {out}{state}")


if __name__ == "__main__":
    main()
