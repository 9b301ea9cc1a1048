"""`make run`'s admin password: made once, private, and the same at every later start."""

from __future__ import annotations

import stat
from pathlib import Path

from devstack import admin_password


def test_made_at_the_first_start_private_and_kept_for_later_starts(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    password, new = admin_password.ensure(data_dir)
    assert new and len(password) >= 24
    path = data_dir / admin_password.FILE_NAME
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    assert admin_password.ensure(data_dir) == (password, False)


def test_each_data_dir_gets_its_own(tmp_path: Path) -> None:
    first, _ = admin_password.ensure(tmp_path / "a")
    second, _ = admin_password.ensure(tmp_path / "b")
    assert first != second
