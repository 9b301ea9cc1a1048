"""Child processes that get SIGKILL when the process that started them dies (Linux).

A supervisor killed with SIGKILL, or crashing, runs no cleanup of its own, so the kernel has to
do it: `prctl(PR_SET_PDEATHSIG, SIGKILL)`, set in the child between fork and exec, kills the
child when its parent goes. Two limits of that signal shape this module:

- It fires when the *thread* that forked the child exits, not the process. `popen` therefore
  starts every child from one thread that lives as long as the process, whichever thread asks
  (the main thread at start-up, the watcher that restarts crashed children, a test), so that a
  child is never killed because the thread that happened to start it ended.
- Setting it must not run Python between fork and exec: a `preexec_fn` in a process with
  threads can deadlock in the child before exec, and Popen then waits for that exec forever
  (seen: a test stack that hung for 12 minutes starting its worker, no worker process in
  sight). Each child therefore starts as this file, run by a fresh interpreter, which sets the
  signal on itself and execs the real program in place: the signal survives exec, and the pid
  is the program's.
- It is not inherited by the child's own children. Celery's prefork pool sets it in each pool
  process itself (`celery.concurrency.prefork.process_initializer`); the other children of the
  stack start none that outlive them (valkey's short-lived snapshot forks aside).

Elsewhere than on Linux, children start as plain `subprocess.Popen` children, without it.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

_PR_SET_PDEATHSIG = 1

if sys.platform.startswith("linux"):
    # Resolved here, not in the forked child, which should do as little as possible.
    _prctl = ctypes.CDLL(None, use_errno=True).prctl
    _prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                       ctypes.c_ulong]
    _prctl.restype = ctypes.c_int

# The one thread that starts every child. An idle worker of an executor waits for work until
# the interpreter exits (by then the supervisor has stopped its children), so it lives as long
# as the process.
_spawner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spawner")


def popen(argv: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
    """`subprocess.Popen(argv, **kwargs)`, for a child that gets SIGKILL when this process
    dies, however it dies."""
    if not sys.platform.startswith("linux"):
        return subprocess.Popen(argv, **kwargs)
    # -I -S: the launcher needs the standard library only, whatever the environment says.
    launcher = [sys.executable, "-I", "-S", __file__, str(os.getpid()), *argv]

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen(launcher, **kwargs)

    return _spawner.submit(start).result()


def _exec_with_parent_death(parent: int, argv: list[str]) -> None:
    """Runs in the launcher: the signal, then the program in this process's place."""
    if _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent:  # the parent died before the signal was set
        os._exit(1)
    os.execvp(argv[0], argv)


if __name__ == "__main__":
    _exec_with_parent_death(int(sys.argv[1]), sys.argv[2:])
