"""Recommendations use cases: a user's preferences, and recommendations served from the cache or
computed on the workers.

A request's result is cached under a key made of the user, the criteria, the limit and the
versions of its three inputs (preferences, the user's votes, the catalog), read at the time of
the request. Saving preferences, any vote change and any import or deletion change a version,
so the next request has a new key: it finds no result and starts a computation (202). The run
then reads the inputs as they are when it runs, at least as new as the versions in its key, so a
result is never older than its key says. Of the requests for one key, the one that sets the
claim in Redis (set-if-absent) creates the task; the others answer with that task's id.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

from services.common.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unavailable,
)
from services.common.ids import random_id
from services.common.tokens import Caller
from services.recommendations.criteria import (
    MAX_LIMIT,
    Criteria,
    check_limit,
    check_preferences,
    override,
)
from services.recommendations.records import COMPLETED, FAILED, Run, now
from services.recommendations.result_cache import cache_key

log = logging.getLogger(__name__)

MAX_ID_CHARS = 64  # ids are 32 hex digits
MAX_ERROR_CHARS = 2000
# A request that lost the claim waits this long for the winner to have created its task.
CLAIM_WAIT_SECONDS = 5.0
CLAIM_POLL_SECONDS = 0.05
# Threads that read the versions of the votes and of the catalog beside the preferences (all
# calls together: a few at a time each).
VERSION_READERS = 16


class Preferences(Protocol):
    def get(self, user_id: str) -> tuple[dict[str, Any], int]: ...
    def save(self, user_id: str, preferences: dict[str, Any]) -> int: ...


class Runs(Protocol):
    def insert(self, run: Run) -> None: ...
    def get(self, run_id: str) -> Run | None: ...
    def by_task(self, task_id: str) -> Run | None: ...
    def set_task(self, run_id: str, task_id: str) -> None: ...
    def delete(self, run_id: str) -> None: ...
    def start(self, run_id: str) -> Run | None: ...
    def finish(self, run_id: str, recommendations: list[dict[str, Any]], error: str) -> None: ...


class Results(Protocol):
    """ResultCache, or an in-memory fake."""

    def get(self, key: str) -> list[dict[str, Any]] | None: ...
    def put(self, key: str, recommendations: list[dict[str, Any]]) -> None: ...
    def claim(self, key: str, run_id: str) -> bool: ...
    def claimant(self, key: str) -> str | None: ...
    def release(self, key: str, run_id: str) -> None: ...


class Peers(Protocol):
    """The other services (peers.Peers); each raises Unavailable when it cannot answer."""

    def votes_version(self, user_id: str) -> str: ...
    def catalog_version(self) -> int: ...
    def create_task(self, user_id: str, username: str, run_id: str) -> str: ...


@dataclass(frozen=True)
class Answer:
    """A cached list (`task_id` empty), or the task computing it."""

    recommendations: list[dict[str, Any]] | None = None
    task_id: str = ""


def _check_id(name: str, value: str) -> str:
    if not value:
        raise InvalidArgument(f"{name} is required")
    if len(value) > MAX_ID_CHARS:
        raise NotFound(f"no recommendation task with a {name} of that length")
    return value


class RecommendationsService:
    def __init__(self, preferences: Preferences, runs: Runs, results: Results, peers: Peers, *,
                 sleep: Callable[[float], None] = time.sleep,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._preferences = preferences
        self._runs = runs
        self._results = results
        self._peers = peers
        self._sleep = sleep
        self._monotonic = monotonic
        self._readers = ThreadPoolExecutor(VERSION_READERS, thread_name_prefix="versions")

    # --- for users -------------------------------------------------------------------------

    def save_preferences(self, caller: Caller, preferences: dict[str, Any],
                         user_id: str = "") -> dict[str, Any]:
        """Stores the checked preferences; what is stored. A user_id, in the body or among the
        preferences, must be the caller's own."""
        named = preferences.pop("user_id", None) if "user_id" in preferences else None
        for claimed in (user_id, named):
            if claimed not in (None, "") and claimed != caller.user_id:
                raise PermissionDenied("you may only set your own preferences")
        stored = check_preferences(preferences)
        version = self._preferences.save(caller.user_id, stored)
        log.info("preferences saved", extra={"user": caller.user_id, "version": version})
        return stored

    def get_preferences(self, caller: Caller) -> dict[str, Any]:
        return self._preferences.get(caller.user_id)[0]

    def recommend(self, caller: Caller, *, genre: list[str], year: str, rating: str,
                  language: str, limit: int | None) -> Answer:
        limit = check_limit(limit)
        # The three reads are independent: the two remote ones run while this thread reads
        # the preferences, so a cached answer costs the slowest of them, not their sum.
        votes = self._readers.submit(self._peers.votes_version, caller.user_id)
        catalog = self._readers.submit(self._peers.catalog_version)
        stored, prefs_version = self._preferences.get(caller.user_id)
        criteria = override(stored, genre=genre, year=year, rating=rating, language=language)
        versions = (prefs_version, votes.result(), catalog.result())
        key = cache_key(caller.user_id, criteria, limit, versions)
        cached = self._results.get(key)
        if cached is not None:
            return Answer(recommendations=cached)
        return Answer(task_id=self._queue(caller, key, criteria, limit))

    def _queue(self, caller: Caller, key: str, criteria: Criteria, limit: int) -> str:
        """The task computing `key`: a new one if this request wins the claim, else the
        winner's. A claim released meanwhile (its run failed, or its task could not be
        created) is tried again."""
        deadline = self._monotonic() + CLAIM_WAIT_SECONDS
        while True:
            run_id = random_id()
            if self._results.claim(key, run_id):
                return self._start(caller, run_id, key, criteria, limit)
            claimant = self._results.claimant(key)
            run = self._runs.get(claimant) if claimant else None
            if run is not None and run.task_id:
                return run.task_id
            if self._monotonic() >= deadline:
                raise Unavailable("the recommendations for these inputs are being queued by "
                                  "another request; try again")
            self._sleep(CLAIM_POLL_SECONDS)

    def _start(self, caller: Caller, run_id: str, key: str, criteria: Criteria, limit: int
               ) -> str:
        run = Run(id=run_id, user_id=caller.user_id, cache_key=key, criteria=criteria,
                  limit=limit, created_at=now())
        self._runs.insert(run)
        try:
            task_id = self._peers.create_task(caller.user_id, caller.username, run_id)
        except Exception:
            # No task will run: free the key for the next request.
            self._runs.delete(run_id)
            self._results.release(key, run_id)
            raise
        self._runs.set_task(run_id, task_id)
        log.info("recommendations queued", extra={"user": caller.user_id, "task_id": task_id,
                                                  "run_id": run_id})
        return task_id

    def status(self, caller: Caller, task_id: str) -> Run:
        """The caller's run carried by the task; NotFound for an unknown id, PermissionDenied
        for another user's."""
        run = self._runs.by_task(_check_id("task_id", task_id))
        if run is None:
            raise NotFound(f"no recommendation task with id {task_id!r}")
        if run.user_id != caller.user_id:
            raise PermissionDenied("this recommendation task belongs to another user")
        return run

    # --- for the workers -------------------------------------------------------------------

    def start_run(self, run_id: str) -> Run:
        run = self._runs.start(_check_id("run_id", run_id))
        if run is None:
            raise NotFound(f"no run with id {run_id!r}")
        return run

    def finish_run(self, run_id: str, recommendations_json: str, error: str) -> None:
        """Records the outcome; a result also goes to the cache under the run's key. Either way
        the claim is released, so that after a failure the next request tries again."""
        run = self._runs.get(_check_id("run_id", run_id))
        if run is None:
            raise NotFound(f"no run with id {run_id!r}")
        if run.status == COMPLETED:
            return  # a job delivered twice: the first result stands
        items: list[dict[str, Any]] = []
        if not error:
            items = _recommendations(recommendations_json, run.limit)
        self._runs.finish(run_id, items, error[:MAX_ERROR_CHARS])
        if not error:
            self._results.put(run.cache_key, items)
        self._results.release(run.cache_key, run_id)
        log.info("recommendations run finished", extra={
            "run_id": run_id, "status": FAILED if error else COMPLETED, "count": len(items)})


def _recommendations(text: str, limit: int) -> list[dict[str, Any]]:
    try:
        items = json.loads(text)
    except ValueError:
        raise InvalidArgument("recommendations_json must be a JSON array") from None
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise InvalidArgument("recommendations_json must be a JSON array of objects")
    if len(items) > min(limit, MAX_LIMIT):
        raise FailedPrecondition(f"the run asked for at most {limit} recommendations")
    return items
