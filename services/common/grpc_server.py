"""Starts a registered service's gRPC server: access interceptor (levels from the protos),
health, reflection, graceful shutdown."""

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

from services.common import registry
from services.common.access import AccessInterceptor, ConfirmAdmin, policy
from services.common.settings import Settings
from services.common.tokens import TokenVerifier

log = logging.getLogger(__name__)

# What a channel may send or receive in one message: a page of up to 1000 movies, a batch of
# imported movies or rejected rows. A server receives only what its service's requests need
# (`ServiceSpec.max_message_bytes`).
CHANNEL_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
# Every stream's HTTP/2 receive window stays at 1 MiB (one upload or file message). gRPC's BDP
# probing would keep enlarging the windows on a fast link (loopback), and a fast sender fills
# them: a worker reading a stored file at parsing speed held up to 31 MiB of it unread (peak RSS
# 219 MB at 1M rows), and the upload service the unread part of an upload (272 MB for 1 GiB).
# With fixed windows a stream moves at its reader's pace and memory does not grow with files.
WINDOW_BYTES = 1 << 20
_WINDOW_OPTIONS = [
    ("grpc.http2.bdp_probe", 0),
    ("grpc.http2.lookahead_bytes", WINDOW_BYTES),
]
CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", CHANNEL_MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", CHANNEL_MAX_MESSAGE_BYTES),
    *_WINDOW_OPTIONS,
]


# Request metadata a server accepts. gRPC's default (8 KiB soft, 16 KiB hard) refuses requests
# between the two at random, with RESOURCE_EXHAUSTED (429 through REST): a long query string
# reaches a service twice (Envoy's x-envoy-original-path and the transcoded fields). Envoy holds
# request headers to 16 KiB (max_request_headers_kb in envoy.yaml.tmpl), well under these.
MAX_METADATA_BYTES = 64 << 10
ABSOLUTE_MAX_METADATA_BYTES = 80 << 10


def server_options(spec: registry.ServiceSpec) -> list[tuple[str, int]]:
    """A server's options: the service's own receive limit, which gRPC checks against the
    decompressed size (a 58 KB gzip-compressed Login of 60 MB took auth from 72 to 346 MB when
    every service accepted 64 MiB), so a larger request is refused with RESOURCE_EXHAUSTED
    before it is held whole."""
    return [
        ("grpc.max_receive_message_length", spec.max_message_bytes),
        ("grpc.max_send_message_length", CHANNEL_MAX_MESSAGE_BYTES),
        ("grpc.max_metadata_size", MAX_METADATA_BYTES),
        ("grpc.absolute_max_metadata_size", ABSOLUTE_MAX_METADATA_BYTES),
        *_WINDOW_OPTIONS,
    ]


def serve(
    settings: Settings,
    name: str,
    *servicers: Any,
    verifier: TokenVerifier,
    confirm_admin: ConfirmAdmin,
    max_workers: int = 32,
    on_stop: Callable[[], Any] | None = None,
) -> None:
    """Serves the registered service `name` until SIGTERM/SIGINT, then drains in-flight calls
    for up to 10 s.

    `servicers` implement the service's proto services, in the registry's order. Who may call
    each method comes from the protos; a method that declares no access stops the start here.
    `verifier` checks access tokens and `confirm_admin` an admin's account (services.common.
    clients has both for every service but auth, which answers them itself).
    """
    spec = registry.spec(name)
    descriptors = spec.descriptors()
    if len(servicers) != len(descriptors):
        raise TypeError(f"{name} serves {spec.proto_services}: give one servicer for each")
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix=name),
        interceptors=[AccessInterceptor(policy(descriptors), verifier, settings.service_key(),
                                        confirm_admin)],
        options=server_options(spec),
    )
    grpc_module = spec.grpc_module()
    for proto_service, servicer in zip(spec.proto_services, servicers, strict=True):
        getattr(grpc_module, f"add_{proto_service}Servicer_to_server")(servicer, server)
    service_names = [d.full_name for d in descriptors]
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for service in [*service_names, ""]:
        health_servicer.set(service, health_pb2.HealthCheckResponse.SERVING)
    reflection.enable_server_reflection(
        [*service_names, health.SERVICE_NAME, reflection.SERVICE_NAME], server
    )
    listen = settings.grpc_listen or settings.addr(name)
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
