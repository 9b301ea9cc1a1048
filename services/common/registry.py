"""The one list of Marquee's gRPC services. Everything that wires them derives from it.

Settings (each service's `<NAME>_ADDR`), the Envoy configuration (clusters, routes, the
transcoder's services, which methods need a token and which the gateway hides), the local
supervisor's start order and banner, the test and bench stacks, and each service's own server
(`services.common.grpc_server.serve`) read this table. docker-compose.yml stays written by hand;
tests/unit/test_compose.py fails when a service here has no block, healthcheck or address there.
Adding a context: docs/adding-a-service.md.

Who may call each method is not written here but in the protos (`marquee.access.v1.access`), and
read from the generated descriptors by `services.common.access`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from google.protobuf.descriptor import ServiceDescriptor


@dataclass(frozen=True)
class ServiceSpec:
    # Short name: the package `services.<name>` (run with `python -m services.<name>`), the
    # setting `<NAME>_ADDR`, the Envoy cluster and the compose service.
    name: str
    # The generated module that defines the proto services, e.g. "marquee.auth.v1.auth".
    proto_module: str
    # The proto services this process serves (short names, in proto_module).
    proto_services: tuple[str, ...]
    # Default port on 127.0.0.1 (the local stack and the settings' default address).
    port: int
    # Marquee services that must be up before this one starts (the supervisor's start order).
    after: tuple[str, ...] = ()
    # Envoy's route timeout for this service's calls; "0s" for streams that last as long as a
    # file takes (uploads, watching a task).
    route_timeout: str = "60s"
    # The largest request message the server accepts, checked by gRPC after decompression; a
    # larger one is refused with RESOURCE_EXHAUSTED before it is held whole. Unary requests
    # are a few KB; 1 MiB bounds what a hostile one costs, yet still lets an overlong field
    # reach the service's own check and its clearer 400. Streams that carry larger pieces say
    # so below.
    max_message_bytes: int = 1 << 20

    @property
    def addr_setting(self) -> str:
        return f"{self.name.upper()}_ADDR"

    @property
    def default_addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    def descriptors(self) -> list[ServiceDescriptor]:
        """The proto services' descriptors, from the generated code (build/gen)."""
        module: Any = importlib.import_module(f"{self.proto_module}_pb2")
        return [module.DESCRIPTOR.services_by_name[s] for s in self.proto_services]

    def grpc_module(self) -> Any:
        return importlib.import_module(f"{self.proto_module}_pb2_grpc")


SERVICES: tuple[ServiceSpec, ...] = (
    ServiceSpec("auth", "marquee.auth.v1.auth", ("AuthService",), 50051, route_timeout="30s"),
    # ReportProgress carries the rows rejected since the last report: up to two batches of
    # INGEST_BATCH_SIZE (1000) rows, each shown in at most 2000 characters (<= 8 KB of UTF-8).
    ServiceSpec("task", "marquee.task.v1.task", ("TaskService",), 50053, after=("auth",),
                route_timeout="0s", max_message_bytes=16 << 20),
    # Upload chunks: 1 MiB from native clients, at most 1 MiB from Envoy, plus framing.
    ServiceSpec("upload", "marquee.upload.v1.upload", ("UploadService",), 50052,
                after=("auth", "task"), route_timeout="0s", max_message_bytes=2 << 20),
    # An ImportMovies batch ends past 4 MiB of movies, and its last movie is one CSV row of
    # at most CSV_MAX_ROW_CHARS (1 Mi characters, <= 4 MiB).
    ServiceSpec("catalog", "marquee.catalog.v1.catalog",
                ("CatalogService", "CatalogCandidatesService"), 50054,
                after=("auth",), max_message_bytes=16 << 20),
    # Checks movies with the catalog and tells it their counts, so it starts after it.
    ServiceSpec("ratings", "marquee.ratings.v1.ratings", ("RatingsService",), 50055,
                after=("auth", "catalog")),
    # Reads versions from the ratings and the catalog, and creates tasks. Its requests are a
    # few hundred bytes, and the largest, a worker's FinishRun, holds at most 100 movies.
    ServiceSpec("recommendations", "marquee.recommendations.v1.recommendations",
                ("RecommendationsService",), 50056,
                after=("auth", "task", "catalog", "ratings")),
)


def spec(name: str) -> ServiceSpec:
    for service in SERVICES:
        if service.name == name:
            return service
    raise KeyError(f"no service named {name!r} in services.common.registry")


def start_order() -> list[ServiceSpec]:
    """Each service after the ones it names in `after` (a cycle or unknown name is an error)."""
    done: list[ServiceSpec] = []
    pending = list(SERVICES)
    while pending:
        ready = [s for s in pending if all(a in {d.name for d in done} for a in s.after)]
        if not ready:
            raise ValueError("services.common.registry: `after` names an unknown service or "
                             f"forms a cycle among {[s.name for s in pending]}")
        done.extend(ready)
        pending = [s for s in pending if s not in ready]
    return done
