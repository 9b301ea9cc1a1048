"""Votes through Envoy: sustained votes per second at concurrency 16, exact counts at the end,
and the latency of movie reads while votes are cast against the same reads without.

Each of 16 users walks its own shuffle of `MOVIES` movies: a first vote on a movie is a POST,
a later one flips it with a PATCH, so every request changes a count. Four reader threads run
`GET /movies` (first page) and `GET /movies/{id}` of a voted movie throughout. At the end every
voted movie's `upvotes`/`downvotes` must equal what the users' final votes add up to."""

from __future__ import annotations

import functools
import random
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import requests

from bench.reads import percentile

VOTERS = 16
READERS = 4
MOVIES = 50
SECONDS = 15.0


def _register(base: str) -> dict[str, str]:
    name = f"voter{uuid.uuid4().hex[:10]}"
    r = requests.post(base + "/auth/register", timeout=60, json={
        "username": name, "password": "bench-" + uuid.uuid4().hex[:8],
        "email": f"{name}@example.com", "name": "V"})
    r.raise_for_status()
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def _reads(base: str, headers: dict[str, str], movie_ids: list[str], stop: threading.Event
           ) -> list[float]:
    """Read latencies (ms) until `stop`, from READERS threads."""
    times: list[float] = []
    lock = threading.Lock()

    def reader(n: int) -> None:
        http = requests.Session()
        i = n
        while not stop.is_set():
            path = "/movies?limit=50" if i % 2 else f"/movies/{movie_ids[i % len(movie_ids)]}"
            start = time.perf_counter()
            r = http.get(base + path, headers=headers, timeout=60)
            elapsed = (time.perf_counter() - start) * 1000
            if r.status_code != 200:
                raise RuntimeError(f"GET {path} answered {r.status_code}: {r.text[:200]}")
            with lock:
                times.append(elapsed)
            i += 1

    _run_threads([functools.partial(reader, n) for n in range(READERS)])
    return sorted(times)


def _run_threads(targets: list[Callable[[], None]]) -> None:
    errors: list[BaseException] = []

    def guarded(target: Callable[[], None]) -> None:
        try:
            target()
        except BaseException as exc:  # reported after the join
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(t,)) for t in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def _latency(times: list[float]) -> dict[str, float]:
    return {"reads": len(times), "p50_ms": round(percentile(times, 50), 2),
            "p99_ms": round(percentile(times, 99), 2)}


def measure(base: str, movie_ids: list[str]) -> dict[str, Any]:
    movies = movie_ids[:MOVIES]
    reader_headers = _register(base)
    stop = threading.Event()
    timer = threading.Timer(SECONDS / 3, stop.set)
    timer.start()
    quiet = _latency(_reads(base, reader_headers, movies, stop))

    voters = [_register(base) for _ in range(VOTERS)]
    # Each user's last vote per movie: (rating id, "UPVOTE" | "DOWNVOTE").
    state: list[dict[str, tuple[str, str]]] = [{} for _ in voters]
    done = [0] * VOTERS
    # 503s: the catalog could not be told in time, so the vote was undone ("nothing was changed,
    # try again"); the voter tries the same vote again, as a client should, and they are counted.
    unavailable = [0] * VOTERS
    stop = threading.Event()

    def voter(n: int) -> None:
        http = requests.Session()
        order = random.Random(n).sample(movies, len(movies))
        i = 0
        while not stop.is_set():
            movie = order[i % len(order)]
            current = state[n].get(movie)
            if current is None:
                r = http.post(base + "/ratings", headers=voters[n], timeout=60,
                              json={"movie_id": movie, "rating_type": "UPVOTE"})
                expect = 201
            else:
                flipped = "DOWNVOTE" if current[1] == "UPVOTE" else "UPVOTE"
                r = http.patch(base + f"/ratings/{current[0]}", headers=voters[n], timeout=60,
                               json={"rating_type": flipped})
                expect = 200
            if r.status_code == 503:
                unavailable[n] += 1
                time.sleep(0.2)
                continue
            if r.status_code != expect:
                raise RuntimeError(f"vote answered {r.status_code}: {r.text[:200]}")
            state[n][movie] = (r.json()["id"], r.json()["rating_type"])
            done[n] += 1
            i += 1

    read_times: list[float] = []
    start = time.perf_counter()
    threading.Timer(SECONDS, stop.set).start()
    _run_threads([*(functools.partial(voter, n) for n in range(VOTERS)),
                  lambda: read_times.extend(_reads(base, reader_headers, movies, stop))])
    elapsed = time.perf_counter() - start
    while_voting = _latency(sorted(read_times))

    wrong = []
    for movie in movies:
        votes = [s[movie][1] for s in state if movie in s]
        r = requests.get(base + f"/movies/{movie}", headers=reader_headers, timeout=60)
        shown = (r.json()["upvotes"], r.json()["downvotes"])
        expected = (votes.count("UPVOTE"), votes.count("DOWNVOTE"))
        if shown != expected:
            wrong.append({"movie": movie, "shown": shown, "expected": expected})
    if wrong:
        raise RuntimeError(f"counts differ from the votes cast: {wrong[:5]}")
    return {"voters": VOTERS, "movies": len(movies), "votes": sum(done),
            "votes_per_s": round(sum(done) / elapsed, 1), "counts_exact": True,
            "answered_503": sum(unavailable),
            "reads_quiet": quiet, "reads_while_voting": while_voting,
            "p99_ratio": round(while_voting["p99_ms"] / quiet["p99_ms"], 2)}
