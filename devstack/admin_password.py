"""The administrator's password for `make run` when MARQUEE_ADMIN_PASSWORD is not set: random,
made at the first start and kept in the data directory (mode 0600), so that no deployment starts
with a well-known admin password and later starts find the same one."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

FILE_NAME = "admin-password"


def ensure(data_dir: Path) -> tuple[str, bool]:
    """The stored password, or a new one written now: (password, whether it is new)."""
    path = data_dir / FILE_NAME
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        # O_EXCL: two supervisors on one data dir cannot both write a different password.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip(), False
    password = secrets.token_urlsafe(18)  # 24 characters, 144 bits
    with os.fdopen(fd, "w") as f:
        f.write(password + "\n")
    return password, True
