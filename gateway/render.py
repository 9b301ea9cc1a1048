"""Renders the Envoy config from `envoy.yaml.tmpl`: `python -m gateway.render OUT`.

The API's documentation (gateway.docs_site: /openapi.json, Swagger UI at /docs) is served by
Envoy itself from the files protos/generate.sh writes beside the descriptor set, without a token.
The services, their clusters, routes and timeouts come from the registry
(services.common.registry); which methods need no token (public) and which the gateway hides
(internal) come from each method's declared access in the protos, and so do the rate limits:
public methods are limited per client address, methods that need a token per user. The rest
comes from the settings: GATEWAY_HOST, GATEWAY_PORT, GATEWAY_ADMIN_PORT, DESCRIPTOR_SET, the
services' <NAME>_ADDR, MAX_UPLOAD_BYTES, JWT_ISSUER, JWT_AUDIENCE, ACCESS_TOKEN_TTL_SECONDS, the
GATEWAY_* limits (GATEWAY_MAX_JSON_BODY_BYTES among them) and UPLOAD_MAX_SECONDS.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from string import Template

from google.api import annotations_pb2
from google.protobuf.descriptor import MethodDescriptor

from gateway import docs_site
from gateway.openapi import http_bindings
from services.common import registry
from services.common.access import Access, declared_access, method_path
from services.common.registry import ServiceSpec
from services.common.settings import Settings

TEMPLATE = Path(__file__).with_name("envoy.yaml.tmpl")
# Multipart framing around the file: boundaries and part headers, well under this.
MULTIPART_OVERHEAD = 64 * 1024
# Envoy fetches its own keys here; the method behind it is public and not rate limited.
JWKS_PATH = "/.well-known/jwks.json"
# Where jwt_authn puts the verified claims (the per-user rate limit reads `sub`).
JWT_PAYLOAD = "jwt_payload"
# A route's metadata (namespace "marquee") names the rate limit it draws on beyond the per-user
# one, which applies to every request with a verified token.
RATE_LIMIT_KEY = "rate_limit"
BY_ADDRESS = "per_address"


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


@dataclass(frozen=True)
class _Method:
    spec: ServiceSpec
    descriptor: MethodDescriptor
    access: Access

    @property
    def path(self) -> str:
        return method_path(self.descriptor)

    @property
    def per_address(self) -> bool:
        """Public methods (login, register, a future refresh...) are limited per client address,
        except the key set, which Envoy itself fetches."""
        rest = self.descriptor.GetOptions().Extensions[annotations_pb2.http]
        return self.access is Access.PUBLIC and rest.get != JWKS_PATH

    @property
    def upload(self) -> bool:
        """A client stream that a user sends (an upload): bounded in time on its own route."""
        return self.descriptor.client_streaming and self.access is Access.USER

    @property
    def rest_bindings(self) -> list[tuple[str, str]]:
        """(verb, path template) of each REST route the transcoder maps to this method: its
        http rule and the rule's additional bindings."""
        rule = self.descriptor.GetOptions().Extensions[annotations_pb2.http]
        return [(verb, template) for verb, template, _ in http_bindings(rule)]

    @property
    def rest_paths(self) -> list[str]:
        """The REST paths the transcoder maps to this method, without the verbs."""
        return [template for _, template in self.rest_bindings]


def _upload_paths_regex(methods: list[_Method]) -> str:
    """An RE2 pattern (Envoy matches it against the whole value) for the `:path` of a REST
    upload, with or without a query string: the request bodies that stream to the upload
    service and may be as large as MAX_UPLOAD_BYTES, where every other REST body is held to
    GATEWAY_MAX_JSON_BODY_BYTES."""
    paths = sorted({p for m in methods if m.upload for p in m.rest_paths})
    if not paths:
        raise ValueError("no upload method has a REST path: the JSON body limit would have "
                         "no exception (see gateway/envoy.yaml.tmpl)")
    for path in paths:
        if "{" in path:  # a template variable: teach this pattern what it may match
            raise ValueError(f"a REST upload path with variables is not supported: {path}")
    return "(?:" + "|".join(re.escape(p) for p in paths) + r")(?:\?.*)?"


_TEMPLATE_VARIABLE = re.compile(r"\{[^}=]+(?:=([^}]*))?\}")


def rest_path_regex(template: str) -> str:
    """An RE2 pattern for the paths an HttpRule path template matches (Envoy matches it
    against the whole path, without the query string): `/files/{file_id}` ->
    `/files/[^/]+`."""
    parts, pos = [], 0
    for variable in _TEMPLATE_VARIABLE.finditer(template):
        parts.append(re.escape(template[pos:variable.start()]))
        segments = (variable.group(1) or "*").split("/")
        parts.append("/".join({"*": "[^/]+", "**": ".+"}.get(s) or re.escape(s)
                              for s in segments))
        pos = variable.end()
    return "".join(parts) + re.escape(template[pos:])


