"""The naive baseline, run as its own process: load the whole CSV with pandas, turn it into
records, insert them with one insert_many. Prints one JSON line.

Usage: python -m bench.naive MONGO_URI DB CSV SAMPLE (SAMPLE 0 = insert every record)."""

from __future__ import annotations

import json
import sys
import time
import uuid
from pathlib import Path

import pandas as pd
from pymongo import MongoClient

from bench.ingest import fresh_collection
from bench.memory import self_peak_mb


def main(argv: list[str]) -> None:
    uri, db_name, csv_path, sample_arg = argv
    sample = int(sample_arg)
    client: MongoClient = MongoClient(uri)
    db = client[db_name]
    name = f"bench_naive_{uuid.uuid4().hex[:8]}"
    coll = fresh_collection(db, name)
    try:
        start = time.perf_counter()
        frame = pd.read_csv(Path(csv_path))
        docs = frame.to_dict("records")
        load_s = time.perf_counter() - start
        todo = docs[:sample] if sample else docs
        start = time.perf_counter()
        coll.insert_many(todo, ordered=False)
        insert_s = time.perf_counter() - start
        stored = coll.estimated_document_count()
    finally:
        db.drop_collection(name)
        client.close()
    print(json.dumps({"loaded_rows": len(docs), "inserted_rows": len(todo),
                      "stored_rows": stored, "load_s": round(load_s, 2),
                      "insert_s": round(insert_s, 2), "peak_rss_mb": self_peak_mb()}))


if __name__ == "__main__":
    main(sys.argv[1:])
