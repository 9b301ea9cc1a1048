"""A second user who keeps working while an attack runs: the proof that the attack hurts no one
else.

    with Bystander(api) as bystander:
        run_the_attack()
    bystander.assert_unharmed()

The bystander loops over a login, a small upload whose task must end `done`, and a `/movies`
page, and records each step's status and time. One round before the attack measures each step's
usual time. `assert_unharmed` fails on any error, any 5xx, any step slower than `max_seconds` or
three times its usual time (whichever is longer), or an upload that did not finish `done`
within `task_seconds`.
"""

from __future__ import annotations

import functools
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType

import requests

from tests.integration.conftest import Api

SMALL_CSV = ("id,title,release_date,overview,popularity,vote_average,vote_count,"
             "original_language,genre\n{id},Bystander {id},2001-02-03,Calm,1.0,7.0,10,en,Drama\n")


@dataclass
class Step:
    name: str
    status: int
    seconds: float
    detail: str = ""


@dataclass
class Bystander:
    api: Api
    max_seconds: float = 5.0
    task_seconds: float = 60.0
    steps: list[Step] = field(default_factory=list)
    usual: dict[str, float] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Bystander:
        self.user = self.api.register("bystander")
        self._round()
        self.usual = {s.name: s.seconds for s in self.steps}
        self.steps.clear()
        self._thread = threading.Thread(target=self._work, name="bystander", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(self.task_seconds + 30)

    def _step(self, name: str, send: Callable[[], requests.Response]
              ) -> requests.Response | None:
        started = time.monotonic()
        try:
            response = send()
        except requests.RequestException as exc:
            self.steps.append(Step(name, 0, time.monotonic() - started, repr(exc)))
            return None
        self.steps.append(Step(name, response.status_code, time.monotonic() - started,
                               response.text[:200] if response.status_code >= 400 else ""))
        return response

    def _work(self) -> None:
        while True:
            self._round()
            if self._stop.is_set():
                return

    def _round(self) -> None:
        api, user = self.api, self.user
        self._step("login", lambda: api.post("/auth/login", json={
            "username": user.username, "password": user.password}))
        csv = SMALL_CSV.format(id=900_000_000 + uuid.uuid4().int % 99_999_999).encode()
        upload = self._step("upload", functools.partial(api.upload, user, csv, "b.csv"))
        if upload is not None and upload.status_code == 202:
            self._wait_done(upload.json()["task_id"])
        self._step("movies", lambda: api.get("/movies", headers=user.headers,
                                             params={"limit": 5}))

    def _wait_done(self, task_id: str) -> None:
        started = time.monotonic()
        status = ""
        while time.monotonic() - started < self.task_seconds:
            r = self.api.get(f"/task/{task_id}", headers=self.user.headers)
            status = r.json().get("status", "") if r.status_code == 200 else f"http {r.status_code}"
            if status in ("done", "failed", "cancelled") or r.status_code != 200:
                break
            time.sleep(0.2)
        ok = status == "done"
        self.steps.append(Step("upload task", 200 if ok else 500, time.monotonic() - started,
                               "" if ok else f"task {task_id} ended as {status!r}"))

    def _bound(self, name: str) -> float:
        return max(self.max_seconds, 3 * self.usual.get(name, 0.0))

    def assert_unharmed(self) -> None:
        assert self.steps, "the bystander did nothing"
        names = {s.name for s in self.steps}
        assert {"login", "upload", "upload task", "movies"} <= names, names
        bad = [s for s in self.steps if s.status == 0 or s.status >= 400
               or (s.name != "upload task" and s.seconds > self._bound(s.name))
               or s.seconds > self.task_seconds]
        assert not bad, f"the bystander was hurt: {bad}"
