"""GET /movies through Envoy against the same query run directly with pymongo.

Searches (`?search=`, one or two words, common and rare) are measured the same way; their
direct query is the catalog's own read, CatalogService over MovieRepository in this process
without the cache: the same pipelines, one after the other, as the service sends them. The
vote counts that every cached page reads again (MovieRepository.vote_counts) are timed on their
own for a page of 1000 movies, in the slices the catalog reads them and as one `$in`.

Each (query, concurrency) runs a fixed number of requests or until a time budget is spent,
whichever comes first; every thread finishes the request it started. Through Envoy the catalog
answers repeated pages from its Redis cache (the `x-cache` header says which), so three paths
are measured:
- `gateway`: as served, after one warm-up request (mostly cache hits);
- `uncached`: the same, with the catalog version bumped before each request (the cache's own
  invalidation), so the catalog reads the database each time;
- `direct`: pymongo find+sort+skip+limit (or the keyset segments for a token), as the catalog
  issues it.
A run whose estimated duration (single-request latency x concurrency, the embedded database
being single-threaded) exceeds the cap is skipped and says so."""

from __future__ import annotations

import base64
import json
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import redis
import requests
from pymongo import MongoClient
from pymongo.collection import Collection

from bench.stack import Api
from services.catalog.cache import VERSION_KEY
from services.catalog.repository import MovieRepository
from services.catalog.service import CatalogService, validate

PAGE = 50
DEEP_PAGE = 2000
CONCURRENCY = (1, 16, 64)
# The searches: a word in about 8% of the TMDB movies ("love") and in one ("dufresne"), two
# words of which the driving one (the longest) is in 11% ("world war"), and two rare ones.
SEARCHES = {"search_1_common": "love", "search_1_rare": "dufresne",
            "search_2_common": "world war", "search_2_rare": "andy dufresne"}
OVERLAY_IDS = 1000
OVERLAY_REPEATS = 20
PROJECTION = {"updated_at": 0}
UNCACHED_CAP_SECONDS = 40.0


@dataclass(frozen=True)
class Budget:
    requests: int
    seconds: float
    cap_seconds: float  # longest estimated run that is still run


@dataclass(frozen=True)
class Query:
    name: str
    params: dict[str, Any]
    direct: Callable[[Collection], int]
    note: str = ""
    concurrency: tuple[int, ...] = CONCURRENCY


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def _find(coll: Collection, query: dict[str, Any], sort: list[tuple[str, int]], skip: int,
          limit: int) -> list[dict[str, Any]]:
    return list(coll.find(query, PROJECTION).sort(sort).skip(skip).limit(limit))


def _decode_token(token: str) -> tuple[Any, str]:
    raw = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    value = raw["v"]
    if isinstance(value, dict):
        value = datetime.fromisoformat(value["$date"])
    return value, str(raw["id"])


def _keyset_after(coll: Collection, value: Any, last_id: str, limit: int) -> int:
    """The page after (value, last_id) in (release_date, _id) ascending order, read as the
    catalog reads it: index-bounded segments, one after the other, no $or."""
    sort = [("release_date", 1), ("_id", 1)]
    if value is None:
        segments: list[dict[str, Any]] = [{"release_date": None, "_id": {"$gt": last_id}},
                    {"release_date": {"$ne": None}}]
    else:
        segments = [{"release_date": value, "_id": {"$gt": last_id}},
                    {"release_date": {"$gt": value}}]
    docs: list[dict[str, Any]] = []
    for segment in segments:
        if len(docs) < limit:
            docs += _find(coll, segment, sort, 0, limit - len(docs))
    return len(docs)


def _searched(search: str) -> Callable[[Collection], int]:
    """The catalog's reads for the first page of a search, straight to the database."""
    q = validate(page=None, limit=PAGE, year=None, language="", sort_field="", sort_order="",
                 page_token="", search=search)

    def direct(coll: Collection) -> int:
        return len(CatalogService(MovieRepository(coll.database)).browse(
            q, with_total=False).movies)

    return direct


