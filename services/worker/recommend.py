"""The recommendation job: computes one run's list and hands it to the recommendations service.

Memory stays small whatever the catalog's size: the catalog is asked for a bounded number of
candidates (its best by vote_average that satisfy the constraints and that the user has not
voted on, read through an index), and only those are scored (services/worker/ranking.py). The
candidates come in two passes: first those with at least the minimum vote count m, whose
weighted rating is well founded; then, only if too few, the others.

The job is idempotent: a redelivered message finds the task ended or leased and steps aside,
and a run that already has its result is not computed again.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

import grpc

from marquee.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from marquee.ratings.v1 import ratings_pb2, ratings_pb2_grpc
from marquee.recommendations.v1 import recommendations_pb2, recommendations_pb2_grpc
from marquee.task.v1 import task_pb2_grpc
from services.common import jobs
from services.worker import task_claims
from services.worker.ranking import Signals, rank

log = logging.getLogger(__name__)

CALL_TIMEOUT_SECONDS = 60
# The user's most recent votes that are excluded (the catalog takes at most 2000 exclusions,
# the rest is left for the first pass's candidates), and the up-votes whose genres count.
MAX_VOTES = 1500
MAX_LIKED = 500
# Candidates scored: enough that popularity and the weighted rating can reorder the best by
# vote_average, few enough to hold in memory at once.
MIN_CANDIDATES, MAX_CANDIDATES = 100, 500


@dataclass(frozen=True)
class RecommendClients:
    tasks: task_pb2_grpc.TaskServiceStub
    ratings: ratings_pb2_grpc.RatingsServiceStub
    catalog: catalog_pb2_grpc.CatalogCandidatesServiceStub
    recommendations: recommendations_pb2_grpc.RecommendationsServiceStub


def recommend(clients: RecommendClients, task_id: str, worker_id: str, min_votes: int) -> str:
    """Runs the job for one task; returns the status it ended with ('skipped' when another
    worker holds the task or it already ended)."""
    claim = task_claims.claim(clients.tasks, task_id, worker_id, {jobs.RECOMMEND})
    if isinstance(claim, str):
        return claim
    run_id = claim.task.file_id
    try:
        started = clients.recommendations.StartRun(
            recommendations_pb2.StartRunRequest(run_id=run_id), timeout=CALL_TIMEOUT_SECONDS)
        if not started.completed:
            items = compute(clients, started.spec, min_votes)
            clients.recommendations.FinishRun(recommendations_pb2.FinishRunRequest(
                run_id=run_id, recommendations_json=json.dumps(items, ensure_ascii=False)),
                timeout=CALL_TIMEOUT_SECONDS)
            log.info("recommendations computed", extra={"task_id": task_id,
                                                         "count": len(items)})
    except grpc.RpcError as exc:
        error = f"the recommendations could not be computed: {exc.details() or exc.code().name}"
        log.warning("recommendations failed", extra={"task_id": task_id, "error": error})
        try:
            clients.recommendations.FinishRun(recommendations_pb2.FinishRunRequest(
                run_id=run_id, error=error), timeout=CALL_TIMEOUT_SECONDS)
        except grpc.RpcError:
            log.warning("run not marked failed; its claim expires", extra={"run_id": run_id})
        return task_claims.finish(clients.tasks, task_id, worker_id, "failed", error)
    return task_claims.finish(clients.tasks, task_id, worker_id, "done")


def compute(clients: RecommendClients, spec: recommendations_pb2.RunSpec, min_votes: int
            ) -> list[dict[str, Any]]:
    """The ranked list for the spec: the user's votes, the candidates, the scores."""
    votes = clients.ratings.ListUserVotes(
        ratings_pb2.ListUserVotesRequest(user_id=spec.user_id, limit=MAX_VOTES),
        timeout=CALL_TIMEOUT_SECONDS).votes
    voted = [v.movie_id for v in votes]
    liked = [v.movie_id for v in votes if v.rating_type == "UPVOTE"][:MAX_LIKED]
    want = min(MAX_CANDIDATES, max(MIN_CANDIDATES, 5 * spec.limit))
    first = _candidates(clients, spec, voted, liked, want, min_votes)
    movies = [json.loads(m) for m in first.movies_json]
    if len(movies) < spec.limit and min_votes > 0:
        # Too few well-voted movies match: the rest, ranked all the same.
        more = _candidates(clients, spec, voted + [m["_id"] for m in movies], [], want, 0)
        movies += [json.loads(m) for m in more.movies_json]
    signals = Signals(mean_vote_average=first.mean_vote_average, min_votes=min_votes,
                      liked_genres=dict(first.liked_genres), wanted_genres=tuple(spec.genres))
    return rank(movies, signals, spec.limit)


def _candidates(clients: RecommendClients, spec: recommendations_pb2.RunSpec,
                exclude: list[str], liked: list[str], limit: int, min_votes: int
                ) -> catalog_pb2.FindCandidatesResponse:
    request = catalog_pb2.FindCandidatesRequest(
        genres=spec.genres, year_min=spec.year_min, year_max=spec.year_max,
        language=spec.language, exclude_ids=exclude, limit=limit, min_vote_count=min_votes,
        liked_ids=liked)
    if spec.HasField("rating_min"):
        request.rating_min = spec.rating_min
    if spec.HasField("rating_max"):
        request.rating_max = spec.rating_max
    return clients.catalog.FindCandidates(request, timeout=CALL_TIMEOUT_SECONDS)
