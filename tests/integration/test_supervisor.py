"""The supervisor that `make run` starts (`python -m devstack`) takes its whole stack with it:
killed with SIGKILL, as a crash would end it, no process of the stack is left 5 s later and its
ports are free again; SIGTERM (as Ctrl-C) stops everything gracefully, in reverse start order.

Each test starts its own supervisor on free ports (not the session's `stack`) and kills whatever
the stack left behind, even when the test fails.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import jwt
import pytest
import requests

from devstack.stack import ROOT, free_ports, port_is_free
from services.common import registry

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="parent-death signals and /proc are Linux's")

UP_TIMEOUT = 180.0  # the whole stack, on a busy 2-core machine
GONE_WITHIN = 5.0

# A process is its pid and its start time (a pid can be reused).
Pid = tuple[int, int]


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, ppid, start time) of a process, None if it does not exist."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2:].split()  # the command name may hold spaces and ")"
    return fields[0], int(fields[1]), int(fields[19])


def _processes() -> dict[Pid, int]:
    """Every process, with its parent's pid."""
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (stat := _stat(int(entry))) is not None:
            found[(int(entry), stat[2])] = stat[1]
    return found


def _alive(p: Pid) -> bool:
    stat = _stat(p[0])
    return stat is not None and stat[2] == p[1] and stat[0] not in "ZX"  # a zombie holds nothing


def _cmdline(p: Pid) -> str:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{p[0]}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    return "?"


def _stack_env(ports: dict[str, int], data_dir: Path) -> dict[str, str]:
    """The environment that puts `python -m devstack` on `ports` (as devstack/__main__.py reads
    it), with its own database and broker."""
    return {
        "GATEWAY_PORT": str(ports["gateway"]),
        "GATEWAY_ADMIN_PORT": str(ports["gateway_admin"]),
        **{s.addr_setting: f"127.0.0.1:{ports[s.name]}" for s in registry.SERVICES},
        "MONGO_PORT": str(ports["mongo"]),
        "REDIS_PORT": str(ports["redis"]),
        "MONGO_URI": "", "REDIS_URL": "",  # embedded ones, whatever the environment or .env says
        "MARQUEE_DATA_DIR": str(data_dir),
        "BCRYPT_ROUNDS": "4",
        "PYTHONUNBUFFERED": "1",
        # As on a fresh machine: `make run` makes the admin's password.
        "MARQUEE_ADMIN_USERNAME": "", "MARQUEE_ADMIN_PASSWORD": "",
    }


@dataclass
class Supervisor:
    popen: subprocess.Popen[bytes]
    log: Path
    ports: dict[str, int]
    # An environment variable the processes of this stack inherit and keep once orphaned
    # (but valkey, which writes its process title over it: the tree seen covers that one).
    tag: bytes
    tree: dict[Pid, int] = field(default_factory=dict)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_up(self) -> None:
        deadline = time.monotonic() + UP_TIMEOUT
        while "Marquee is up." not in self.output():
            assert self.popen.poll() is None, \
                f"supervisor exited with code {self.popen.returncode}:\n{self.output()[-4000:]}"
            assert time.monotonic() < deadline, \
                f"stack not up within {UP_TIMEOUT:.0f}s:\n{self.output()[-4000:]}"
            time.sleep(0.2)

    def descendants(self) -> dict[Pid, int]:
        """The supervisor's children, theirs, and so on (by parent pid), with their parents."""
        procs = _processes()
        found: dict[Pid, int] = {}
        parents = [self.popen.pid]
        while parents:
            parent = parents.pop()
            for p, ppid in procs.items():
                if ppid == parent:
                    found[p] = ppid
                    parents.append(p[0])
        return found

    def tagged(self) -> set[Pid]:
        found = set()
        for p in _processes():
            with contextlib.suppress(OSError):
                if p[0] != self.popen.pid and \
                        self.tag in Path(f"/proc/{p[0]}/environ").read_bytes().split(b"\0"):
                    found.add(p)
        return found

    def leftovers(self) -> set[Pid]:
        """What is still running of the stack: of the tree seen, or carrying the tag."""
        return {p for p in self.tree.keys() | self.tagged() if _alive(p)}

    def describe(self, procs: set[Pid]) -> str:
        return "\n".join(f"  {p[0]}: {_cmdline(p)}" for p in sorted(procs))

    def taken_ports(self) -> list[str]:
        return [f"{name} ({port})" for name, port in self.ports.items() if not port_is_free(port)]


