"""What the auth service accepts in each field of a request. Every length is checked before any
pattern runs or any text is encoded, so a field costs no more than its bound allows, however
long the client made it; and no refusal quotes what the client sent."""

from __future__ import annotations

import re
import unicodedata

from services.common.errors import InvalidArgument

MIN_USERNAME = 3
MAX_USERNAME = 32
USERNAME = re.compile(r"[A-Za-z0-9_.-]+")
MAX_PASSWORD_BYTES = 72  # bcrypt reads only the first 72 bytes: refuse rather than truncate
MAX_NAME = 200
_USERNAME_RULE = (f"username must be {MIN_USERNAME}-{MAX_USERNAME} characters: letters, digits, "
                  "'_', '.' or '-'")


def check_new_username(username: str) -> None:
    if not MIN_USERNAME <= len(username) <= MAX_USERNAME or not USERNAME.fullmatch(username):
        raise InvalidArgument(_USERNAME_RULE)


def check_login_username(username: str) -> None:
    """Passes any name that a user could have; one that breaks the pattern is simply not
    found."""
    if len(username) > MAX_USERNAME:
        raise InvalidArgument(f"username must be at most {MAX_USERNAME} characters")


def check_new_password(password: str, min_chars: int) -> None:
    if len(password) < min_chars:
        raise InvalidArgument(f"password must be at least {min_chars} characters")
    check_login_password(password)


def check_login_password(password: str) -> None:
    # A character is at least one byte: a long string is refused before it is encoded.
    if len(password) > MAX_PASSWORD_BYTES or len(password.encode()) > MAX_PASSWORD_BYTES:
        raise InvalidArgument(f"password must be at most {MAX_PASSWORD_BYTES} bytes of UTF-8")


def check_display_name(name: str) -> None:
    if len(name) > MAX_NAME:
        raise InvalidArgument(f"name must be at most {MAX_NAME} characters")
    if any(unicodedata.category(ch) == "Cc" for ch in name):
        raise InvalidArgument("name must not contain control characters (such as line breaks)")
