"""Locust users for `make load` (bench/load.py runs this file headless; it is not imported).

Each simulated user registers and logs in, then, with a think time between actions, browses and
searches the catalog (filters, sorts, page tokens, words from real titles), votes (POST, PUT to
flip, DELETE), asks for recommendations and polls their status, uploads a small CSV and polls
its task to the end, and refreshes its tokens (rotation). The load rises in steps; at the end of
each step the stats of that step are written out and reset, so each step is read on its own.

Environment (set by bench/load.py):
    LOAD_DATA          the TMDB CSV the stack was seeded with (ids, titles, genres, years)
    LOAD_OUT           directory for steps.jsonl (one line of stats per step) and tasks.txt
                       (every task id a client was given: "<kind> <id>")
    LOAD_STEPS         user counts, e.g. 5,10,20,40
    LOAD_STEP_SECONDS  seconds per step
    LOAD_SPAWN_RATE    users started per second when a step adds users
    LOAD_WAIT          think time "min,max" seconds
    LOAD_ID_BASE       first movie id of the uploaded CSVs (fresh ids, so each upload imports)
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import os
import random
import re
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from locust import FastHttpUser, LoadTestShape, between, events, task
from locust.exception import StopUser
from locust.stats import StatsEntry

OUT = Path(os.environ.get("LOAD_OUT", "."))
STEPS = [int(n) for n in os.environ.get("LOAD_STEPS", "5,10,20,40").split(",")]
STEP_SECONDS = float(os.environ.get("LOAD_STEP_SECONDS", "30"))
SPAWN_RATE = float(os.environ.get("LOAD_SPAWN_RATE", "4"))
WAIT = [float(x) for x in os.environ.get("LOAD_WAIT", "0.5,1.5").split(",")]
ID_BASE = int(os.environ.get("LOAD_ID_BASE", "7000000000"))
# A client watches its task this long before it counts it as not finished (the run's own
# check after the load waits longer and is the one that decides whether a task was lost).
TASK_WAIT_SECONDS = 120.0
POLL_SECONDS = 0.5
SIGN_IN_TRIES = 3
# Pseudo-requests that time a task from its 202 to its end; not counted as HTTP requests.
TASK_TYPE = "TASK"
TERMINAL = ("done", "failed", "cancelled")


@dataclass(frozen=True)
class Movie:
    id: str
    title: str
    genres: tuple[str, ...]
    language: str
    year: int | None


def _catalog(path: Path) -> tuple[str, list[str], list[Movie]]:
    """The file's header, each row as CSV text without its id (for uploads), and the movies."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    header, body = rows[0], [r for r in rows[1:] if r[2]]  # skips the placeholder row
    rests, movies = [], []
    for row in body:
        line = io.StringIO()
        csv.writer(line, lineterminator="\n").writerow(row[1:])
        rests.append(line.getvalue())
        year = int(row[6][:4]) if row[6][:4].isdigit() else None
        movies.append(Movie(row[0], row[1], tuple(g.strip() for g in row[2].split(",")),
                            row[3], year))
    return ",".join(header) + "\n", rests, movies


HEADER, ROW_TEXTS, MOVIES = _catalog(Path(os.environ.get(
    "LOAD_DATA", Path(__file__).resolve().parents[2] / "shared" / "data" / "tmdb-top10k.csv")))
GENRES = [g for g, _ in Counter(g for m in MOVIES for g in m.genres).most_common(15)]
LANGUAGES = [lang for lang, _ in Counter(m.language for m in MOVIES).most_common(6)]
YEARS = sorted({m.year for m in MOVIES if m.year})
# Search words: the title words of 4+ letters, as people type them (case ignored by the API).
TITLE_WORDS = [[w for w in re.findall(r"[^\W\d_]{4,}", m.title)] for m in MOVIES]
TITLE_WORDS = [ws for ws in TITLE_WORDS if ws]
_new_ids = itertools.count(ID_BASE)


def _record_task(kind: str, task_id: str) -> None:
    with open(OUT / "tasks.txt", "a") as f:  # one gevent process: appends do not interleave
        f.write(f"{kind} {task_id}\n")


def _fire_task(name: str, started: float, error: str | None) -> None:
    events.request.fire(request_type=TASK_TYPE, name=name, response_length=0, context={},
                        response_time=(time.perf_counter() - started) * 1000,
                        exception=RuntimeError(error) if error else None)