@pytest.fixture
def supervisor(tmp_path: Path) -> Iterator[Supervisor]:
    ports = free_ports()
    tag = f"MARQUEE_SUPERVISOR_TEST={uuid.uuid4().hex}"
    env = {**os.environ, **_stack_env(ports, tmp_path / "data"),
           tag.partition("=")[0]: tag.partition("=")[2]}
    log = tmp_path / "supervisor.log"
    with open(log, "wb") as out:
        popen = subprocess.Popen([sys.executable, "-m", "devstack"], cwd=ROOT, env=env,
                                 stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    sup = Supervisor(popen, log, ports, tag.encode())
    try:
        yield sup
    finally:
        # Never leave a process behind, whatever happened: the supervisor, then what is left of
        # its stack (a few rounds, for an orphaned Celery worker that replaces its pool).
        if popen.poll() is None:
            sup.tree.update(sup.descendants())
            popen.kill()
        popen.wait()
        for _ in range(10):
            left = sup.leftovers()
            if not left:
                break
            for pid, _start in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.2)


def test_sigkilled_supervisor_takes_every_process_of_the_stack_with_it(
        supervisor: Supervisor) -> None:
    supervisor.wait_up()
    supervisor.tree = supervisor.descendants()
    children = {p for p, ppid in supervisor.tree.items() if ppid == supervisor.popen.pid}
    # The Celery worker's pool processes: the parent-death signal is not inherited, so they
    # need their own.
    grandchildren = supervisor.tree.keys() - children
    assert any("services.worker" in _cmdline(p) for p in grandchildren), \
        supervisor.describe(set(supervisor.tree))

    supervisor.popen.kill()
    supervisor.popen.wait()
    deadline = time.monotonic() + GONE_WITHIN
    while (left := supervisor.leftovers()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not left, (f"{GONE_WITHIN:.0f}s after the supervisor was killed, still running:\n"
                      + supervisor.describe(left))
    assert not supervisor.taken_ports()


def _admin_made_with_a_random_password_shown_once(supervisor: Supervisor, data_dir: Path
                                                   ) -> None:
    found = re.search(r"admin admin +password (\S+) +\(shown this once; kept in (\S+)\)",
                      supervisor.output())
    assert found, supervisor.output()[-4000:]
    password, kept = found.groups()
    assert Path(kept) == (data_dir / "admin-password").resolve()
    assert stat.S_IMODE(Path(kept).stat().st_mode) == 0o600
    assert Path(kept).read_text().strip() == password
    gateway = f"http://127.0.0.1:{supervisor.ports['gateway']}"
    r = requests.post(gateway + "/auth/login", json={"username": "admin", "password": password},
                      timeout=30)
    assert r.status_code == 201, r.text
    assert jwt.decode(r.json()["access_token"], options={"verify_signature": False})["role"] \
        == "admin"
    r = requests.get(gateway + "/admin/users", timeout=30,
                     headers={"Authorization": f"Bearer {r.json()['access_token']}"})
    assert r.status_code == 200, r.text


def test_sigterm_stops_everything_gracefully_in_reverse_order(
        supervisor: Supervisor, tmp_path: Path) -> None:
    supervisor.wait_up()
    # (On the way, with no MARQUEE_ADMIN_PASSWORD set, the first start made the admin.)
    _admin_made_with_a_random_password_shown_once(supervisor, tmp_path / "data")
    # A process the supervisor restarted, from its watcher thread (which ends when stopping
    # begins), is stopped in its turn like the others, not killed when that thread ends.
    auth = next(p for p, ppid in supervisor.descendants().items()
                if ppid == supervisor.popen.pid and "services.auth" in _cmdline(p))
    os.kill(auth[0], signal.SIGKILL)
    deadline = time.monotonic() + 60
    while port_is_free(supervisor.ports["auth"]) or not any(
            "services.auth" in _cmdline(p) and p != auth for p in supervisor.descendants()):
        assert time.monotonic() < deadline, "auth not restarted:\n" + supervisor.output()[-4000:]
        time.sleep(0.2)
    supervisor.tree = supervisor.descendants()

    supervisor.popen.send_signal(signal.SIGTERM)
    assert supervisor.popen.wait(120) == 0, supervisor.output()[-4000:]
    out = supervisor.output()
    ready = re.findall(r"^ *stack \| (\S+) ready \(pid", out, re.MULTILINE)
    stopped = re.findall(r"^ *stack \| (\S+) stopped$", out, re.MULTILINE)
    assert "auth exited with code -9; restarting" in out
    assert stopped == ready[::-1], f"started {ready}, stopped {stopped}:\n{out[-4000:]}"
    assert "did not stop" not in out, out[-4000:]
    left = supervisor.leftovers()
    assert not left, "still running after the supervisor stopped:\n" + supervisor.describe(left)
    assert not supervisor.taken_ports()
