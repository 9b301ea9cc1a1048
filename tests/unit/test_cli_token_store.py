"""The CLI's session store: private files, one session per gateway URL, atomic rewrites."""

from __future__ import annotations

import stat
from pathlib import Path

from marquee_cli.token_store import StoredSession, TokenStore, config_dir


def _session(name: str = "alice", now: float = 1000.0) -> StoredSession:
    return StoredSession.from_tokens(name, "access-" + name, 900, "refresh-" + name, 86400,
                                     now=now)


def test_the_file_is_0600_in_a_0700_directory(tmp_path: Path) -> None:
    store = TokenStore(tmp_path / "marquee")
    store.put("http://127.0.0.1:8000", _session())
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.directory.stat().st_mode) == 0o700
    # No temporary file is left beside it.
    assert [p.name for p in store.directory.iterdir()] == ["sessions.json"]


def test_a_rewrite_keeps_mode_0600_even_under_a_permissive_umask(tmp_path: Path) -> None:
    import os
    old = os.umask(0)
    try:
        store = TokenStore(tmp_path / "marquee")
        store.put("http://a:1", _session())
        store.put("http://a:1", _session("bob"))
    finally:
        os.umask(old)
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600


def test_sessions_are_kept_per_url(tmp_path: Path) -> None:
    store = TokenStore(tmp_path)
    store.put("http://a:1", _session("alice"))
    store.put("http://b:2", _session("bob"))
    assert store.get("http://a:1") == _session("alice")
    assert store.get("http://b:2") == _session("bob")
    assert store.remove("http://a:1") is True
    assert store.get("http://a:1") is None
    assert store.remove("http://a:1") is False
    assert store.get("http://b:2") is not None


def test_a_damaged_file_reads_as_no_sessions(tmp_path: Path) -> None:
    store = TokenStore(tmp_path)
    tmp_path.mkdir(exist_ok=True)
    store.path.write_text("{not json")
    assert store.get("http://a:1") is None
    store.put("http://a:1", _session())
    assert store.get("http://a:1") == _session()


def test_the_lock_can_be_taken_again(tmp_path: Path) -> None:
    store = TokenStore(tmp_path / "new")
    with store.locked():
        store.put("http://a:1", _session())
    with store.locked():
        assert store.get("http://a:1") is not None


def test_config_dir_follows_xdg_then_home() -> None:
    assert config_dir({"XDG_CONFIG_HOME": "/x/cfg", "HOME": "/h"}) == Path("/x/cfg/marquee")
    assert config_dir({"HOME": "/h"}) == Path("/h/.config/marquee")


def test_access_fresh_allows_for_a_margin() -> None:
    session = _session(now=1000.0)  # expires at 1900
    assert session.access_fresh(now=1800.0)
    assert not session.access_fresh(now=1880.0)
    assert not session.access_fresh(now=2000.0)