def _allowed_verbs(methods: list[_Method]) -> dict[str, list[str]]:
    """Each REST path template (those without variables first, as Envoy must try them first)
    and the verbs a request to a path it matches may use. A path that both a literal template
    and one with variables match (`/files/upload`, `/files/{file_id}`) takes both's verbs:
    the transcoder maps `GET /files/upload` to the second."""
    verbs: dict[str, set[str]] = {}
    for method in methods:
        if method.access is not Access.INTERNAL:
            for verb, template in method.rest_bindings:
                verbs.setdefault(template, set()).add(verb.upper())
    literal = sorted(t for t in verbs if "{" not in t)
    variable = sorted(t for t in verbs if "{" in t)
    for template in literal:
        for other in variable:
            if re.fullmatch(rest_path_regex(other), template):
                verbs[template] |= verbs[other]
    return {t: sorted(verbs[t]) for t in (*literal, *variable)}


def _method_not_allowed_routes(methods: list[_Method]) -> str:
    """405 with `Allow` for a REST path asked with a verb it does not take. A request the
    transcoder maps has a gRPC path by the time it is routed, so only those it could not map
    keep their REST path and reach these routes, after every service's (which match gRPC paths
    only); without them the router answered 404, and jwt_authn 401 first to a caller without a
    token (the public methods' paths are exempted there: these routes are all they reach)."""
    return "\n".join(
        f"""              - match: {{safe_regex: {{regex: {_yaml_quoted(rest_path_regex(t))}}}}}
                direct_response:
                  status: 405
                  body: {{inline_string: "method not allowed: {t} takes {', '.join(v)}"}}
                response_headers_to_add:
                - header: {{key: allow, value: "{', '.join(v)}"}}
                  append_action: OVERWRITE_IF_EXISTS_OR_ADD"""
        for t, v in _allowed_verbs(methods).items())


def _yaml_quoted(text: str) -> str:
    """`text` as a single-quoted YAML scalar: backslashes stay as they are."""
    return "'" + text.replace("'", "''") + "'"


def _methods() -> Iterator[_Method]:
    for spec in registry.SERVICES:
        for service in spec.descriptors():
            for method in service.methods:
                yield _Method(spec, method, declared_access(method))


# A service route takes gRPC only (native, or what the transcoder made of a REST call): a plain
# HTTP request to a gRPC path got 503 or 200 from an upstream that speaks only gRPC; it now
# finds no route and gets a 404.
_GRPC_ONLY = "headers: [{name: content-type, string_match: {prefix: application/grpc}}]"


def _route(path: str, spec: ServiceSpec, extra: str = "") -> str:
    return f"""              - match: {{{path}, {_GRPC_ONLY}}}
                route:
                  cluster: {spec.name}
                  timeout: {spec.route_timeout}{extra}"""


def _routes(settings: Settings, methods: list[_Method]) -> str:
    """Exact-path routes for the methods with limits of their own, then one prefix route per
    proto service."""
    per_address = f"""
                metadata: {{filter_metadata: {{marquee: {{{RATE_LIMIT_KEY}: {BY_ADDRESS}}}}}}}"""
    upload = f"""
                  max_stream_duration: {{max_stream_duration: {settings.upload_max_seconds}s}}"""
    routes = [_route(f'path: "{m.path}"', m.spec) + per_address
              for m in methods if m.per_address]
    routes += [_route(f'path: "{m.path}"', m.spec, upload) for m in methods if m.upload]
    routes += [_route(f'prefix: "/{service.full_name}/"', spec)
               for spec in registry.SERVICES for service in spec.descriptors()]
    return "\n".join(routes)


def _admin_paths(methods: list[_Method]) -> str:
    """The RBAC permission (YAML flow style) that matches the admin methods by their gRPC path:
    the filter runs after the transcoder. One that matches nothing when there are none."""
    paths = [m.path for m in methods if m.access is Access.ADMIN]
    if not paths:
        return "{not_rule: {any: true}}"
    rules = ", ".join(f'{{url_path: {{path: {{exact: "{p}"}}}}}}' for p in paths)
    return f"{{or_rules: {{rules: [{rules}]}}}}"


def _doc_routes(settings: Settings) -> str:
    """A direct_response for each documentation file, read from the directory of the
    descriptor set, where protos/generate.sh writes them."""
    generated = settings.descriptor_set.parent
    return "\n".join(
        f"""              - match: {{path: "{f.url}"}}
                direct_response:
                  status: 200
                  body: {{filename: "{generated / f.file}"}}
                response_headers_to_add:
                - header: {{key: content-type, value: "{f.content_type}"}}
                  append_action: OVERWRITE_IF_EXISTS_OR_ADD"""
        for f in docs_site.FILES) + f"""
              - match: {{path: "{docs_site.PAGE}/"}}
                redirect: {{path_redirect: "{docs_site.PAGE}"}}"""


