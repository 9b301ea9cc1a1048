"""The whole local stack as supervised processes: the embedded database and broker (unless
MONGO_URI / REDIS_URL point elsewhere), the registered services (services.common.registry) in
their start order, Celery workers and Envoy.

Each process runs in its own session so that stopping it stops its children too; a process
that dies unexpectedly is restarted, as a container restart policy would, and the restart is
logged.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from devstack import binaries, parent_death
from gateway.render import render
from services.common import registry
from services.common.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
CHILD_UMASK = 0o077
# Evicts only keys with a TTL: the catalog's cached pages, never the job queue (no TTL).
REDIS_EVICTION_POLICY = "volatile-lru"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_names() -> list[str]:
    """Every port a stack needs: the gateway's, each registered service's, the stand-ins'."""
    return ["gateway", "gateway_admin", *(s.name for s in registry.SERVICES), "mongo", "redis"]


def free_ports() -> dict[str, int]:
    """A free loopback port for each of `port_names()` (test and bench stacks)."""
    return {name: free_port() for name in port_names()}


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is no conflict
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _wait(what: str, check: Callable[[], bool], timeout: float, proc: Proc | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.popen is not None and proc.popen.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.popen.returncode} while starting;"
                               f" see its log")
        try:
            if check():
                return
        except Exception:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not become ready within {timeout:.0f}s")


@dataclass
class Proc:
    name: str
    argv: list[str]
    env: dict[str, str]
    ready: Callable[[], bool]
    ready_timeout: float = 60.0
    stop_timeout: float = 15.0
    popen: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    held_down: bool = False
    marker_seen: threading.Event = field(default_factory=threading.Event)


