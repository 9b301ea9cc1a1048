"""The upgrade that runs at every catalog start: the indexes, then the search fields (words,
weighted rating) and zero vote counts of every movie stored before them or with another
SEARCH_VERSION.

It runs in a background thread, so the service answers at once: on the embedded database the
indexes of a catalog of a million movies take minutes to build and its words about half an hour
to write. Meanwhile every route answers; a search does not find the movies not yet upgraded
(it says so in the logs, with progress). It is idempotent: each movie is written once, only if
it is still outdated (an import meanwhile wrote its fields itself), and a finished upgrade is
recorded (`catalog_migrations`), so later starts skip the pass. A failed pass (the database
went away) is retried. Cached pages are retired as movies are upgraded, so that searches
cached meanwhile find them."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from pymongo.errors import PyMongoError

from services.catalog.repository import SEARCH_VERSION, MovieRepository

log = logging.getLogger(__name__)

NAME = f"search_fields_v{SEARCH_VERSION}"
BATCH_SIZE = 500
LOG_EVERY_SECONDS = 10.0
RETRY_SECONDS = 10.0


def upgrade(movies: MovieRepository, retire_cached_pages: Callable[[], None]) -> int:
    """Creates the missing indexes and, unless a finished pass is recorded, writes the search
    fields of every outdated movie; returns how many movies were upgraded."""
    movies.ensure_indexes()
    if movies.migration_done(NAME):
        return 0
    log.info("search fields migration started: until it ends, search misses the movies not "
             "yet upgraded", extra={"migration": NAME})
    start = time.monotonic()
    upgraded = upgrade_outdated(movies, retire_cached_pages)
    movies.mark_migration_done(NAME, upgraded)
    log.info("search fields migration done", extra={
        "migration": NAME, "upgraded": upgraded, "seconds": round(time.monotonic() - start, 1)})
    return upgraded


def upgrade_outdated(movies: MovieRepository, retire_cached_pages: Callable[[], None],
                     batch_size: int = BATCH_SIZE) -> int:
    """One pass over the outdated movies, logging progress and retiring the cached pages every
    LOG_EVERY_SECONDS and at the end; how many were upgraded."""
    start = last_log = time.monotonic()
    upgraded = 0
    for batch in movies.outdated(batch_size):
        upgraded += movies.upgrade(batch)
        if time.monotonic() - last_log >= LOG_EVERY_SECONDS:
            last_log = time.monotonic()
            retire_cached_pages()
            log.info("search fields migration in progress",
                     extra={"migration": NAME, "upgraded": upgraded,
                            "seconds": round(last_log - start, 1)})
    if upgraded:
        retire_cached_pages()
    return upgraded


def start_upgrade(movies: MovieRepository, retire_cached_pages: Callable[[], None]
                  ) -> threading.Thread:
    """Runs `upgrade` in a daemon thread until it succeeds."""
    def run() -> None:
        while True:
            try:
                upgrade(movies, retire_cached_pages)
                return
            except PyMongoError as exc:
                log.error("catalog upgrade failed; retrying",
                          extra={"error": str(exc), "retry_seconds": RETRY_SECONDS})
                time.sleep(RETRY_SECONDS)

    thread = threading.Thread(target=run, name="catalog-upgrade", daemon=True)
    thread.start()
    log.info("catalog upgrade running in the background (indexes, search fields)")
    return thread
