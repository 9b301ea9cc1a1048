"""The real local stack for a benchmark run, and a REST client that drives it as a user would."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests

from devstack.stack import Stack, free_ports

MAX_UPLOAD = 2 * 1024**3


@contextmanager
def running_stack(data_dir: Path) -> Iterator[Stack]:
    """One worker process with one pool slot, as the smallest deployment; always stopped."""
    stack = Stack(data_dir / "stack", ports=free_ports(),
                  log_to=data_dir / "logs", workers=1,
                  extra_env={"MAX_UPLOAD_BYTES": str(MAX_UPLOAD),
                             "WORKER_CONCURRENCY": "1",
                             # A full run outlasts the default 15-minute token.
                             "ACCESS_TOKEN_TTL_SECONDS": "86400",
                             # The auth part times hundreds of requests from one address and
                             # one user; the reads part runs 64 clients as one user.
                             "GATEWAY_AUTH_RATE_LIMIT": "100000",
                             "GATEWAY_USER_RATE_LIMIT": "100000",
                             "MONGO_DB": f"marquee_bench_{uuid.uuid4().hex[:8]}"})
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()


class Api:
    """REST through Envoy, with one registered user's token."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.http = requests.Session()
        name = f"bench{uuid.uuid4().hex[:10]}"
        r = self.http.post(base + "/auth/register", timeout=60, json={
            "username": name, "password": "bench-" + uuid.uuid4().hex[:8],
            "email": f"{name}@example.com", "name": "Bench"})
        r.raise_for_status()
        self.token = str(r.json()["access_token"])
        self.headers = {"Authorization": f"Bearer {self.token}"}
        self.metadata = (("authorization", f"Bearer {self.token}"),)

    def get(self, path: str, **kw: Any) -> requests.Response:
        return self.http.get(self.base + path, headers=self.headers, timeout=600, **kw)

    def post(self, path: str, **kw: Any) -> requests.Response:
        return self.http.post(self.base + path, headers={**self.headers, **kw.pop("headers", {})},
                              timeout=3600, **kw)

    def task(self, task_id: str) -> dict[str, Any]:
        r = self.get(f"/task/{task_id}")
        r.raise_for_status()
        return dict(r.json())

    def wait_task(self, task_id: str, timeout: float, interval: float = 0.1) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            task = self.task(task_id)
            if task["status"] in ("done", "failed", "cancelled"):
                return task
            if time.monotonic() > deadline:
                raise RuntimeError(f"task {task_id} did not end within {timeout:.0f}s: {task}")
            time.sleep(interval)
