"""Starts the catalog service: `python -m services.catalog`."""

from __future__ import annotations

import redis

from services.catalog.cache import QueryCache
from services.catalog.candidates import CandidateFinder, CatalogCandidatesServicer
from services.catalog.migration import start_upgrade
from services.catalog.ratings_client import RatingsClient
from services.catalog.repository import MovieRepository
from services.catalog.server import CatalogServicer
from services.catalog.service import CatalogService
from services.common import logs, mongo
from services.common.clients import admin_confirmer, internal_channel, jwks_verifier
from services.common.grpc_server import serve
from services.common.settings import Settings


def main() -> None:
    settings = Settings.from_env()
    logs.configure("catalog", settings.log_level)
    db = mongo.connect(settings, "catalog")
    movies = MovieRepository(db)
    client = redis.Redis.from_url(settings.redis_url, socket_timeout=1)
    cache = QueryCache(client, settings.catalog_cache_ttl_seconds,
                       settings.catalog_cache_max_page_bytes)
    # Indexes and the search fields of older movies, in the background (migration.py).
    start_upgrade(movies, cache.invalidate)
    ratings = RatingsClient(internal_channel(settings, "ratings"))
    service = CatalogService(movies, cache, delete_ratings=ratings.delete_movie_ratings)
    candidates = CatalogCandidatesServicer(CandidateFinder(db, client))
    serve(settings, "catalog", CatalogServicer(service), candidates,
          verifier=jwks_verifier(settings), confirm_admin=admin_confirmer(settings))


if __name__ == "__main__":
    main()
