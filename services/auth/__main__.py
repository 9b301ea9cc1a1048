"""Starts the auth service: `python -m services.auth`."""

from __future__ import annotations

from marquee.auth.v1 import auth_pb2, auth_pb2_grpc
from services.auth import keys
from services.auth.repository import UserRepository
from services.auth.server import POLICY, AuthServicer
from services.auth.service import AuthService
from services.common import logs, mongo
from services.common.grpc_server import serve
from services.common.settings import Settings


def main() -> None:
    settings = Settings.from_env()
    logs.configure("auth", settings.log_level)
    users = UserRepository(mongo.connect(settings, "auth"))
    users.ensure_indexes()
    service = AuthService(
        users,
        keys.load_or_create(settings.jwt_private_key_file),
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        ttl_seconds=settings.access_token_ttl_seconds,
        bcrypt_rounds=settings.bcrypt_rounds,
    )
    serve(
        name="auth",
        listen=settings.grpc_listen or settings.auth_addr,
        service_names=[auth_pb2.DESCRIPTOR.services_by_name["AuthService"].full_name],
        register=lambda server: auth_pb2_grpc.add_AuthServiceServicer_to_server(
            AuthServicer(service), server
        ),
        policy=POLICY,
        verifier=service.verifier,
        service_key=settings.service_key(),
    )


if __name__ == "__main__":
    main()
