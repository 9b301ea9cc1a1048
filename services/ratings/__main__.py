"""Starts the ratings service: `python -m services.ratings`."""

from __future__ import annotations

import threading

from services.common import logs, mongo, periodic
from services.common.clients import admin_confirmer, internal_channel, jwks_verifier
from services.common.grpc_server import serve
from services.common.settings import Settings
from services.ratings.catalog_client import CatalogClient
from services.ratings.repository import CountRepository, RatingRepository
from services.ratings.server import RatingsServicer
from services.ratings.service import RatingsService


def main() -> None:
    settings = Settings.from_env()
    logs.configure("ratings", settings.log_level)
    if settings.ratings_sync_seconds < 1:
        raise SystemExit("RATINGS_SYNC_SECONDS must be at least 1")
    db = mongo.connect(settings, "ratings")
    votes, counts = RatingRepository(db), CountRepository(db)
    votes.ensure_indexes()
    counts.ensure_indexes()
    service = RatingsService(votes, counts, CatalogClient(internal_channel(settings, "catalog")))
    stop = threading.Event()
    # Pushes the counts the catalog has not confirmed and recounts drifted ones.
    periodic.every(float(settings.ratings_sync_seconds), service.sweep, stop, name="counts-sweep")
    serve(settings, "ratings", RatingsServicer(service), verifier=jwks_verifier(settings),
          confirm_admin=admin_confirmer(settings), on_stop=stop.set)


if __name__ == "__main__":
    main()
