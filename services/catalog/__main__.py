"""Starts the catalog service: `python -m services.catalog`."""

from __future__ import annotations

import redis

from services.catalog.cache import QueryCache
from services.catalog.repository import MovieRepository
from services.catalog.server import CatalogServicer
from services.catalog.service import CatalogService
from services.common import logs, mongo
from services.common.clients import admin_confirmer, jwks_verifier
from services.common.grpc_server import serve
from services.common.settings import Settings


def main() -> None:
    settings = Settings.from_env()
    logs.configure("catalog", settings.log_level)
    movies = MovieRepository(mongo.connect(settings, "catalog"))
    movies.ensure_indexes()
    cache = QueryCache(redis.Redis.from_url(settings.redis_url, socket_timeout=1),
                       settings.catalog_cache_ttl_seconds, settings.catalog_cache_max_page_bytes)
    service = CatalogService(movies, cache)
    serve(settings, "catalog", CatalogServicer(service), verifier=jwks_verifier(settings),
          confirm_admin=admin_confirmer(settings))


if __name__ == "__main__":
    main()