def build_queries(api: Api, movies: int) -> list[Query]:
    """The four browse queries, a page of 1000 and the searches; the deep page is page 2000 of
    50, or the deepest full page there is."""
    filtered = {"year": 2015, "language": "en", "sort_field": "rating", "sort_order": "desc"}
    by_date = [("release_date", 1), ("_id", 1)]
    page = max(2, min(DEEP_PAGE, movies // PAGE))
    note = "" if page == DEEP_PAGE else f"page {page}: the deepest full page of {movies}"
    # The REST list sends the next page's token as a header and, unlike /v1/movies, skips the
    # total count (slow on the embedded database at a million movies).
    r = api.get("/movies", params={"page": page - 1, "limit": PAGE})
    r.raise_for_status()
    token = r.headers["x-next-page-token"]
    value, last_id = _decode_token(token)
    skip = (page - 1) * PAGE
    return [
        Query("filtered", filtered, lambda c: len(_find(
            c, {"release_year": 2015, "original_language": "en"},
            [("vote_average", -1), ("_id", -1)], 0, PAGE + 1))),
        Query("first", {}, lambda c: len(_find(c, {}, by_date, 0, PAGE + 1))),
        Query("deep_page", {"page": page, "limit": PAGE},
              lambda c: len(_find(c, {}, by_date, skip, PAGE + 1)), note),
        Query("deep_token", {"page_token": token, "limit": PAGE},
              lambda c: _keyset_after(c, value, last_id, PAGE + 1),
              note or f"token for the position of page {page}"),
        # As served, a cache hit: the page from Redis and its 1000 movies' counts from the
        # database.
        Query("page_1000", {"limit": 1000}, lambda c: len(_find(c, {}, by_date, 0, 1001)),
              concurrency=(1, 16)),
        *(Query(name, {"search": search, "limit": PAGE}, _searched(search), concurrency=(1, 16))
          for name, search in SEARCHES.items()),
    ]


@dataclass
class Run:
    latencies: list[float]
    seconds: float
    cache: dict[str, int]
    errors: int = 0
    first_error: str = ""

    def summary(self) -> dict[str, Any]:
        lat = sorted(self.latencies)
        out: dict[str, Any] = {
            "n": len(lat),
            "p50_ms": round(percentile(lat, 50) * 1000, 2),
            "p95_ms": round(percentile(lat, 95) * 1000, 2),
            "p99_ms": round(percentile(lat, 99) * 1000, 2),
            "rps": round(len(lat) / self.seconds, 1) if self.seconds else None,
        }
        if self.errors:
            out["errors"] = self.errors
            out["first_error"] = self.first_error
        seen = self.cache.get("hit", 0) + self.cache.get("miss", 0)
        if seen:
            out["cache_hit_ratio"] = round(self.cache.get("hit", 0) / seen, 3)
        return out


def load(make_client: Callable[[], Any], call: Callable[[Any], str | None], concurrency: int,
         budget: Budget, prepare: Callable[[], Any] | None = None) -> Run:
    """`concurrency` threads, each with its own client, call until the budget is spent;
    `prepare` runs before each call, outside its timing."""
    latencies: list[float] = []
    cache: dict[str, int] = {}
    lock = threading.Lock()
    issued = 0
    errors: list[BaseException] = []
    clients = [make_client() for _ in range(concurrency)]
    start = time.perf_counter()
    deadline = start + budget.seconds

    def worker(client: Any) -> None:
        nonlocal issued
        while True:
            with lock:
                if issued >= budget.requests or (issued >= concurrency
                                                 and time.perf_counter() > deadline):
                    return
                issued += 1
            if prepare is not None:
                prepare()
            t0 = time.perf_counter()
            try:
                state = call(client)
            except Exception as exc:
                with lock:
                    errors.append(exc)
                continue
            elapsed = time.perf_counter() - t0
            with lock:
                latencies.append(elapsed)
                if state:
                    cache[state] = cache.get(state, 0) + 1

    threads = [threading.Thread(target=worker, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - start
    for c in clients:
        if hasattr(c, "close"):
            c.close()
    return Run(latencies, seconds, cache, len(errors), repr(errors[0])[:200] if errors else "")


class Reader:
    def __init__(self, api: Api, mongo_uri: str, db_name: str, redis_url: str) -> None:
        self.api = api
        self.mongo: MongoClient = MongoClient(mongo_uri, maxPoolSize=128)
        self.movies = self.mongo[db_name]["catalog_movies"]
        self.redis = redis.Redis.from_url(redis_url)

    def close(self) -> None:
        self.mongo.close()
        self.redis.close()

    def _session(self) -> requests.Session:
        s = requests.Session()
        s.headers.update(self.api.headers)
        return s

    def _bust(self) -> None:
        """A new catalog version, as an import makes: every cached page is stale."""
        self.redis.incr(VERSION_KEY)

    def _gateway_call(self, q: Query) -> Callable[[Any], str | None]:
        url = self.api.base + "/movies"

        def call(session: requests.Session) -> str | None:
            r = session.get(url, params=q.params, timeout=600)
            if r.status_code != 200 or not r.json():
                raise RuntimeError(f"/movies {q.params} answered {r.status_code}: "
                                   f"{r.text[:200]}")
            return r.headers.get("x-cache")

        return call

    def _direct_call(self, q: Query) -> Callable[[Any], str | None]:
        def call(_: Any) -> str | None:
            if not q.direct(self.movies):
                raise RuntimeError(f"direct {q.name} found nothing")
            return None

        return call

    def _timed(self, make_client: Callable[[], Any], call: Callable[[Any], str | None],
               concurrency: int, single_s: float, budget: Budget,
               prepare: Callable[[], Any] | None = None) -> dict[str, Any]:
        estimate = single_s * concurrency
        if concurrency > 1 and estimate > budget.cap_seconds:
            return {"skipped": f"estimated {estimate:.0f}s ({concurrency} x {single_s:.2f}s, "
                               f"one query at a time in the database) > cap "
                               f"{budget.cap_seconds:.0f}s"}
        return load(make_client, call, concurrency, budget, prepare).summary()

    def measure(self, movies: int, budget: Budget, log: Callable[[str], None],
                rows: list[dict[str, Any]]) -> None:
        """Appends one row per (query, concurrency) to `rows` as each finishes."""
        for q in build_queries(self.api, movies):
            # One request each way first: the cold (cache-miss) latency and the warm-up.
            with self._session() as session:
                self._bust()
                t0 = time.perf_counter()
                state = self._gateway_call(q)(session)
                cold_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            self._direct_call(q)(None)
            direct_s = time.perf_counter() - t0
            for c in q.concurrency:
                row: dict[str, Any] = {"movies": movies, "concurrency": c, "query": q.name,
                                       "cold_ms": round(cold_s * 1000, 2), "cold_cache": state}
                if q.note:
                    row["note"] = q.note
                with self._session() as session:
                    self._gateway_call(q)(session)  # warm the cache
                row.update(load(self._session, self._gateway_call(q), c, budget).summary())
                if c in (1, 16):
                    # Queued requests must finish within Envoy's 60 s catalog route timeout.
                    capped = Budget(budget.requests, budget.seconds,
                                    min(budget.cap_seconds, UNCACHED_CAP_SECONDS))
                    un = self._timed(self._session, self._gateway_call(q), c, cold_s, capped,
                                     prepare=self._bust)
                    row.update({f"uncached_{k}": v for k, v in un.items()})
                direct = self._timed(lambda: None, self._direct_call(q), c, direct_s, budget)
                row.update({f"direct_{k}": v for k, v in direct.items()})
                if "p99_ms" in row and "direct_p99_ms" in row and row["direct_p99_ms"]:
                    row["ratio_p99"] = round(row["p99_ms"] / row["direct_p99_ms"], 3)
                if "uncached_p99_ms" in row and "direct_p99_ms" in row and row["direct_p99_ms"]:
                    row["uncached_ratio_p99"] = round(
                        row["uncached_p99_ms"] / row["direct_p99_ms"], 3)
                rows.append(row)
                log(f"reads {movies:>8} {q.name:<10} c={c:<3} p99 {row.get('p99_ms')} ms "
                    f"(uncached {row.get('uncached_p99_ms', '-')}, direct "
                    f"{row.get('direct_p99_ms', row.get('direct_skipped', '-'))})")
        self.measure_overlay(movies, budget, log, rows)

    def measure_overlay(self, movies: int, budget: Budget, log: Callable[[str], None],
                        rows: list[dict[str, Any]]) -> None:
        """The counts of a 1000-movie page read by id: as the catalog reads them (slices of
        OVERLAY_SLICE ids) and as one `$in` of them all, one at a time."""
        ids = [d["_id"] for d in self.movies.find({}, {"_id": 1}).limit(OVERLAY_IDS)]
        repository = MovieRepository(self.movies.database)

        def sliced(_: Any) -> None:
            assert len(repository.vote_counts(ids)) == len(ids)

        def one_in(_: Any) -> None:
            found = self.movies.find({"_id": {"$in": ids}}, {"upvotes": 1, "downvotes": 1})
            assert len(list(found)) == len(ids)

        ways: dict[str, Callable[[Any], None]] = {"overlay_1000_sliced": sliced,
                                                  "overlay_1000_one_in": one_in}
        for name, call in ways.items():
            summary = load(lambda: None, call, 1, Budget(OVERLAY_REPEATS, budget.seconds,
                                                         budget.cap_seconds)).summary()
            rows.append({"movies": movies, "concurrency": 1, "query": name,
                         **{f"direct_{k}": v for k, v in summary.items()}})
            log(f"reads {movies:>8} {name} p50 {summary['p50_ms']} ms")
