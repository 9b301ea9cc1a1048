"""The ratings service, as the catalog calls it: deleting a movie's ratings with the movie."""

from __future__ import annotations

import grpc

from marquee.ratings.v1 import ratings_pb2, ratings_pb2_grpc
from services.common.errors import Unavailable

# An admin's delete waits this long for the ratings service, then answers UNAVAILABLE.
CALL_TIMEOUT_SECONDS = 10.0


class RatingsClient:
    def __init__(self, channel: grpc.Channel) -> None:
        self._stub = ratings_pb2_grpc.RatingsServiceStub(channel)

    def delete_movie_ratings(self, movie_id: str) -> None:
        """Unavailable when the ratings service does not confirm the deletion: the caller
        must then leave the movie in place."""
        try:
            self._stub.DeleteMovieRatings(
                ratings_pb2.DeleteMovieRatingsRequest(movie_id=movie_id),
                timeout=CALL_TIMEOUT_SECONDS)
        except grpc.RpcError as exc:
            raise Unavailable(f"the movie's ratings cannot be deleted now "
                              f"({exc.code().name}); nothing was deleted, try again") from None
