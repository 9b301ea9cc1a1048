"""AuthService over gRPC: requests in, use cases called, responses out."""

from __future__ import annotations

import grpc

from marquee.auth.v1 import auth_pb2, auth_pb2_grpc
from services.auth.service import AuthService, IssuedToken
from services.common.rest import set_http_status


class AuthServicer(auth_pb2_grpc.AuthServiceServicer):
    def __init__(self, service: AuthService) -> None:
        self._service = service

    def Register(self, request: auth_pb2.RegisterRequest, context: grpc.ServicerContext
                 ) -> auth_pb2.TokenResponse:
        issued = self._service.register(
            username=request.username, password=request.password,
            email=request.email, name=request.name,
        )
        set_http_status(context, 201)
        return _token_response("User registered successfully", issued)

    def Login(self, request: auth_pb2.LoginRequest, context: grpc.ServicerContext
              ) -> auth_pb2.TokenResponse:
        issued = self._service.login(username=request.username, password=request.password)
        set_http_status(context, 201)
        return _token_response("User logged in successfully", issued)

    def VerifyToken(self, request: auth_pb2.VerifyTokenRequest, context: grpc.ServicerContext
                    ) -> auth_pb2.VerifyTokenResponse:
        caller, expires_at = self._service.verify(request.token)
        return auth_pb2.VerifyTokenResponse(
            valid=True, user_id=caller.user_id, username=caller.username, expires_at=expires_at
        )

    def GetAccountStatus(self, request: auth_pb2.GetAccountStatusRequest,
                         context: grpc.ServicerContext) -> auth_pb2.AccountStatus:
        exists, role, disabled = self._service.account_status(request.user_id)
        return auth_pb2.AccountStatus(exists=exists, role=role, disabled=disabled)

    def GetJwks(self, request: auth_pb2.GetJwksRequest, context: grpc.ServicerContext
                ) -> auth_pb2.GetJwksResponse:
        return auth_pb2.GetJwksResponse(keys=[auth_pb2.Jwk(**jwk) for jwk in self._service.jwks()])


def _token_response(message: str, issued: IssuedToken) -> auth_pb2.TokenResponse:
    return auth_pb2.TokenResponse(
        message=message, access_token=issued.access_token, token_type="Bearer",
        expires_in=issued.expires_in,
    )
