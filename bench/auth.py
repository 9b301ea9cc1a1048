"""Latency of the account routes through Envoy, one client, requests one after another.

Each route is timed beside `GET /.well-known/jwks.json`, the cheapest call that crosses the same
path (Envoy, the transcoder, the auth service's gRPC server): the ratio is what a route adds.
Login and register pay for bcrypt at the stack's BCRYPT_ROUNDS (the default 12 here); refresh
rotates: each request presents the token the previous one returned."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import requests

from bench.reads import percentile

# Requests per route: bcrypt makes login ~0.25 s, the others take milliseconds.
REQUESTS = {"jwks": 200, "verify": 200, "me": 200, "refresh": 200, "login": 20}


def _timed(count: int, call: Callable[[], requests.Response], expect: int) -> dict[str, float]:
    times = []
    for _ in range(count):
        start = time.perf_counter()
        r = call()
        times.append((time.perf_counter() - start) * 1000)
        if r.status_code != expect:
            raise RuntimeError(f"{r.request.method} {r.request.path_url} answered "
                               f"{r.status_code}: {r.text[:300]}")
    times.sort()
    return {"requests": count, "p50_ms": round(percentile(times, 50), 2),
            "p95_ms": round(percentile(times, 95), 2), "p99_ms": round(percentile(times, 99), 2)}


def measure(base: str) -> dict[str, Any]:
    http = requests.Session()
    name = f"auth{uuid.uuid4().hex[:10]}"
    password = "bench-" + uuid.uuid4().hex[:8]
    r = http.post(base + "/auth/register", timeout=60, json={
        "username": name, "password": password, "email": f"{name}@example.com", "name": "B"})
    r.raise_for_status()
    session = dict(r.json())
    bearer = {"Authorization": f"Bearer {session['access_token']}"}

    def refresh() -> requests.Response:
        response = http.post(base + "/auth/refresh", timeout=60,
                             json={"refresh_token": session["refresh_token"]})
        if response.ok:
            session.update(response.json())
        return response

    routes: dict[str, tuple[Callable[[], requests.Response], int]] = {
        "jwks": (lambda: http.get(base + "/.well-known/jwks.json", timeout=60), 200),
        "verify": (lambda: http.post(base + "/auth/verify", timeout=60,
                                     json={"token": session["access_token"]}), 200),
        "me": (lambda: http.get(base + "/auth/me", headers=bearer, timeout=60), 200),
        "refresh": (refresh, 200),
        "login": (lambda: http.post(base + "/auth/login", timeout=60,
                                    json={"username": name, "password": password}), 201),
    }
    results = {route: _timed(REQUESTS[route], call, expect)
               for route, (call, expect) in routes.items()}
    floor = results["jwks"]["p50_ms"]
    for entry in results.values():
        entry["p50_over_jwks"] = round(entry["p50_ms"] / floor, 2)
    return results
