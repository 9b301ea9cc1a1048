"""The MongoDB client each service opens once; a service touches only its own collections."""

from __future__ import annotations

from pymongo import MongoClient
from pymongo.database import Database

from services.common.settings import Settings


def connect(settings: Settings, app_name: str) -> Database:
    client: MongoClient = MongoClient(
        settings.mongo_uri, appname=app_name, tz_aware=False, serverSelectionTimeoutMS=10_000
    )
    return client[settings.mongo_db]
