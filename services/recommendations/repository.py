"""The recommendations collections: `recommendations_preferences` (one document per user, with
a version that every save moves on) and `recommendations_runs` (one per computation, found by
its task id for the status route; old ones expire)."""

from __future__ import annotations

from typing import Any, cast

from pymongo import ASCENDING, ReturnDocument
from pymongo.database import Database

from services.recommendations.criteria import Criteria
from services.recommendations.records import COMPLETED, FAILED, PROCESSING, QUEUED, Run, now

# A run's record outlives its cached result by far; a day later nobody polls it.
RUN_RETENTION_SECONDS = 24 * 3600


class PreferenceRepository:
    def __init__(self, db: Database) -> None:
        self._prefs = db["recommendations_preferences"]

    def get(self, user_id: str) -> tuple[dict[str, Any], int]:
        """(the stored preferences, their version); ({}, 0) when none were saved."""
        doc = self._prefs.find_one({"_id": user_id})
        return ({}, 0) if doc is None else (doc.get("preferences") or {}, doc.get("version", 0))

    def save(self, user_id: str, preferences: dict[str, Any]) -> int:
        """Replaces the preferences and moves the version on, in one step; the new version."""
        doc = cast(dict[str, Any], self._prefs.find_one_and_update(
            {"_id": user_id}, {"$set": {"preferences": preferences, "updated_at": now()},
                               "$inc": {"version": 1}},
            upsert=True, return_document=ReturnDocument.AFTER))
        return int(doc["version"])


def _criteria(doc: dict[str, Any]) -> Criteria:
    year, rating = doc.get("year") or None, doc.get("rating") or None
    return Criteria(genres=tuple(doc.get("genres") or ()),
                    year=(int(year[0]), int(year[1])) if year else None,
                    rating=(float(rating[0]), float(rating[1])) if rating else None,
                    language=doc.get("language") or "")


def run_from_document(doc: dict[str, Any]) -> Run:
    return Run(id=doc["_id"], user_id=doc["user_id"], cache_key=doc["cache_key"],
               criteria=_criteria(doc["criteria"]), limit=doc["limit"],
               created_at=doc["created_at"], task_id=doc.get("task_id") or "",
               status=doc.get("status", QUEUED),
               recommendations=doc.get("recommendations") or [], error=doc.get("error") or "")


def _run(doc: dict[str, Any] | None) -> Run | None:
    return None if doc is None else run_from_document(doc)


class RunRepository:
    def __init__(self, db: Database) -> None:
        self._runs = db["recommendations_runs"]

    def ensure_indexes(self) -> None:
        self._runs.create_index([("task_id", ASCENDING)], name="by_task")
        self._runs.create_index([("created_at", ASCENDING)], name="expiry",
                                expireAfterSeconds=RUN_RETENTION_SECONDS)

    def insert(self, run: Run) -> None:
        c = run.criteria
        self._runs.insert_one({
            "_id": run.id, "user_id": run.user_id, "cache_key": run.cache_key,
            "criteria": {"genres": list(c.genres), "year": list(c.year or ()),
                         "rating": list(c.rating or ()), "language": c.language},
            "limit": run.limit, "created_at": run.created_at, "task_id": run.task_id,
            "status": run.status,
        })

    def get(self, run_id: str) -> Run | None:
        return _run(self._runs.find_one({"_id": run_id}))

    def by_task(self, task_id: str) -> Run | None:
        return _run(self._runs.find_one({"task_id": task_id}))

    def set_task(self, run_id: str, task_id: str) -> None:
        self._runs.update_one({"_id": run_id}, {"$set": {"task_id": task_id}})

    def delete(self, run_id: str) -> None:
        self._runs.delete_one({"_id": run_id})

    def start(self, run_id: str) -> Run | None:
        """Marks a queued run processing (a completed one stays as it is); the run."""
        self._runs.update_one({"_id": run_id, "status": QUEUED}, {"$set": {"status": PROCESSING}})
        return self.get(run_id)

    def finish(self, run_id: str, recommendations: list[dict[str, Any]], error: str) -> None:
        """Completes the run, or fails it; a completed run stays completed (a job delivered
        twice finishes it twice)."""
        status = FAILED if error else COMPLETED
        self._runs.update_one({"_id": run_id, "status": {"$ne": COMPLETED}}, {"$set": {
            "status": status, "recommendations": recommendations, "error": error}})
