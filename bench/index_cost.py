"""What the catalog's indexes cost an import: `python -m bench.index_cost [ROWS]`.

Inserts the first ROWS (default 3000) TMDB movies, as the catalog stores them, in batches of
1000 into fresh collections of a private embedded database: with every index the catalog keeps,
without the two search indexes (multikey, about 40 word entries a movie), and without the score
indexes as well. Prints one JSON line per variant."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pymongo import MongoClient

from devstack import binaries
from devstack.stack import free_port
from services.catalog.records import Movie
from services.catalog.repository import MovieRepository, movie_document, search_fields
from services.worker.movie_rows import RowRejected, parse_header, parse_row

TMDB = Path(__file__).resolve().parents[2] / "shared" / "data" / "tmdb-top10k.csv"
SEARCH_INDEXES = {"search_title_words", "search_words"}


def _movies(limit: int) -> list[Movie]:
    with open(TMDB, newline="", encoding="utf-8") as f:
        rows = csv.reader(f)
        header = parse_header(next(rows))
        movies = []
        for row in rows:
            try:
                movies.append(Movie(**parse_row(header, row)))
            except RowRejected:
                continue
            if len(movies) == limit:
                return movies
    return movies


def main() -> None:
    movies = _movies(int(sys.argv[1]) if len(sys.argv) > 1 else 3000)
    port = free_port()
    with tempfile.TemporaryDirectory() as data:
        server = subprocess.Popen([binaries.secantusd(), "--host", "127.0.0.1", "--port",
                                   str(port), "--storage-path", data, "--log-level", "WARNING",
                                   "--standalone"])
        client: MongoClient = MongoClient(f"mongodb://127.0.0.1:{port}/?directConnection=true",
                                          serverSelectionTimeoutMS=30000)
        try:
            for variant in ("all", "no_search", "no_search_no_score"):
                collection = client["index_cost"][variant]
                repository = MovieRepository(client["index_cost"])
                repository._movies = collection  # the variant's own collection
                repository.ensure_indexes()
                for name in list(collection.index_information()):
                    if (variant != "all" and name in SEARCH_INDEXES) or \
                            (variant == "no_search_no_score" and "score" in name):
                        collection.drop_index(name)
                with_words = variant == "all"
                docs = [{**movie_document(m), **(search_fields(m) if with_words else {})}
                        for m in movies]
                start = time.perf_counter()
                for i in range(0, len(docs), 1000):
                    collection.insert_many(docs[i:i + 1000], ordered=False)
                seconds = time.perf_counter() - start
                indexes = len(collection.index_information())
                print(json.dumps({"variant": variant, "indexes": indexes, "movies": len(docs),
                                  "docs_per_s": round(len(docs) / seconds)}), flush=True)
        finally:
            client.close()
            server.kill()
            server.wait()


if __name__ == "__main__":
    main()
