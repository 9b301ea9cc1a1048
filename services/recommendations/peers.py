"""The other services as the recommendations service calls them: the ratings (the version of a
user's votes), the catalog (its version) and the task service (a recommendation task)."""

from __future__ import annotations

import grpc

from marquee.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from marquee.ratings.v1 import ratings_pb2, ratings_pb2_grpc
from marquee.task.v1 import task_pb2, task_pb2_grpc
from services.common import jobs
from services.common.clients import PEER_CALL_TIMEOUT_SECONDS
from services.common.errors import LimitReached, Unavailable

# The version reads are on the request path of every GET /recommendations, and so is creating
# the task on a cache miss: each waits as long as any call between services does. (The task's
# 15 s was once passed under the fuzz test's load on the embedded database, which serves one
# query at a time: the task was created 15.0 s in, after the request had answered 503.)
VERSION_TIMEOUT_SECONDS = TASK_TIMEOUT_SECONDS = PEER_CALL_TIMEOUT_SECONDS


def _unavailable(service: str, exc: grpc.RpcError) -> Unavailable:
    return Unavailable(f"the {service} service cannot be reached ({exc.code().name}); "
                       "try again")


class Peers:
    def __init__(self, ratings: grpc.Channel, catalog: grpc.Channel, tasks: grpc.Channel
                 ) -> None:
        self._ratings = ratings_pb2_grpc.RatingsServiceStub(ratings)
        self._catalog = catalog_pb2_grpc.CatalogCandidatesServiceStub(catalog)
        self._tasks = task_pb2_grpc.TaskServiceStub(tasks)

    def votes_version(self, user_id: str) -> str:
        try:
            return str(self._ratings.ListUserVotes(
                ratings_pb2.ListUserVotesRequest(user_id=user_id, limit=0),
                timeout=VERSION_TIMEOUT_SECONDS).version)
        except grpc.RpcError as exc:
            raise _unavailable("ratings", exc) from None

    def catalog_version(self) -> int:
        try:
            return int(self._catalog.GetCatalogVersion(
                catalog_pb2.GetCatalogVersionRequest(), timeout=VERSION_TIMEOUT_SECONDS).version)
        except grpc.RpcError as exc:
            raise _unavailable("catalog", exc) from None

    def create_task(self, user_id: str, username: str, run_id: str) -> str:
        try:
            task = self._tasks.CreateTask(task_pb2.CreateTaskRequest(
                user=user_id, username=username, kind=jobs.RECOMMEND, file_id=run_id,
                original_name="recommendations"), timeout=TASK_TIMEOUT_SECONDS)
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                raise LimitReached(exc.details()) from None
            raise _unavailable("task", exc) from None
        return str(task.task_id)
