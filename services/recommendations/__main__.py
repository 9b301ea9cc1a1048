"""Starts the recommendations service: `python -m services.recommendations`."""

from __future__ import annotations

import redis

from services.common import logs, mongo
from services.common.clients import admin_confirmer, internal_channel, jwks_verifier
from services.common.grpc_server import serve
from services.common.settings import Settings
from services.recommendations.peers import Peers
from services.recommendations.preference_cache import CachedPreferences
from services.recommendations.repository import PreferenceRepository, RunRepository
from services.recommendations.result_cache import ResultCache
from services.recommendations.server import RecommendationsServicer
from services.recommendations.service import RecommendationsService

# How long one request's claim on a key lasts: past it, a run lost to a crash (or still queued
# behind long imports) no longer stops a new request from starting another.
CLAIM_SECONDS = 300


def main() -> None:
    settings = Settings.from_env()
    logs.configure("recommendations", settings.log_level)
    if settings.recommendations_cache_ttl_seconds < 1:
        raise SystemExit("RECOMMENDATIONS_CACHE_TTL_SECONDS must be at least 1")
    db = mongo.connect(settings, "recommendations")
    runs = RunRepository(db)
    runs.ensure_indexes()
    client = redis.Redis.from_url(settings.redis_url, socket_timeout=2)
    results = ResultCache(client, settings.recommendations_cache_ttl_seconds, CLAIM_SECONDS)
    peers = Peers(internal_channel(settings, "ratings"), internal_channel(settings, "catalog"),
                  internal_channel(settings, "task"))
    preferences = CachedPreferences(PreferenceRepository(db), client)
    service = RecommendationsService(preferences, runs, results, peers)
    serve(settings, "recommendations", RecommendationsServicer(service),
          verifier=jwks_verifier(settings), confirm_admin=admin_confirmer(settings))


if __name__ == "__main__":
    main()
