"""Starts the auth service: `python -m services.auth`."""

from __future__ import annotations

import time

from services.auth import keys
from services.auth.admin_account import ensure_admin
from services.auth.repository import LoginFailureRepository, SessionRepository, UserRepository
from services.auth.server import AuthServicer
from services.auth.service import AuthService
from services.auth.sessions import Sessions
from services.auth.throttle import LoginThrottle, ThrottlePolicy
from services.auth.user_admin import UserAdmin
from services.common import logs, mongo
from services.common.grpc_server import serve
from services.common.settings import Settings


def main() -> None:
    settings = Settings.from_env()
    logs.configure("auth", settings.log_level)
    db = mongo.connect(settings, "auth")
    users, failed_logins = UserRepository(db), LoginFailureRepository(db)
    session_store = SessionRepository(db)
    users.ensure_indexes()
    failed_logins.ensure_indexes()
    session_store.ensure_indexes()
    if settings.admin_password:
        ensure_admin(users, username=settings.admin_username, email=settings.admin_email,
                     password=settings.admin_password, bcrypt_rounds=settings.bcrypt_rounds,
                     password_min_chars=settings.password_min_chars)
    throttle = LoginThrottle(failed_logins, ThrottlePolicy(
        max_failures=settings.login_max_failures,
        window_seconds=settings.login_failure_window_seconds,
        lock_seconds=settings.login_lock_seconds,
        max_lock_seconds=settings.login_max_lock_seconds,
    ))
    sessions = Sessions(session_store, users,
                        refresh_ttl_seconds=settings.refresh_token_ttl_seconds,
                        session_max_seconds=settings.session_max_seconds, clock=time.time)
    service = AuthService(
        users,
        keys.load_or_create(settings.jwt_private_key_file),
        sessions=sessions,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        ttl_seconds=settings.access_token_ttl_seconds,
        throttle=throttle,
        bcrypt_rounds=settings.bcrypt_rounds,
        password_min_chars=settings.password_min_chars,
    )
    serve(settings, "auth", AuthServicer(service, UserAdmin(users, sessions)),
          verifier=service.verifier, confirm_admin=service.confirm_admin)


if __name__ == "__main__":
    main()
