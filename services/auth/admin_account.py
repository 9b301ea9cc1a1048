"""The administrator named by the settings (MARQUEE_ADMIN_*), created or updated when the auth
service starts, so that an admin exists from the first start without a well-known password."""

from __future__ import annotations

import logging
from typing import Protocol

import bcrypt

from services.auth import fields
from services.auth.email_address import normalise_email
from services.auth.repository import UserExists
from services.common.errors import InvalidArgument
from services.common.tokens import ADMIN_ROLE

log = logging.getLogger(__name__)


class AdminAccounts(Protocol):
    def make_admin(self, username: str, password_hash: bytes) -> bool:
        """Makes the user of this name an enabled administrator with this password; False
        when there is none."""
        ...

    def add(self, *, username: str, email: str, name: str, password_hash: bytes,
            role: str) -> str: ...


def ensure_admin(users: AdminAccounts, *, username: str, email: str, password: str,
                 bcrypt_rounds: int, password_min_chars: int) -> None:
    """Creates the administrator, or makes the user of that name an enabled administrator
    with this password. SystemExit saying which setting to change when they cannot."""
    username, email = username.strip(), email.strip()
    try:
        fields.check_new_username(username)
    except InvalidArgument as exc:
        raise SystemExit(f"MARQUEE_ADMIN_USERNAME is not usable: {exc}") from None
    try:
        email = normalise_email(email)
    except InvalidArgument as exc:
        raise SystemExit(f"MARQUEE_ADMIN_EMAIL is not usable: {exc}") from None
    try:  # the messages state the rule, never the password
        fields.check_new_password(password, password_min_chars)
    except InvalidArgument as exc:
        raise SystemExit(f"MARQUEE_ADMIN_PASSWORD is not usable: {exc}") from None
    password_hash = bcrypt.hashpw(password.encode(), bcrypt.gensalt(bcrypt_rounds))
    # Two replicas starting at once both find no admin and both insert: the unique index lets
    # one in, and the other makes the winner's record its update.
    for _ in range(2):
        if users.make_admin(username, password_hash):
            log.info("administrator updated", extra={"username": username})
            return
        try:
            users.add(username=username, email=email, name="Administrator",
                      password_hash=password_hash, role=ADMIN_ROLE)
        except UserExists as exc:
            if exc.field == "email":
                raise SystemExit(f"MARQUEE_ADMIN_EMAIL {email!r} belongs to another user: "
                                 "choose another address") from None
            continue
        log.info("administrator created", extra={"username": username})
        return
    raise SystemExit(f"the administrator {username!r} could not be created or updated")
