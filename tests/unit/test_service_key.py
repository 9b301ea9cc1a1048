"""The service key: at least 32 bytes wherever it comes from, and a key file that is private and
never read half-written."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import pytest

from services.common.settings import MIN_SERVICE_KEY_BYTES, Settings


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Settings:
    monkeypatch.chdir(tmp_path)  # no .env from the working tree
    monkeypatch.delenv("SERVICE_KEY", raising=False)
    monkeypatch.delenv("SERVICE_KEY_FILE", raising=False)
    monkeypatch.setenv("MARQUEE_DATA_DIR", str(tmp_path / "data"))
    return Settings.from_env()


@pytest.mark.parametrize("key", ["", "short", "x" * (MIN_SERVICE_KEY_BYTES - 1),
                                 "é" * 15])  # 30 bytes in 15 characters
def test_a_short_or_empty_configured_key_stops_the_process(
        settings: Settings, monkeypatch: pytest.MonkeyPatch, key: str) -> None:
    monkeypatch.setenv("SERVICE_KEY", key)
    with pytest.raises(SystemExit, match=r"SERVICE_KEY is \d+ bytes; it must be at least 32"):
        settings.service_key()


def test_a_long_enough_configured_key_is_used(settings: Settings,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SERVICE_KEY", "k" * MIN_SERVICE_KEY_BYTES)
    assert settings.service_key() == "k" * MIN_SERVICE_KEY_BYTES
    assert not settings.service_key_file.exists()


def test_the_generated_key_file_is_long_private_and_reused(settings: Settings) -> None:
    key = settings.service_key()
    assert len(key.encode()) >= MIN_SERVICE_KEY_BYTES
    path = settings.service_key_file
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert settings.service_key() == key
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no drafts left behind


def test_a_short_or_empty_key_file_stops_the_process(settings: Settings) -> None:
    path = settings.service_key_file
    path.parent.mkdir(parents=True)
    for content in ("", "short\n"):
        path.write_text(content)
        with pytest.raises(SystemExit, match=r"key file .* it must be at least 32"):
            settings.service_key()


def test_processes_racing_to_create_the_key_file_all_get_the_same_full_key(
        settings: Settings, tmp_path: Path) -> None:
    code = ("from services.common.settings import Settings; "
            "print(Settings.from_env().service_key())")
    racers = [subprocess.Popen([sys.executable, "-c", code], cwd=tmp_path,
                               stdout=subprocess.PIPE, text=True,
                               env={"MARQUEE_DATA_DIR": str(tmp_path / "data"),
                                    "PYTHONPATH": ":".join(sys.path)})
              for _ in range(8)]
    keys = {racer.communicate(timeout=60)[0].strip() for racer in racers}
    assert keys == {settings.service_key_file.read_text().strip()}
    assert len(keys.pop()) >= MIN_SERVICE_KEY_BYTES
