"""Renders the Envoy config from `envoy.yaml.tmpl`: `python -m gateway.render OUT`.

Settings (environment): GATEWAY_HOST/GATEWAY_PORT (listener, default 127.0.0.1:8000),
GATEWAY_ADMIN_PORT (default 9901), the services' *_ADDR, MAX_UPLOAD_BYTES, JWT_ISSUER,
JWT_AUDIENCE, and DESCRIPTOR_SET (default build/gen/marquee.pb).
"""

from __future__ import annotations

import os
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
        explicit_http_config: {{http2_protocol_options: {{}}}}
    load_assignment:
      cluster_name: {name}
      endpoints:
      - lb_endpoints:
        - endpoint:
            address:
              socket_address: {{address: {host}, port_value: {port}}}"""


def render(settings: Settings, env: dict[str, str]) -> str:
    listen_host = env.get("GATEWAY_HOST", "127.0.0.1")
    listen_port = env.get("GATEWAY_PORT", "8000")
    self_host = "127.0.0.1" if listen_host in ("0.0.0.0", "::") else listen_host
    descriptor = Path(env.get("DESCRIPTOR_SET", "build/gen/marquee.pb")).resolve()
    internal = "\n".join(
        f"""              - match: {{path: "{m}"}}
                direct_response: {{status: 404}}""" for m in INTERNAL_METHODS
    )
    clusters = "\n".join(_cluster(n, a) for n, a in (
        ("auth", settings.auth_addr), ("upload", settings.upload_addr),
        ("task", settings.task_addr), ("catalog", settings.catalog_addr),
    ))
    return Template(TEMPLATE.read_text()).substitute(
        ADMIN_PORT=env.get("GATEWAY_ADMIN_PORT", "9901"),
        LISTEN_HOST=listen_host,
        LISTEN_PORT=listen_port,
        SELF_HOST=self_host,
        SELF_PORT=listen_port,
        SELF_ADDR=f"{self_host}:{listen_port}",
        MAX_REQUEST_BYTES=settings.max_upload_bytes + MULTIPART_OVERHEAD,
        DESCRIPTOR=str(descriptor),
        JWT_ISSUER=settings.jwt_issuer,
        JWT_AUDIENCE=settings.jwt_audience,
        INTERNAL_ROUTES=internal,
        CLUSTERS=clusters,
    )


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("build/envoy.yaml")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(Settings.from_env(), dict(os.environ)))
    print(out)


if __name__ == "__main__":
    main()
