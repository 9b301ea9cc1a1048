"""`make run`: start the whole stack, print where everything listens, stop it on Ctrl-C/SIGTERM.

Ports come from the environment (GATEWAY_PORT=8000, GATEWAY_ADMIN_PORT=9901, each registered
service's <NAME>_ADDR, MONGO_PORT=27017, REDIS_PORT=6379 for the embedded stand-ins).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path

from devstack import admin_password
from devstack.stack import Stack, port_is_free
from services.common import registry
from services.common.settings import load_dotenv


def _port(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def _addr_port(name: str, default: int) -> int:
    addr = os.environ.get(name, "")
    return int(addr.rpartition(":")[2]) if addr else default


def _admin(data_dir: Path) -> tuple[dict[str, str], str]:
    """The administrator's password for the auth service (MARQUEE_ADMIN_PASSWORD, or the one
    kept in the data dir), and what the banner says of it: the password itself only when it
    was made now."""
    if os.environ.get("MARQUEE_ADMIN_PASSWORD"):
        return {}, "password from MARQUEE_ADMIN_PASSWORD"
    password, new = admin_password.ensure(data_dir)
    kept = data_dir.resolve() / admin_password.FILE_NAME
    says = f"password {password}  (shown this once; kept in {kept})" if new \
        else f"password in {kept}"
    return {"MARQUEE_ADMIN_PASSWORD": password}, says


def main() -> None:
    load_dotenv()
    ports = {
        "gateway": _port("GATEWAY_PORT", 8000),
        "gateway_admin": _port("GATEWAY_ADMIN_PORT", 9901),
        **{s.name: _addr_port(s.addr_setting, s.port) for s in registry.SERVICES},
        "mongo": _port("MONGO_PORT", 27017),
        "redis": _port("REDIS_PORT", 6379),
    }
    needed = dict(ports)
    if os.environ.get("MONGO_URI"):
        needed.pop("mongo")
    if os.environ.get("REDIS_URL"):
        needed.pop("redis")
    taken = [f"{name} ({port})" for name, port in needed.items() if not port_is_free(port)]
    if taken:
        sys.exit("ports already in use: " + ", ".join(taken) +
                 ". Stop what uses them or set other ports (see README, Settings).")
    data_dir = Path(os.environ.get("MARQUEE_DATA_DIR", ".marquee"))
    admin_env, admin_says = _admin(data_dir)
    stack = Stack(data_dir, ports=ports, extra_env=admin_env,
                  workers=int(os.environ.get("WORKERS", "1")))
    stopped = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stopped.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        stack.start()
    except RuntimeError as exc:
        sys.exit(f"stack failed to start: {exc}")
    mongo = "embedded SecantusDB at " + stack.env["MONGO_URI"] if stack.embedded_mongo \
        else stack.env["MONGO_URI"]
    redis = "embedded valkey at " + stack.env["REDIS_URL"] if stack.embedded_redis \
        else stack.env["REDIS_URL"]
    stack.log("stack", "\n".join([
        "Marquee is up.",
        f"  REST + gRPC gateway  {stack.gateway_url}  (Envoy admin :{ports['gateway_admin']})",
        *(f"  {s.name + ' gRPC':<19} {stack.env[s.addr_setting]}" for s in registry.SERVICES),
        f"  database            {mongo}",
        f"  broker              {redis}",
        f"  data                {stack.data_dir}",
        f"  {'admin ' + (os.environ.get('MARQUEE_ADMIN_USERNAME') or 'admin'):<19} {admin_says}",
        "Ctrl-C stops everything.",
    ]))
    stopped.wait()
    stack.log("stack", "stopping")
    stack.stop()


if __name__ == "__main__":
    main()
