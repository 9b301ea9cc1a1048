"""AuthService over gRPC: requests in, use cases called, responses out."""

from __future__ import annotations

import grpc

from marquee.auth.v1 import auth_pb2, auth_pb2_grpc
from services.auth.profiles import UserProfile
from services.auth.service import AuthService, IssuedToken
from services.auth.user_admin import UserAdmin
from services.common.access import current_caller
from services.common.rest import set_http_status
from services.common.tokens import bearer_token


class AuthServicer(auth_pb2_grpc.AuthServiceServicer):
    def __init__(self, service: AuthService, user_admin: UserAdmin) -> None:
        self._service = service
        self._user_admin = user_admin

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

    def Refresh(self, request: auth_pb2.RefreshRequest, context: grpc.ServicerContext
                ) -> auth_pb2.TokenResponse:
        return _token_response("Tokens refreshed", self._service.refresh(request.refresh_token))

    def Logout(self, request: auth_pb2.LogoutRequest, context: grpc.ServicerContext
               ) -> auth_pb2.LogoutResponse:
        if request.all:
            # The method is public (a refresh token is credential enough for one session), so
            # the bearer token that names the user is checked here.
            metadata = {k: v for k, v in context.invocation_metadata() if isinstance(v, str)}
            ended = self._service.logout_everywhere(bearer_token(metadata))
        else:
            ended = self._service.logout(request.refresh_token)
        return auth_pb2.LogoutResponse(message="Logged out", sessions_ended=ended)

    def GetMe(self, request: auth_pb2.GetMeRequest, context: grpc.ServicerContext
              ) -> auth_pb2.UserProfile:
        return _profile(self._service.me(current_caller()))

    def ListUsers(self, request: auth_pb2.ListUsersRequest, context: grpc.ServicerContext
                  ) -> auth_pb2.ListUsersResponse:
        def opt(name: str) -> int | None:
            return getattr(request, name) if request.HasField(name) else None

        page = self._user_admin.list_users(page=opt("page"), limit=opt("limit"),
                                           page_size=request.page_size,
                                           page_token=request.page_token, search=request.search)
        return auth_pb2.ListUsersResponse(users=[_profile(u) for u in page.users],
                                          next_page_token=page.next_page_token,
                                          total_size=page.total)

    def UpdateUser(self, request: auth_pb2.UpdateUserRequest, context: grpc.ServicerContext
                   ) -> auth_pb2.UserProfile:
        return _profile(self._user_admin.update_user(
            request.user_id,
            role=request.role if request.HasField("role") else None,
            disabled=request.disabled if request.HasField("disabled") else None,
        ))

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
        expires_in=issued.expires_in, refresh_token=issued.refresh_token,
        refresh_expires_in=issued.refresh_expires_in,
    )


def _profile(profile: UserProfile) -> auth_pb2.UserProfile:
    return auth_pb2.UserProfile(id=profile.id, username=profile.username, email=profile.email,
                                name=profile.name, role=profile.role,
                                created_at=profile.created_at, disabled=profile.disabled)
