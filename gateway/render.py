"""Renders the Envoy config from `envoy.yaml.tmpl`: `python -m gateway.render OUT`.

Uses the gateway settings (GATEWAY_HOST, GATEWAY_PORT, GATEWAY_ADMIN_PORT, DESCRIPTOR_SET), the
services' *_ADDR, MAX_UPLOAD_BYTES, JWT_ISSUER and JWT_AUDIENCE.
"""

from __future__ import annotations

import sys
from pathlib import Path
from string import Template

from services.common.settings import Settings

TEMPLATE = Path(__file__).with_name("envoy.yaml.tmpl")
# Multipart framing around the file: boundaries and part headers, well under this.
MULTIPART_OVERHEAD = 64 * 1024
INTERNAL_METHODS = [
    "/marquee.upload.v1.UploadService/GetFile",
    "/marquee.upload.v1.UploadService/ReadFile",
    "/marquee.upload.v1.UploadService/DeleteFile",
    "/marquee.task.v1.TaskService/CreateTask",
    "/marquee.task.v1.TaskService/ClaimTask",
    "/marquee.task.v1.TaskService/ReportProgress",
    "/marquee.task.v1.TaskService/FinishTask",
    "/marquee.catalog.v1.CatalogService/ImportMovies",
]


def _cluster(name: str, addr: str) -> str:
    host, _, port = addr.rpartition(":")
    return f"""  - name: {name}
    type: STRICT_DNS
    connect_timeout: 2s
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config:
          http2_protocol_options:  # buffer at most 1 MiB per stream, as downstream
            initial_stream_window_size: 1048576
            initial_connection_window_size: 1048576
    load_assignment:
      cluster_name: {name}
      endpoints:
      - lb_endpoints:
        - endpoint:
            address:
              socket_address: {{address: {host}, port_value: {port}}}"""


def render(settings: Settings) -> str:
    listen_host, listen_port = settings.gateway_host, settings.gateway_port
    self_host = "127.0.0.1" if listen_host in ("0.0.0.0", "::") else listen_host
    internal = "\n".join(
        f"""              - match: {{path: "{m}"}}
                direct_response: {{status: 404}}""" for m in INTERNAL_METHODS
    )
    clusters = "\n".join(_cluster(n, a) for n, a in (
        ("auth", settings.auth_addr), ("upload", settings.upload_addr),
        ("task", settings.task_addr), ("catalog", settings.catalog_addr),
    ))
    return Template(TEMPLATE.read_text()).substitute(
        ADMIN_PORT=settings.gateway_admin_port,
        LISTEN_HOST=listen_host,
        LISTEN_PORT=listen_port,
        SELF_HOST=self_host,
        SELF_PORT=listen_port,
        SELF_ADDR=f"{self_host}:{listen_port}",
        MAX_REQUEST_BYTES=settings.max_upload_bytes + MULTIPART_OVERHEAD,
        DESCRIPTOR=str(settings.descriptor_set),
        JWT_ISSUER=settings.jwt_issuer,
        JWT_AUDIENCE=settings.jwt_audience,
        INTERNAL_ROUTES=internal,
        CLUSTERS=clusters,
    )


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("build/envoy.yaml")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(Settings.from_env()))
    print(out)


if __name__ == "__main__":
    main()
