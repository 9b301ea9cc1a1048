"""Recommendations at a catalog size: the time from a 202 to `completed` for a few criteria, the
worker's peak RSS while it computes, and cached `GET /recommendations` through Envoy at
concurrency 1 and 16."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import requests

from bench.memory import peaks_mb, reset_peaks
from bench.reads import Budget, load
from bench.stack import Api
from devstack.stack import Stack

# Each a request's parameters; the stored preferences are empty, so these are the criteria.
CRITERIA: dict[str, dict[str, Any]] = {
    "none": {},
    "language": {"language": "en"},
    "language_years": {"language": "en", "year": "2000-2015", "rating": "6-9"},
    "genre_year": {"genre": "Drama", "year": "2010"},
}
CONCURRENCY = (1, 16)
POLL_SECONDS = 0.02


def _compute(api: Api, params: dict[str, Any], timeout: float) -> tuple[float, int]:
    """Seconds from the 202 to `completed`, and how many movies came back."""
    r = api.get("/recommendations", params=params)
    if r.status_code != 202:
        raise RuntimeError(f"expected 202, got {r.status_code}: {r.text[:300]}")
    task_id = r.json()["task_id"]
    start = time.perf_counter()
    deadline = start + timeout
    while time.perf_counter() < deadline:
        body = api.get("/recommendations/status", params={"task_id": task_id}).json()
        if body["status"] == "completed":
            return time.perf_counter() - start, len(body["recommendations"])
        if body["status"] == "failed":
            raise RuntimeError(f"recommendation run failed: {body.get('error')}")
        time.sleep(POLL_SECONDS)
    raise RuntimeError(f"recommendations not completed within {timeout} s")


def measure(api: Api, stack: Stack, movies: int, budget: Budget,
            log: Callable[[str], None]) -> list[dict[str, Any]]:
    api.post("/preferences", json={"preferences": {}}).raise_for_status()
    out: list[dict[str, Any]] = []
    for name, params in CRITERIA.items():
        reset_peaks(stack, ("worker",))
        seconds, count = _compute(api, params, timeout=600)
        entry: dict[str, Any] = {"movies": movies, "criteria": name, "params": params,
                                 "compute_s": round(seconds, 3), "returned": count,
                                 "worker_peak_rss_mb": peaks_mb(stack, ("worker",))["worker"]}
        if name == "language_years":
            for concurrency in CONCURRENCY:
                run = load(lambda: _session(api), _cached_call(api, params), concurrency,
                           budget)
                entry[f"cached_c{concurrency}"] = run.summary()
        out.append(entry)
        log(f"recommendations at {movies}: {name} computed in {seconds:.2f} s, worker peak "
            f"RSS {entry['worker_peak_rss_mb']} MB; cached "
            f"{ {k: v for k, v in entry.items() if k.startswith('cached_')} }")
    return out


def _session(api: Api) -> requests.Session:
    session = requests.Session()
    session.headers.update(api.headers)
    return session


def _cached_call(api: Api, params: dict[str, Any]) -> Callable[[requests.Session], str]:
    def call(session: requests.Session) -> str:
        r = session.get(api.base + "/recommendations", params=params, timeout=60)
        if r.status_code != 200 or not r.json().get("cached"):
            raise RuntimeError(f"not a cached answer: {r.status_code} {r.text[:200]}")
        return "hit"

    return call