class Visitor(FastHttpUser):
    wait_time = between(WAIT[0], WAIT[1])
    # Longer than Envoy's route timeouts (30 s auth, 60 s the rest): a slow answer shows as
    # the gateway's 504, which is the system's, not as a client-side timeout.
    network_timeout = 90.0
    connection_timeout = 30.0

    def on_start(self) -> None:
        self.name_ = f"load{uuid.uuid4().hex[:12]}"
        self.password = "load-" + uuid.uuid4().hex[:12]
        self.access = ""
        self.refresh_token = ""
        self.votes: dict[str, tuple[str, str]] = {}  # movie id -> (rating id, rating type)
        # As a person would: try again after a failure (each failure still counts), and give
        # up after a few, rather than go on without a token and fail every request after.
        registered = False
        for attempt in range(SIGN_IN_TRIES):
            if not registered:
                body = {"username": self.name_, "password": self.password,
                        "email": f"{self.name_}@example.com", "name": "Load"}
                # A retried register may find the account that a timed-out one made.
                expect = (201,) if attempt == 0 else (201, 409)
                registered = self._call("POST", "/auth/register", "POST /auth/register",
                                        expect, json=body, auth=False) is not None
            if registered:
                r = self._call("POST", "/auth/login", "POST /auth/login", (201,), auth=False,
                               json={"username": self.name_, "password": self.password})
                if r is not None:
                    return self._take_tokens(r.json())
            time.sleep(2)
        raise StopUser()

    def _take_tokens(self, body: dict[str, Any]) -> None:
        self.access, self.refresh_token = body["access_token"], body["refresh_token"]

    def _call(self, method: str, path: str, name: str, expect: tuple[int, ...], *,
              auth: bool = True, **kw: Any) -> Any:
        """The response when its status is expected; else None, recorded as a failure whose
        message is the status and the start of the body (the report groups by it)."""
        headers = dict(kw.pop("headers", {}))
        if auth:
            headers["Authorization"] = f"Bearer {self.access}"
        with self.client.request(method, path, name=name, headers=headers,
                                 catch_response=True, **kw) as r:
            if r.status_code in expect:
                r.success()
                return r
            text = (r.text or "")[:160] if r.status_code else repr(r.error)[:160]
            r.failure(f"{r.status_code} {text}")
            return None

    # --- the catalog ---------------------------------------------------------------------

    @task(8)
    def browse(self) -> None:
        params: dict[str, Any] = {"limit": random.choice((10, 20, 50))}
        if random.random() < 0.5:
            params["year"] = random.choice(YEARS)
        if random.random() < 0.3:
            params["language"] = random.choice(LANGUAGES)
        if random.random() < 0.7:
            params["sort_field"] = random.choice(("release_date", "rating", "score"))
            params["sort_order"] = random.choice(("asc", "desc"))
        self._pages(params, "GET /movies", pages=random.choice((1, 1, 2, 3)))

    @task(5)
    def search(self) -> None:
        words = random.choice(TITLE_WORDS)
        params: dict[str, Any] = {"search": " ".join(random.sample(words, min(2, len(words)))),
                                  "limit": 20}
        if random.random() < 0.2:
            params["language"] = random.choice(LANGUAGES)
        self._pages(params, "GET /movies?search", pages=random.choice((1, 1, 2)))

    def _pages(self, params: dict[str, Any], name: str, pages: int) -> None:
        """A first page, then up to `pages - 1` more by the x-next-page-token header."""
        r = self._call("GET", "/movies", name, (200,), params=params)
        for _ in range(pages - 1):
            token = r.headers.get("x-next-page-token") if r is not None else None
            if not token:
                return
            r = self._call("GET", "/movies", "GET /movies?page_token", (200,),
                           params={**params, "page_token": token})

    @task(3)
    def detail(self) -> None:
        movie = random.choice(MOVIES)
        self._call("GET", f"/movies/{movie.id}", "GET /movies/{id}", (200,))

    # --- votes ---------------------------------------------------------------------------

    @task(5)
    def vote(self) -> None:
        if self.votes and random.random() < 0.4:
            movie_id = random.choice(list(self.votes))
            rating_id, kind = self.votes[movie_id]
            if random.random() < 0.6:
                flipped = "DOWNVOTE" if kind == "UPVOTE" else "UPVOTE"
                r = self._call("PUT", f"/ratings/{rating_id}", "PUT /ratings/{id}", (200,),
                               json={"rating_type": flipped})
                if r is not None:
                    self.votes[movie_id] = (rating_id, flipped)
            elif self._call("DELETE", f"/ratings/{rating_id}", "DELETE /ratings/{id}",
                            (204,)) is not None:
                del self.votes[movie_id]
            return
        movie = random.choice(MOVIES)
        if movie.id in self.votes:
            return
        kind = random.choice(("UPVOTE", "UPVOTE", "DOWNVOTE"))
        r = self._call("POST", "/ratings", "POST /ratings", (201,),
                       json={"movie_id": movie.id, "rating_type": kind})
        if r is not None:
            self.votes[movie.id] = (r.json()["id"], kind)

    # --- recommendations -----------------------------------------------------------------

    @task(2)
    def recommend(self) -> None:
        params: dict[str, Any] = {"limit": 10}
        if random.random() < 0.6:
            params["genre"] = random.choice(GENRES)
        if random.random() < 0.5:
            low = random.choice(YEARS[len(YEARS) // 2:])
            params["year"] = f"{low}-{min(low + random.randint(0, 15), YEARS[-1])}"
        if random.random() < 0.5:
            params["language"] = random.choice(LANGUAGES[:3])
        r = self._call("GET", "/recommendations", "GET /recommendations", (200, 202),
                       params=params)
        if r is None or r.status_code == 200:
            return
        task_id = r.json()["task_id"]
        _record_task("recommend", task_id)
        started = time.perf_counter()
        while time.perf_counter() - started < TASK_WAIT_SECONDS:
            self.wait_poll()
            s = self._call("GET", "/recommendations/status", "GET /recommendations/status",
                           (200,), params={"task_id": task_id})
            if s is None:
                continue
            status = s.json()["status"]
            if status == "completed":
                return _fire_task("recommendation 202 -> completed", started, None)
            if status == "failed":
                return _fire_task("recommendation 202 -> completed", started,
                                  f"failed: {s.json().get('error', '')[:120]}")
        _fire_task("recommendation 202 -> completed", started,
                   f"not completed within {TASK_WAIT_SECONDS:.0f} s")

    # --- uploads -------------------------------------------------------------------------

    @task(1)
    def upload(self) -> None:
        rows = random.randint(5, 50)
        lines = [f"{next(_new_ids)},{random.choice(ROW_TEXTS)}" for _ in range(rows)]
        csv_bytes = (HEADER + "".join(lines)).encode()
        boundary = uuid.uuid4().hex
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
                f"filename=\"load-{rows}.csv\"\r\nContent-Type: text/csv\r\n\r\n").encode() \
            + csv_bytes + f"\r\n--{boundary}--\r\n".encode()
        r = self._call("POST", "/files/upload", "POST /files/upload", (202,), data=body,
                       headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
        if r is None:
            return
        task_id = r.json()["task_id"]
        _record_task("ingest_csv", task_id)
        started = time.perf_counter()
        while time.perf_counter() - started < TASK_WAIT_SECONDS:
            self.wait_poll()
            t = self._call("GET", f"/task/{task_id}", "GET /task/{id}", (200,))
            if t is None:
                continue
            body_ = t.json()
            if body_["status"] in TERMINAL:
                error = None
                if body_["status"] != "done" or body_["rows_imported"] != rows:
                    error = (f"{body_['status']}: {body_['rows_imported']} of {rows} imported "
                             f"{body_.get('error', '')[:100]}")
                return _fire_task("upload 202 -> done", started, error)
        _fire_task("upload 202 -> done", started,
                   f"not done within {TASK_WAIT_SECONDS:.0f} s")

    def wait_poll(self) -> None:
        time.sleep(POLL_SECONDS)  # gevent-patched: yields to the other users

    # --- sessions ------------------------------------------------------------------------

    @task(1)
    def refresh(self) -> None:
        r = self._call("POST", "/auth/refresh", "POST /auth/refresh", (200,), auth=False,
                       json={"refresh_token": self.refresh_token})
        if r is None:
            return
        body = r.json()
        if body["refresh_token"] == self.refresh_token:
            _fire_task("refresh rotates the token", time.perf_counter(), "same token back")
        self._take_tokens(body)


class Steps(LoadTestShape):
    """STEPS users, each count for STEP_SECONDS; each step's stats written out on its own."""

    def __init__(self) -> None:
        super().__init__()
        self._step = -1
        self._step_started = 0.0

    def tick(self) -> tuple[int, float] | None:
        step = int(self.get_run_time() // STEP_SECONDS)
        if step != self._step:
            if self._step >= 0:
                self._dump(self._step)
            self._step, self._step_started = step, time.perf_counter()
        if step >= len(STEPS):
            return None
        return STEPS[step], SPAWN_RATE

    def _dump(self, step: int) -> None:
        assert self.runner is not None
        stats = self.runner.stats
        # All HTTP requests together (the task timings are not requests).
        http = StatsEntry(stats, "all HTTP requests", "HTTP")
        for entry in stats.entries.values():
            if entry.method != TASK_TYPE:
                http.extend(entry)
        routes = []
        for entry in [*stats.entries.values(), http]:
            if not entry.num_requests:
                continue
            routes.append({
                "name": entry.name, "type": entry.method, "requests": entry.num_requests,
                "failures": entry.num_failures,
                "p50_ms": entry.get_response_time_percentile(0.5),
                "p95_ms": entry.get_response_time_percentile(0.95),
                "p99_ms": entry.get_response_time_percentile(0.99),
                "max_ms": round(entry.max_response_time or 0, 1),
                "avg_ms": round(entry.avg_response_time, 1)})
        errors = [{"type": e.method, "name": e.name, "error": str(e.error),
                   "count": e.occurrences} for e in stats.errors.values()]
        line = {"step": step, "users": STEPS[step], "users_running": self.runner.user_count,
                "seconds": round(time.perf_counter() - self._step_started, 2),
                "loadavg_1m": round(os.getloadavg()[0], 2), "routes": routes,
                "errors": errors}
        with open(OUT / "steps.jsonl", "a") as f:
            f.write(json.dumps(line) + "\n")
        stats.reset_all()
