"""A recommendation run: one computation for one user and cache key, the task that carries it
on the workers, and its outcome."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from services.recommendations.criteria import Criteria

QUEUED, PROCESSING, COMPLETED, FAILED = "queued", "processing", "completed", "failed"


def now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


@dataclass(frozen=True, kw_only=True)
class Run:
    id: str  # the task's file_id: the worker finds the run by it
    user_id: str
    cache_key: str  # the Redis key the result goes to
    criteria: Criteria
    limit: int
    created_at: datetime
    task_id: str = ""  # set once the task service has created the task
    status: str = QUEUED
    recommendations: list[dict[str, Any]] = field(default_factory=list)
    error: str = ""
