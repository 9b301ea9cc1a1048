"""RatingsService over gRPC, and the REST shapes of its answers."""

from __future__ import annotations

from datetime import UTC
from typing import Any

import grpc
from google.api import httpbody_pb2
from google.protobuf import json_format

from marquee.ratings.v1 import ratings_pb2, ratings_pb2_grpc
from services.common.access import current_caller
from services.common.rest import json_body, set_http_status
from services.ratings.records import Rating
from services.ratings.service import RatingPage, RatingsService


def to_proto(rating: Rating) -> ratings_pb2.Rating:
    message = ratings_pb2.Rating(id=rating.id, movie_id=rating.movie_id,
                                 rating_type=rating.rating_type, user=rating.username)
    message.created_at.FromDatetime(rating.created_at.replace(tzinfo=UTC))
    message.updated_at.FromDatetime(rating.updated_at.replace(tzinfo=UTC))
    return message


def rest_json(rating: Rating) -> dict[str, Any]:
    """A rating as the transcoder writes one (RFC 3339 times), for the bare-array list."""
    return json_format.MessageToDict(to_proto(rating), preserving_proto_field_name=True,
                                     always_print_fields_with_no_presence=True)


def _page(service: RatingsService, request: ratings_pb2.ListRatingsRequest, *,
          with_total: bool) -> RatingPage:
    def opt(name: str) -> int | None:
        return getattr(request, name) if request.HasField(name) else None

    return service.list_ratings(current_caller(), movie_id=request.movie_id, page=opt("page"),
                                limit=opt("limit"), page_size=request.page_size,
                                page_token=request.page_token, with_total=with_total)


class RatingsServicer(ratings_pb2_grpc.RatingsServiceServicer):
    def __init__(self, service: RatingsService) -> None:
        self._service = service

    def CreateRating(self, request: ratings_pb2.CreateRatingRequest,
                     context: grpc.ServicerContext) -> ratings_pb2.Rating:
        rating = self._service.create(current_caller(), request.rating.movie_id,
                                      request.rating.rating_type)
        set_http_status(context, 201)
        return to_proto(rating)

    def GetRating(self, request: ratings_pb2.GetRatingRequest, context: grpc.ServicerContext
                  ) -> ratings_pb2.Rating:
        return to_proto(self._service.get(current_caller(), request.rating_id))

    def ListRatings(self, request: ratings_pb2.ListRatingsRequest,
                    context: grpc.ServicerContext) -> ratings_pb2.ListRatingsResponse:
        page = _page(self._service, request, with_total=True)
        return ratings_pb2.ListRatingsResponse(
            ratings=[to_proto(r) for r in page.ratings], next_page_token=page.next_page_token,
            total_size=page.total_size or 0)

    def ListRatingsJson(self, request: ratings_pb2.ListRatingsRequest,
                        context: grpc.ServicerContext) -> httpbody_pb2.HttpBody:
        page = _page(self._service, request, with_total=False)
        if page.next_page_token:  # the body stays the contract's bare array
            context.send_initial_metadata((("x-next-page-token", page.next_page_token),))
        return json_body([rest_json(r) for r in page.ratings])

    def UpdateRating(self, request: ratings_pb2.UpdateRatingRequest,
                     context: grpc.ServicerContext) -> ratings_pb2.Rating:
        sent = request.rating
        return to_proto(self._service.update(current_caller(), request.rating_id,
                                             sent.rating_type, movie_id=sent.movie_id,
                                             sent_id=sent.id))

    def DeleteRating(self, request: ratings_pb2.DeleteRatingRequest,
                     context: grpc.ServicerContext) -> httpbody_pb2.HttpBody:
        self._service.delete(current_caller(), request.rating_id)
        set_http_status(context, 204)
        return httpbody_pb2.HttpBody()

    def DeleteMovieRatings(self, request: ratings_pb2.DeleteMovieRatingsRequest,
                           context: grpc.ServicerContext
                           ) -> ratings_pb2.DeleteMovieRatingsResponse:
        return ratings_pb2.DeleteMovieRatingsResponse(
            deleted=self._service.delete_movie_ratings(request.movie_id))

    def ListUserVotes(self, request: ratings_pb2.ListUserVotesRequest,
                      context: grpc.ServicerContext) -> ratings_pb2.ListUserVotesResponse:
        votes, version = self._service.user_votes(request.user_id, request.limit)
        return ratings_pb2.ListUserVotesResponse(
            votes=[ratings_pb2.UserVote(movie_id=v.movie_id, rating_type=v.rating_type)
                   for v in votes], version=version)
