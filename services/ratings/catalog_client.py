"""The catalog, as the ratings service calls it: whether movies exist, and each movie's counts."""

from __future__ import annotations

import grpc

from marquee.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from services.common.clients import PEER_CALL_TIMEOUT_SECONDS
from services.common.errors import NotFound, Unavailable
from services.ratings.records import VoteCounts

# A vote call waits for the catalog; past this it is answered UNAVAILABLE (and undone).
CALL_TIMEOUT_SECONDS = PEER_CALL_TIMEOUT_SECONDS


def _unavailable(exc: grpc.RpcError) -> Unavailable:
    return Unavailable(f"the catalog cannot be reached ({exc.code().name})")


class CatalogClient:
    def __init__(self, channel: grpc.Channel) -> None:
        self._stub = catalog_pb2_grpc.CatalogServiceStub(channel)

    def existing(self, movie_ids: list[str]) -> set[str]:
        try:
            reply = self._stub.CheckMovies(catalog_pb2.CheckMoviesRequest(movie_ids=movie_ids),
                                           timeout=CALL_TIMEOUT_SECONDS)
        except grpc.RpcError as exc:
            raise _unavailable(exc) from None
        return set(reply.existing_ids)

    def set_counts(self, counts: VoteCounts) -> None:
        request = catalog_pb2.SetVoteCountsRequest(
            movie_id=counts.movie_id, upvotes=counts.upvotes, downvotes=counts.downvotes,
            version=counts.version)
        try:
            self._stub.SetVoteCounts(request, timeout=CALL_TIMEOUT_SECONDS)
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                raise NotFound(f"no movie with id {counts.movie_id!r}") from None
            raise _unavailable(exc) from None
