"""Starts a service's gRPC server: access interceptor, health, reflection, graceful shutdown."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from concurrent import futures
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from services.common.access import Access, AccessInterceptor
from services.common.tokens import TokenVerifier

log = logging.getLogger(__name__)

# Uploads and imports stream large messages; 64 MiB bounds one message, not a stream.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
# Every stream's HTTP/2 receive window stays at 1 MiB (one upload or file message). gRPC's BDP
# probing would keep enlarging the windows on a fast link (loopback), and a fast sender fills
# them: a worker reading a stored file at parsing speed held up to 31 MiB of it unread (peak RSS
# 219 MB at 1M rows), and the upload service the unread part of an upload (272 MB for 1 GiB).
# With fixed windows a stream moves at its reader's pace and memory does not grow with files.
WINDOW_BYTES = 1 << 20
GRPC_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.http2.bdp_probe", 0),
    ("grpc.http2.lookahead_bytes", WINDOW_BYTES),
]


def serve(
    *,
    name: str,
    listen: str,
    service_names: list[str],
    register: Callable[[grpc.Server], None],
    policy: dict[str, Access],
    verifier: TokenVerifier,
    service_key: str,
    max_workers: int = 32,
    on_stop: Callable[[], Any] | None = None,
) -> None:
    """Serves until SIGTERM/SIGINT, then drains in-flight calls for up to 10 s."""
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix=name),
        interceptors=[AccessInterceptor(policy, verifier, service_key)],
        options=GRPC_OPTIONS,
    )
    register(server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for service in [*service_names, ""]:
        health_servicer.set(service, health_pb2.HealthCheckResponse.SERVING)
    reflection.enable_server_reflection(
        [*service_names, health.SERVICE_NAME, reflection.SERVICE_NAME], server
    )
    port = server.add_insecure_port(listen)
    if port == 0:
        raise SystemExit(f"{name}: cannot listen on {listen}")
    server.start()
    log.info("serving", extra={"listen": listen, "services": service_names})

    stopped = threading.Event()

    def stop(signum: int, _frame: Any) -> None:
        log.info("stopping", extra={"signal": signal.Signals(signum).name})
        health_servicer.enter_graceful_shutdown()
        stopped.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    stopped.wait()
    server.stop(grace=10).wait()
    if on_stop:
        on_stop()
    log.info("stopped")
