"""Where the gateway is: --url, else MARQUEE_URL, else the local stack's address."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

# `make run` puts Envoy (REST and native gRPC on one port) here unless GATEWAY_PORT says
# otherwise (devstack/__main__.py).
DEFAULT_URL = "http://127.0.0.1:8000"
URL_ENV = "MARQUEE_URL"


@dataclass(frozen=True)
class Endpoint:
    # scheme://host:port, the key the token store files sessions under.
    url: str
    # host:port, what gRPC dials.
    target: str
    tls: bool


def parse_endpoint(text: str) -> Endpoint:
    """Accepts http://host:port, https://host[:port] or a bare host:port (plain text)."""
    raw = text.strip()
    if "://" not in raw:
        raw = "http://" + raw
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not a gateway address: {text!r} (e.g. http://127.0.0.1:8000)")
    if parts.path not in ("", "/"):
        raise ValueError(f"the gateway address takes no path: {text!r}")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise ValueError(f"bad port in {text!r}") from exc
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    target = f"{host}:{port}"
    return Endpoint(url=f"{parts.scheme}://{target}", target=target, tls=parts.scheme == "https")
