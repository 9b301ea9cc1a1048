"""The user's sessions, one per gateway URL, in $XDG_CONFIG_HOME/marquee/sessions.json
(~/.config/marquee without it): a directory of mode 0700 and a file of mode 0600, since a
refresh token logs in as the user for days. Writes are atomic (a private temporary file renamed
into place), and a lock file serialises refreshes across concurrent `marquee` processes: the
auth service rotates refresh tokens and ends the whole session when a used one comes back, so
two processes must never present the same one."""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

FILE_NAME = "sessions.json"
LOCK_NAME = "sessions.lock"


def config_dir(environ: dict[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    base = env.get("XDG_CONFIG_HOME") or str(Path(env.get("HOME") or Path.home()) / ".config")
    return Path(base) / "marquee"


@dataclass
class StoredSession:
    username: str
    access_token: str
    # Unix seconds.
    access_expires_at: float
    refresh_token: str
    refresh_expires_at: float

    @classmethod
    def from_tokens(
        cls,
        username: str,
        access_token: str,
        expires_in: int,
        refresh_token: str,
        refresh_expires_in: int,
        now: float | None = None,
    ) -> StoredSession:
        at = time.time() if now is None else now
        return cls(username, access_token, at + expires_in, refresh_token, at + refresh_expires_in)

    def access_fresh(self, now: float | None = None, margin: float = 30.0) -> bool:
        """Whether the access token will still be valid a little while from now (the margin
        covers clock skew and the call's own time in flight)."""
        return (time.time() if now is None else now) + margin < self.access_expires_at


class TokenStore:
    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory or config_dir()
        self.path = self.directory / FILE_NAME

    def _read_all(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError):
            # A damaged file is as good as no sessions; the next login rewrites it.
            return {}
        sessions = data.get("sessions") if isinstance(data, dict) else None
        return sessions if isinstance(sessions, dict) else {}

    def _write_all(self, sessions: dict[str, Any]) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.directory, 0o700)
        tmp = self.path.with_name(f".{FILE_NAME}.{os.getpid()}.tmp")
        # Created 0600 from the start, so the tokens are never readable by others, even briefly.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump({"sessions": sessions}, f, indent=2, sort_keys=True)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def get(self, url: str) -> StoredSession | None:
        raw = self._read_all().get(url)
        try:
            return StoredSession(**raw) if isinstance(raw, dict) else None
        except TypeError:
            return None

    def put(self, url: str, session: StoredSession) -> None:
        sessions = self._read_all()
        sessions[url] = asdict(session)
        self._write_all(sessions)

    def remove(self, url: str) -> bool:
        sessions = self._read_all()
        if sessions.pop(url, None) is None:
            return False
        self._write_all(sessions)
        return True

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Held while a session is read, refreshed and written back."""
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.directory / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
