"""RecommendationsService over gRPC, and the REST shapes of its answers."""

from __future__ import annotations

from typing import Any

import grpc
from google.api import httpbody_pb2
from google.protobuf import json_format, struct_pb2

from marquee.recommendations.v1 import recommendations_pb2 as pb
from marquee.recommendations.v1 import recommendations_pb2_grpc
from services.common.access import current_caller
from services.common.rest import json_body, set_http_status
from services.recommendations.records import COMPLETED, FAILED, Run
from services.recommendations.service import RecommendationsService

QUEUED_MESSAGE = "Recommendations are being calculated!"


def _struct(value: dict[str, Any]) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    message.update(value)
    return message


def status_json(run: Run) -> dict[str, Any]:
    body: dict[str, Any] = {"task_id": run.task_id, "status": run.status,
                            "recommendations": run.recommendations
                            if run.status == COMPLETED else []}
    if run.status == FAILED:
        body["error"] = run.error
    return body


def _spec(run: Run) -> pb.RunSpec:
    c = run.criteria
    spec = pb.RunSpec(user_id=run.user_id, genres=c.genres, language=c.language,
                      limit=run.limit)
    if c.year is not None:
        spec.year_min, spec.year_max = c.year
    if c.rating is not None:
        spec.rating_min, spec.rating_max = c.rating
    return spec


class RecommendationsServicer(recommendations_pb2_grpc.RecommendationsServiceServicer):
    def __init__(self, service: RecommendationsService) -> None:
        self._service = service

    def SavePreferences(self, request: pb.SavePreferencesRequest,
                        context: grpc.ServicerContext) -> pb.SavePreferencesResponse:
        sent = json_format.MessageToDict(request.preferences)
        stored = self._service.save_preferences(current_caller(), sent, request.user_id)
        return pb.SavePreferencesResponse(message="Preferences updated successfully",
                                          data=_struct(stored))

    def GetPreferences(self, request: pb.GetPreferencesRequest, context: grpc.ServicerContext
                       ) -> pb.GetPreferencesResponse:
        return pb.GetPreferencesResponse(
            data=_struct(self._service.get_preferences(current_caller())))

    def GetRecommendations(self, request: pb.GetRecommendationsRequest,
                           context: grpc.ServicerContext) -> httpbody_pb2.HttpBody:
        answer = self._service.recommend(
            current_caller(), genre=list(request.genre), year=request.year,
            rating=request.rating, language=request.language,
            limit=request.limit if request.HasField("limit") else None)
        if answer.recommendations is not None:
            return json_body({"recommendations": answer.recommendations, "cached": True})
        set_http_status(context, 202)
        return json_body({"task_id": answer.task_id, "message": QUEUED_MESSAGE})

    def GetRecommendationStatus(self, request: pb.GetRecommendationStatusRequest,
                                context: grpc.ServicerContext) -> httpbody_pb2.HttpBody:
        return json_body(status_json(self._service.status(current_caller(), request.task_id)))

    def StartRun(self, request: pb.StartRunRequest, context: grpc.ServicerContext
                 ) -> pb.StartRunResponse:
        run = self._service.start_run(request.run_id)
        return pb.StartRunResponse(spec=_spec(run), completed=run.status == COMPLETED)

    def FinishRun(self, request: pb.FinishRunRequest, context: grpc.ServicerContext
                  ) -> pb.FinishRunResponse:
        self._service.finish_run(request.run_id, request.recommendations_json, request.error)
        return pb.FinishRunResponse()