def render(settings: Settings) -> str:
    listen_host, listen_port = settings.gateway_host, settings.gateway_port
    self_host = "127.0.0.1" if listen_host in ("0.0.0.0", "::") else listen_host
    methods = list(_methods())
    internal = "\n".join(
        f"""              - match: {{path: "{m.path}"}}
                direct_response: {{status: 404}}"""
        for m in methods if m.access is Access.INTERNAL
    )
    docs = "\n".join(
        f"""              - match: {{path: "{url}"}}  # documentation"""
        for url in (*(f.url for f in docs_site.FILES), f"{docs_site.PAGE}/"))
    public = "\n".join(
        f"""              - match: {{path: "{m.path}"}}"""
        for m in methods if m.access is Access.PUBLIC
    )
    # A public method's REST path that is still the request's path after the transcoder was not
    # mapped (another verb): it can only reach its 405 route, as a caller without a token
    # should, rather than 401.
    public += "".join(
        f"""
              - match: {{safe_regex: {{regex: {_yaml_quoted(rest_path_regex(p))}}}}}"""
        f"""  # REST: 405"""
        for p in sorted({p for m in methods if m.access is Access.PUBLIC for p in m.rest_paths}))
    # Internal methods need no token here either: their routes answer 404 themselves (a
    # direct_response, first in the route table), so nothing reaches a service whatever the
    # caller presents, and without a rule jwt_authn would answer 401 first to a caller without
    # a token, telling it that the path is there. A rule matches `:path` exactly as its route
    # does (without the query string), so no other path gets in without a token.
    unchecked = "\n".join(
        f"""              - match: {{path: "{m.path}"}}  # internal: the route answers 404"""
        for m in methods if m.access is Access.INTERNAL
    )
    transcoded = "\n".join(
        f"              - {service.full_name}"
        for spec in registry.SERVICES for service in spec.descriptors()
    )
    clusters = "\n".join(_cluster(s.name, settings.addr(s.name)) for s in registry.SERVICES)
    return Template(TEMPLATE.read_text()).substitute(
        ADMIN_PORT=settings.gateway_admin_port,
        LISTEN_HOST=listen_host,
        LISTEN_PORT=listen_port,
        SELF_HOST=self_host,
        SELF_PORT=listen_port,
        SELF_ADDR=f"{self_host}:{listen_port}",
        MAX_REQUEST_BYTES=settings.max_upload_bytes + MULTIPART_OVERHEAD,
        MAX_JSON_BODY_BYTES=settings.gateway_max_json_body_bytes,
        UPLOAD_PATHS=_yaml_quoted(_upload_paths_regex(methods)),
        DESCRIPTOR=str(settings.descriptor_set),
        JWT_ISSUER=settings.jwt_issuer,
        JWT_AUDIENCE=settings.jwt_audience,
        JWT_PAYLOAD=JWT_PAYLOAD,
        JWKS_PATH=JWKS_PATH,
        TOKEN_MAX_LIFETIME=settings.access_token_ttl_seconds,
        REQUEST_HEADERS_TIMEOUT=settings.gateway_request_headers_timeout_seconds,
        IDLE_TIMEOUT=settings.gateway_idle_timeout_seconds,
        MAX_CONNECTIONS=settings.gateway_max_connections,
        XFF_TRUSTED_HOPS=settings.gateway_xff_trusted_hops,
        RATE_LIMIT_KEY=RATE_LIMIT_KEY,
        BY_ADDRESS=BY_ADDRESS,
        AUTH_RATE_LIMIT=settings.gateway_auth_rate_limit,
        AUTH_RATE_WINDOW=settings.gateway_auth_rate_window_seconds,
        USER_RATE_LIMIT=settings.gateway_user_rate_limit,
        USER_RATE_WINDOW=settings.gateway_user_rate_window_seconds,
        RATE_LIMIT_MAX_KEYS=settings.gateway_rate_limit_max_keys,
        DOC_ROUTES=_doc_routes(settings),
        DOC_PATHS=docs,
        INTERNAL_ROUTES=internal,
        SERVICE_ROUTES=_routes(settings, methods),
        METHOD_NOT_ALLOWED_ROUTES=_method_not_allowed_routes(methods),
        PUBLIC_METHODS=public,
        INTERNAL_METHODS=unchecked,
        ADMIN_METHODS=_admin_paths(methods),
        TRANSCODED_SERVICES=transcoded,
        CLUSTERS=clusters,
    )


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("build/envoy.yaml")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(Settings.from_env()))
    print(out)


if __name__ == "__main__":
    main()
