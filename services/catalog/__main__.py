"""Starts the catalog service: `python -m services.catalog`."""

from __future__ import annotations

import redis

from marquee.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from services.catalog.cache import QueryCache
from services.catalog.repository import MovieRepository
from services.catalog.server import POLICY, CatalogServicer
from services.catalog.service import CatalogService
from services.common import logs, mongo
from services.common.clients import jwks_verifier
from services.common.grpc_server import serve
from services.common.settings import Settings


def main() -> None:
    settings = Settings.from_env()
    logs.configure("catalog", settings.log_level)
    movies = MovieRepository(mongo.connect(settings, "catalog"))
    movies.ensure_indexes()
    cache = QueryCache(redis.Redis.from_url(settings.redis_url, socket_timeout=1),
                       settings.catalog_cache_ttl_seconds)
    service = CatalogService(movies, cache)
    serve(
        name="catalog",
        listen=settings.grpc_listen or settings.catalog_addr,
        service_names=[catalog_pb2.DESCRIPTOR.services_by_name["CatalogService"].full_name],
        register=lambda server: catalog_pb2_grpc.add_CatalogServiceServicer_to_server(
            CatalogServicer(service), server
        ),
        policy=POLICY,
        verifier=jwks_verifier(settings),
        service_key=settings.service_key(),
    )


if __name__ == "__main__":
    main()