class Stack:
    """Starts, watches and stops the stack. `log_to` None prefixes lines on stdout; a directory
    writes one log file per process instead (tests)."""

    def __init__(self, data_dir: Path, *, ports: dict[str, int], log_to: Path | None = None,
                 extra_env: dict[str, str] | None = None, restart: bool = True,
                 workers: int = 1) -> None:
        self.data_dir = data_dir.resolve()
        self.ports = ports
        self.log_to = log_to
        self.restart = restart
        self.workers = workers
        self.procs: dict[str, Proc] = {}
        self._stopping = threading.Event()
        self._print_lock = threading.Lock()
        base = {**os.environ, **(extra_env or {})}
        base["MARQUEE_DATA_DIR"] = str(self.data_dir)
        base.setdefault("PYTHONUNBUFFERED", "1")
        # glibc gives each thread that allocates its own malloc arena (up to 8 per core), and
        # 1 MiB upload pieces allocated on one thread and freed on another left memory behind
        # in each: the upload service's peak grew 79 -> 115 MB from a 10 MiB to a 1 GiB upload,
        # 79 -> 89 MB with two arenas, at the same speed. (The Dockerfile sets it too.)
        base.setdefault("MALLOC_ARENA_MAX", "2")
        self.embedded_mongo = not base.get("MONGO_URI")
        self.embedded_redis = not base.get("REDIS_URL")
        if self.embedded_mongo:
            base["MONGO_URI"] = (f"mongodb://127.0.0.1:{ports['mongo']}/?directConnection=true")
        if self.embedded_redis:
            base["REDIS_URL"] = f"redis://127.0.0.1:{ports['redis']}/0"
        for spec in registry.SERVICES:
            base[spec.addr_setting] = f"127.0.0.1:{ports[spec.name]}"
        base["GATEWAY_HOST"] = base.get("GATEWAY_HOST", "127.0.0.1")
        base["GATEWAY_PORT"] = str(ports["gateway"])
        base["GATEWAY_ADMIN_PORT"] = str(ports["gateway_admin"])
        base["DESCRIPTOR_SET"] = str(ROOT / "build" / "gen" / "marquee.pb")
        self.env = base
        self.settings = _settings_from(base)
        self.gateway_url = f"http://127.0.0.1:{ports['gateway']}"

    # --- process definitions -------------------------------------------------------------

    def _define(self) -> list[Proc]:
        env, d = self.env, self.data_dir
        procs: list[Proc] = []
        if self.embedded_mongo:
            (d / "mongo").mkdir(parents=True, exist_ok=True)
            procs.append(Proc("mongo", [
                binaries.secantusd(), "--host", "127.0.0.1", "--port", str(self.ports["mongo"]),
                "--storage-path", str(d / "mongo"), "--log-level", "WARNING",
                # Standalone, as compose's mongod is: no oplog. Marquee uses no change streams
                # or transactions, and this server's oplog copied every write and, pruned under
                # its one lock, stalled every client for minutes after a restart.
                "--standalone",
            ], env, self._mongo_ready, ready_timeout=60))
        if self.embedded_redis:
            (d / "redis").mkdir(parents=True, exist_ok=True)
            procs.append(Proc("redis", [
                binaries.valkey_server(), "--port", str(self.ports["redis"]),
                "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes",
                "--dir", str(d / "redis"), "--loglevel", "warning",
                # The catalog's query cache shares it with the job queue: bounded, and only
                # keys with a TTL (cached pages) may be evicted; see services/catalog/cache.py.
                "--maxmemory", str(self.settings.redis_maxmemory_bytes),
                "--maxmemory-policy", REDIS_EVICTION_POLICY,
            ], env, self._redis_ready, ready_timeout=20))
        for spec in registry.start_order():
            procs.append(Proc(spec.name, [sys.executable, "-m", f"services.{spec.name}"], env,
                              self._grpc_ready(env[spec.addr_setting])))
        for n in range(1, self.workers + 1):
            name = "worker" if n == 1 else f"worker{n}"
            worker = Proc(name, [sys.executable, "-m", "services.worker"],
                          {**env, "WORKER_NAME": f"{name}@%h"}, lambda: False,
                          ready_timeout=60, stop_timeout=30)
            worker.ready = worker.marker_seen.is_set
            procs.append(worker)
        config = d / "envoy.yaml"
        procs.append(Proc("envoy", [
            binaries.envoy(), "-c", str(config), "--disable-hot-restart", "--log-level", "warn",
        ], env, self._gateway_ready, ready_timeout=60))
        return procs

    def _mongo_ready(self) -> bool:
        from pymongo import MongoClient

        client: MongoClient = MongoClient(self.env["MONGO_URI"], serverSelectionTimeoutMS=500)
        try:
            return bool(client.admin.command("ping").get("ok"))
        finally:
            client.close()

    def _redis_ready(self) -> bool:
        import redis

        return bool(redis.Redis.from_url(self.env["REDIS_URL"], socket_timeout=0.5).ping())

    @staticmethod
    def _grpc_ready(addr: str) -> Callable[[], bool]:
        def check() -> bool:
            with grpc.insecure_channel(addr) as channel:
                response = health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(), timeout=0.5)
                return response.status == health_pb2.HealthCheckResponse.SERVING

        return check

    def _gateway_ready(self) -> bool:
        admin = f"http://127.0.0.1:{self.ports['gateway_admin']}/ready"
        with urllib.request.urlopen(admin, timeout=1) as r:
            if r.status != 200:
                return False
        with urllib.request.urlopen(self.gateway_url + "/.well-known/jwks.json", timeout=2) as r:
            return bool(json.load(r)["keys"])

    # --- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        # Private: it holds the keys, the uploads and the database.
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.data_dir.chmod(0o700)
        if self.log_to:
            self.log_to.mkdir(parents=True, exist_ok=True)
        (self.data_dir / "envoy.yaml").write_text(render(self.settings))
        self.settings.service_key()  # created once, before the services race to create it
        try:
            for proc in self._define():
                self.procs[proc.name] = proc
                self._spawn(proc)
                _wait(proc.name, proc.ready, proc.ready_timeout, proc)
                pid = proc.popen.pid if proc.popen else "-"
                self.log("stack", f"{proc.name} ready (pid {pid})")
        except BaseException:
            self.stop()
            raise
        threading.Thread(target=self._watch, name="stack-watch", daemon=True).start()

    def _spawn(self, proc: Proc) -> None:
        sink: IO[bytes] | int = subprocess.PIPE
        # Dies with this supervisor, even one killed with SIGKILL, whichever thread spawns it.
        # umask 077: what the children create (the database's files, the broker's append-only
        # file, uploads) is readable by this user only, whatever modes they ask for.
        proc.popen = parent_death.popen(
            proc.argv, env=proc.env, cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True, umask=CHILD_UMASK,
        )
        threading.Thread(target=self._pump, args=(proc, proc.popen), daemon=True,
                         name=f"log-{proc.name}").start()

    def _pump(self, proc: Proc, popen: subprocess.Popen[bytes]) -> None:
        assert popen.stdout is not None
        file = open(self.log_to / f"{proc.name}.log", "ab") if self.log_to else None  # noqa: SIM115
        try:
            for raw in popen.stdout:
                if b"worker ready" in raw:
                    proc.marker_seen.set()
                if file:
                    file.write(raw)
                    file.flush()
                else:
                    self.log(proc.name, raw.decode(errors="replace").rstrip())
        finally:
            if file:
                file.close()

    def log(self, name: str, line: str) -> None:
        if self.log_to:
            with open(self.log_to / "stack.log", "a") as f:
                f.write(f"{time.strftime('%H:%M:%S')} {name}: {line}\n")
            return
        with self._print_lock:
            print(f"{name:>8} | {line}", flush=True)

    def _watch(self) -> None:
        """Restarts processes that die while the stack runs (backoff up to 10 s)."""
        while not self._stopping.wait(0.5):
            for proc in list(self.procs.values()):
                if proc.popen is None or proc.popen.poll() is None or not self.restart \
                        or proc.held_down:
                    continue
                if self._stopping.is_set():
                    return
                code = proc.popen.returncode
                delay = min(10.0, 0.5 * 2 ** min(proc.restarts, 5))
                self.log("stack", f"{proc.name} exited with code {code}; restarting in "
                                  f"{delay:.1f}s (restart #{proc.restarts + 1})")
                proc.restarts += 1
                proc.marker_seen.clear()
                if self._stopping.wait(delay):
                    return
                self._spawn(proc)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> int:
        """Sends `sig` to a process's whole group (tests of crash safety). Returns its pid."""
        popen = self.procs[name].popen
        assert popen is not None
        os.killpg(popen.pid, sig)
        return popen.pid

    def hold_down(self, name: str) -> None:
        """Kills a process and keeps it down until `bring_up` (outage tests)."""
        proc = self.procs[name]
        proc.held_down = True
        self.kill(name)
        _reap_group(proc.popen)

    def bring_up(self, name: str) -> None:
        proc = self.procs[name]
        self._spawn(proc)
        proc.held_down = False
        self.wait_ready(name)

    def wait_ready(self, name: str, timeout: float = 60) -> None:
        proc = self.procs[name]
        _wait(name, proc.ready, timeout, None)

    def stop(self) -> None:
        """Stops everything in reverse start order: SIGTERM, then SIGKILL after a grace period."""
        self._stopping.set()
        for proc in reversed(list(self.procs.values())):
            popen = proc.popen
            if popen is None or popen.poll() is not None:
                _reap_group(popen)
                continue
            try:
                os.killpg(popen.pid, signal.SIGTERM)
                popen.wait(proc.stop_timeout)
            except subprocess.TimeoutExpired:
                self.log("stack", f"{proc.name} did not stop in {proc.stop_timeout:.0f}s; killing")
            except ProcessLookupError:
                pass
            _reap_group(popen)
            self.log("stack", f"{proc.name} stopped")


def _reap_group(popen: subprocess.Popen[bytes] | None) -> None:
    """Kills whatever is left in the process's group (e.g. Celery pool children)."""
    if popen is None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(popen.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        popen.wait(5)


def _settings_from(env: dict[str, str]) -> Settings:
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        return Settings.from_env()
    finally:
        os.environ.clear()
        os.environ.update(saved)
