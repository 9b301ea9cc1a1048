"""The Envoy config that gateway.render writes: the token check, the limits on slow clients and
the rate limits, read back from the rendered YAML (and validated by Envoy when it is installed).

tests/integration/test_abuse_gateway.py replays the attacks these settings answer against the
real stack.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from google.api import annotations_pb2

from gateway import docs_site
from gateway.render import (
    BY_ADDRESS,
    JWKS_PATH,
    JWT_PAYLOAD,
    MULTIPART_OVERHEAD,
    RATE_LIMIT_KEY,
    render,
    rest_path_regex,
)
from services.common import registry
from services.common.access import Access, declared_access, method_path
from services.common.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DESCRIPTOR_SET = ROOT / "build" / "gen" / "marquee.pb"
JWT_FILTER = "envoy.filters.http.jwt_authn"
RATE_LIMIT_FILTER = "envoy.filters.http.local_ratelimit"
JSON_LIMIT_FILTER = "marquee.json_body_limit"
BODY_LIMIT_FILTER = "envoy.filters.http.body_size_limit"
TRANSCODER = "envoy.filters.http.grpc_json_transcoder"
METHODS = [m for spec in registry.SERVICES for s in spec.descriptors() for m in s.methods]
DOC_URLS = {*(f.url for f in docs_site.FILES), f"{docs_site.PAGE}/"}


def _config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, **env: str) -> dict[str, Any]:
    monkeypatch.chdir(tmp_path)  # no .env from the working tree
    monkeypatch.setenv("DESCRIPTOR_SET", str(DESCRIPTOR_SET))
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    config = yaml.safe_load(render(Settings.from_env()))
    assert isinstance(config, dict)
    return config


@pytest.fixture
def config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, Any]:
    return _config(monkeypatch, tmp_path, ACCESS_TOKEN_TTL_SECONDS="600",
                   GATEWAY_REQUEST_HEADERS_TIMEOUT_SECONDS="7", GATEWAY_IDLE_TIMEOUT_SECONDS="45",
                   GATEWAY_MAX_CONNECTIONS="321", GATEWAY_AUTH_RATE_LIMIT="11",
                   GATEWAY_AUTH_RATE_WINDOW_SECONDS="30", GATEWAY_USER_RATE_LIMIT="55",
                   GATEWAY_USER_RATE_WINDOW_SECONDS="5", GATEWAY_RATE_LIMIT_MAX_KEYS="777",
                   UPLOAD_MAX_SECONDS="1800", GATEWAY_MAX_JSON_BODY_BYTES="4096",
                   MAX_UPLOAD_BYTES="5000000")


def _manager(config: dict[str, Any]) -> dict[str, Any]:
    (listener,) = config["static_resources"]["listeners"]
    (chain,) = listener["filter_chains"]
    (hcm,) = chain["filters"]
    manager = hcm["typed_config"]
    assert isinstance(manager, dict)
    return manager


def _filters(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f["name"]: f["typed_config"] for f in _manager(config)["http_filters"]}


def _routes(config: dict[str, Any]) -> list[dict[str, Any]]:
    (host,) = _manager(config)["route_config"]["virtual_hosts"]
    routes = host["routes"]
    assert isinstance(routes, list)
    return routes


def _route_for(config: dict[str, Any], path: str) -> dict[str, Any]:
    """The route Envoy picks for a gRPC path: the first whose path or prefix matches."""
    for route in _routes(config):
        match = route["match"]
        if match.get("path") == path or path.startswith(match.get("prefix", "\0")):
            return route
    raise AssertionError(f"no route for {path}")


def _rest_paths(method: Any) -> list[str]:
    rule = method.GetOptions().Extensions[annotations_pb2.http]
    paths = []
    for binding in (rule, *rule.additional_bindings):
        pattern = binding.WhichOneof("pattern")
        if pattern is not None:
            paths.append(binding.custom.path if pattern == "custom" else getattr(binding, pattern))
    return paths


# --- the token check (issue 10, item 10) -----------------------------------------------------


def test_the_jwt_provider_is_as_strict_as_the_services(config: dict[str, Any]) -> None:
    provider = _filters(config)[JWT_FILTER]["providers"]["marquee"]
    assert provider["clock_skew_seconds"] == 1  # the least Envoy has: 0 means its default, 60
    assert provider["require_expiration"] is True
    assert provider["max_lifetime"] == "600s"  # ACCESS_TOKEN_TTL_SECONDS
    assert provider["issuer"] == "marquee" and provider["audiences"] == ["marquee"]


def test_tokens_come_from_the_authorization_header_only(config: dict[str, Any]) -> None:
    provider = _filters(config)[JWT_FILTER]["providers"]["marquee"]
    assert provider["from_headers"] == [{"name": "Authorization", "value_prefix": "Bearer "}]
    assert "from_params" not in provider and "from_cookies" not in provider
    assert provider["forward"] is True  # the services check the token again


def test_the_access_log_leaves_out_query_strings(config: dict[str, Any]) -> None:
    (log,) = _manager(config)["access_log"]
    log_format = log["typed_config"]["log_format"]
    fields = log_format["json_format"]
    assert fields["path"] == "%REQ_WITHOUT_QUERY(X-ENVOY-ORIGINAL-PATH?:PATH)%"
    assert fields["grpc_path"] == "%REQ_WITHOUT_QUERY(:PATH)%"
    assert not [v for v in fields.values() if "PATH" in v and "WITHOUT_QUERY" not in v]
    assert [f["name"] for f in log_format["formatters"]] == ["envoy.formatter.req_without_query"]


# --- slow clients (item 11) ------------------------------------------------------------------


def test_slow_clients_are_timed_out(config: dict[str, Any]) -> None:
    manager = _manager(config)
    assert manager["request_headers_timeout"] == "7s"
    assert manager["common_http_protocol_options"]["idle_timeout"] == "45s"
    assert manager["stream_idle_timeout"] == "300s"


def test_client_connections_are_limited(config: dict[str, Any]) -> None:
    (monitor,) = config["overload_manager"]["resource_monitors"]
    assert monitor["name"] == "envoy.resource_monitors.global_downstream_max_connections"
    assert monitor["typed_config"]["max_active_downstream_connections"] == 321
    assert config["admin"]["ignore_global_conn_limit"] is True


def test_service_routes_take_grpc_only(config: dict[str, Any]) -> None:
    """A plain HTTP request to a gRPC path got 503 or 200 from an upstream that speaks gRPC
    only; with no route for it, the gateway answers 404."""
    to_services = [r for r in _routes(config) if "cluster" in r.get("route", {})]
    assert to_services
    for route in to_services:
        assert route["match"]["headers"] == [
            {"name": "content-type", "string_match": {"prefix": "application/grpc"}}]


def test_uploads_are_bounded_in_time_and_nothing_else_is(config: dict[str, Any]) -> None:
    uploads = [m for m in METHODS
               if m.client_streaming and declared_access(m) is Access.USER]
    assert {m.name for m in uploads} >= {"UploadFile", "UploadMultipart"}
    for method in uploads:
        route = _route_for(config, method_path(method))
        assert route["match"]["path"] == method_path(method)
        assert route["route"]["max_stream_duration"] == {"max_stream_duration": "1800s"}
    bounded = [r for r in _routes(config) if "max_stream_duration" in r.get("route", {})]
    assert len(bounded) == len(uploads)  # WatchTask and the exports may last


# --- rate limits -----------------------------------------------------------------------------


def test_the_rate_limit_runs_after_the_token_check(config: dict[str, Any]) -> None:
    names = list(_filters(config))
    assert names.index(JWT_FILTER) < names.index(RATE_LIMIT_FILTER) \
        < names.index("envoy.filters.http.router")
    limit = _filters(config)[RATE_LIMIT_FILTER]
    for key in ("filter_enabled", "filter_enforced"):  # Envoy's default is 0 %
        assert limit[key]["default_value"] == {"numerator": 100}
    assert limit["enable_x_ratelimit_headers"] == "DRAFT_VERSION_03"
    assert limit["rate_limited_as_resource_exhausted"] is True  # native gRPC: not UNAVAILABLE
    assert limit["max_dynamic_descriptors"] == 777
    assert "token_bucket" not in limit  # requests that match no descriptor are not limited


def test_buckets_per_client_address_and_per_user(config: dict[str, Any]) -> None:
    limit = _filters(config)[RATE_LIMIT_FILTER]
    by_address, by_user = limit["descriptors"]
    assert by_address["entries"] == [{"key": RATE_LIMIT_KEY, "value": BY_ADDRESS},
                                      {"key": "remote_address"}]
    assert by_address["token_bucket"] == {"max_tokens": 11, "tokens_per_fill": 11,
                                          "fill_interval": "30s"}
    assert by_user["entries"] == [{"key": "user"}]
    assert by_user["token_bucket"] == {"max_tokens": 55, "tokens_per_fill": 55,
                                       "fill_interval": "5s"}
    address_actions, user_actions = (r["actions"] for r in limit["rate_limits"])
    assert address_actions == [
        {"metadata": {"descriptor_key": RATE_LIMIT_KEY, "source": "ROUTE_ENTRY",
                      "metadata_key": {"key": "marquee", "path": [{"key": RATE_LIMIT_KEY}]}}},
        {"remote_address": {}},
    ]
    # The user is the verified `sub`, where jwt_authn puts the payload.
    provider = _filters(config)[JWT_FILTER]["providers"]["marquee"]
    assert provider["payload_in_metadata"] == JWT_PAYLOAD
    assert user_actions == [{"metadata": {"descriptor_key": "user", "metadata_key": {
        "key": JWT_FILTER, "path": [{"key": JWT_PAYLOAD}, {"key": "sub"}]}}}]


def _limited_by_address(route: dict[str, Any]) -> bool:
    metadata = route.get("metadata", {}).get("filter_metadata", {}).get("marquee", {})
    return bool(metadata.get(RATE_LIMIT_KEY) == BY_ADDRESS)


def test_public_methods_are_limited_per_address_except_the_key_set(
    config: dict[str, Any]
) -> None:
    """Login, register, verify (and any public method added later, such as a refresh), but not
    the JWKS, which Envoy itself fetches through the gateway."""
    for method in METHODS:
        access = declared_access(method)
        route = _route_for(config, method_path(method))
        jwks = method.GetOptions().Extensions[annotations_pb2.http].get == JWKS_PATH
        assert _limited_by_address(route) == (access is Access.PUBLIC and not jwks), \
            method.full_name
    assert {m.name for m in METHODS if _limited_by_address(_route_for(config, method_path(m)))} \
        >= {"Login", "Register"}


def test_internal_methods_still_answer_404_before_any_route(config: dict[str, Any]) -> None:
    for method in METHODS:
        if declared_access(method) is Access.INTERNAL:
            assert _route_for(config, method_path(method))["direct_response"] == {"status": 404}


def test_rate_limited_answers_carry_retry_after_and_the_json_error(
    config: dict[str, Any]
) -> None:
    mapper, _too_large, _errors = _manager(config)["local_reply_config"]["mappers"]
    assert mapper["filter"]["status_code_filter"]["comparison"]["value"]["default_value"] == 429
    assert "Retry-After" in mapper["body"]["inline_string"]
    lua = _filters(config)["envoy.filters.http.lua"]["default_source_code"]["inline_string"]
    assert '"retry-after"' in lua and '"x-ratelimit-reset"' in lua


def test_client_addresses_are_the_connections_unless_proxies_are_trusted(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    manager = _manager(_config(monkeypatch, tmp_path))
    assert manager["use_remote_address"] is True  # else Envoy believes X-Forwarded-For
    assert manager["xff_num_trusted_hops"] == 0
    behind_one = _manager(_config(monkeypatch, tmp_path, GATEWAY_XFF_TRUSTED_HOPS="1"))
    assert behind_one["xff_num_trusted_hops"] == 1


def test_envoy_accepts_the_rendered_config(config: dict[str, Any], tmp_path: Path) -> None:
    try:
        from devstack import binaries

        envoy = binaries.envoy()
    except Exception as exc:  # the dev extra is not installed
        pytest.skip(f"no Envoy binary: {exc}")
    if not DESCRIPTOR_SET.exists():
        pytest.skip("no generated descriptor set (make generate)")
    path = tmp_path / "envoy.yaml"
    path.write_text(yaml.safe_dump(config))
    result = subprocess.run([envoy, "--mode", "validate", "-c", str(path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[warning]" not in result.stdout + result.stderr


def test_retry_after_is_the_rate_limits_only_where_the_service_gave_none(
    config: dict[str, Any]
) -> None:
    """The login throttle's own retry-after (a trailer of a trailers-only answer, so a header
    of the REST one) was overwritten with 1 from x-ratelimit-reset."""
    lua = _filters(config)["envoy.filters.http.lua"]["default_source_code"]["inline_string"]
    condition = lua[lua.index("if headers:get(\":status\") == \"429\""):lua.index(" then")]
    assert 'headers:get("retry-after") == nil' in condition
    assert 'reset ~= nil' in condition


# --- request bodies --------------------------------------------------------------------------

UPLOADS = [m for m in METHODS if m.client_streaming and declared_access(m) is Access.USER]
UPLOAD_REST_PATHS = {p for m in UPLOADS for p in _rest_paths(m)}
OTHER_REST_PATHS = {p for m in METHODS for p in _rest_paths(m)} - UPLOAD_REST_PATHS


def _skip_predicates(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The JSON body limit's exceptions: header name -> how its value is matched."""
    (matcher,) = _filters(config)[JSON_LIMIT_FILTER]["xds_matcher"]["matcher_list"]["matchers"]
    assert matcher["on_match"]["action"]["typed_config"]["@type"].endswith(
        "envoy.extensions.filters.common.matcher.action.v3.SkipFilter")
    predicates = matcher["predicate"]["or_matcher"]["predicate"]
    return {p["single_predicate"]["input"]["typed_config"]["header_name"]:
            p["single_predicate"]["value_match"] for p in predicates}


def test_rest_bodies_are_held_to_the_json_limit_before_the_transcoder(
    config: dict[str, Any]
) -> None:
    """The transcoder holds a whole JSON body until it ends (a 100 MB login took Envoy from 75
    to 526 MB); the body limit in front of it refuses one over GATEWAY_MAX_JSON_BODY_BYTES."""
    names = list(_filters(config))
    assert names.index(JSON_LIMIT_FILTER) < names.index(BODY_LIMIT_FILTER) \
        < names.index(TRANSCODER)
    limit = _filters(config)[JSON_LIMIT_FILTER]["extension_config"]
    assert limit["name"] == BODY_LIMIT_FILTER
    assert limit["typed_config"]["max_request_bytes"] == 4096
    # Uploads keep theirs, for native gRPC and REST alike.
    assert _filters(config)[BODY_LIMIT_FILTER]["max_request_bytes"] == \
        5_000_000 + MULTIPART_OVERHEAD
    # The transcoder's own option is not the bound: it counts only JSON not yet parsed.
    assert "max_request_body_size" not in _filters(config)[TRANSCODER]


def test_the_json_limit_spares_native_grpc_and_the_streamed_uploads(
    config: dict[str, Any]
) -> None:
    predicates = _skip_predicates(config)
    assert set(predicates) == {"content-type", ":path"}
    assert predicates["content-type"] == {"prefix": "application/grpc"}  # as the transcoder
    assert predicates[":path"]["safe_regex"]["google_re2"] == {}
    pattern = predicates[":path"]["safe_regex"]["regex"]
    assert {"/files/upload"} <= UPLOAD_REST_PATHS
    for path in UPLOAD_REST_PATHS:  # RE2 matches the whole value, as fullmatch does
        assert re.fullmatch(pattern, path) and re.fullmatch(pattern, path + "?a=1"), path
    for path in OTHER_REST_PATHS | {p + "x" for p in UPLOAD_REST_PATHS} | {"/", "/files"}:
        assert not re.fullmatch(pattern, path), path
    assert "/auth/login" in OTHER_REST_PATHS


def test_the_json_limit_answers_413_saying_the_limit(config: dict[str, Any]) -> None:
    _rate_limited, too_large, _errors = _manager(config)["local_reply_config"]["mappers"]
    assert too_large["body"]["inline_string"] == "request body too large: at most 4096 bytes"
    filters = too_large["filter"]["and_filter"]["filters"]
    status = filters[0]["status_code_filter"]["comparison"]
    assert status["op"] == "EQ" and status["value"]["default_value"] == 413
    # Not the upload limit's 413: a REST request (not gRPC, or transcoded to it)...
    rest = [f["header_filter"]["header"] for f in filters[1]["or_filter"]["filters"]]
    assert rest == [{"name": "x-envoy-original-path", "present_match": True},
                    {"name": "content-type", "string_match": {"prefix": "application/grpc"},
                     "invert_match": True, "treat_missing_header_as_empty": True}]
    # ... whose path is not an upload's, before or after transcoding.
    pattern = _skip_predicates(config)[":path"]["safe_regex"]["regex"]
    paths = [f["header_filter"]["header"] for f in filters[2:]]
    assert [p["name"] for p in paths] == [":path", "x-envoy-original-path"]
    for header in paths:
        assert header["string_match"] == {"safe_regex": {"regex": pattern}}
        assert header["invert_match"] is True
    assert paths[1]["treat_missing_header_as_empty"] is True


# --- internal methods ------------------------------------------------------------------------


def test_public_and_internal_methods_skip_the_token_check_and_nothing_else(
    config: dict[str, Any]
) -> None:
    """Internal methods answer 404 at their route (a direct_response: nothing reaches a
    service), to callers with and without a token alike; without a rule, jwt_authn answered
    401 first to a caller without one."""
    *rules, last = _filters(config)[JWT_FILTER]["rules"]
    assert last == {"match": {"prefix": "/"}, "requires": {"provider_name": "marquee"}}
    assert all(set(rule) == {"match"} for rule in rules)  # no `requires`: no check
    exact = [rule for rule in rules if "path" in rule["match"]]
    unchecked = [rule["match"]["path"] for rule in exact
                 if rule["match"]["path"] not in DOC_URLS]  # see test_the_docs_are_public
    declared = {method_path(m): declared_access(m) for m in METHODS}
    # The public methods' REST paths, which only an unmapped verb leaves as the path: their
    # 405 routes (test_rest_paths_answer_405_to_other_verbs).
    public_rest = {rest_path_regex(p) for m in METHODS if declared_access(m) is Access.PUBLIC
                   for p in _rest_paths(m)}
    assert {rule["match"]["safe_regex"]["regex"] for rule in rules
            if rule not in exact} == public_rest
    for regex in public_rest:
        (route,) = [r for r in _routes(config) if r["match"].get("safe_regex", {}).get(
            "regex") == regex]
        assert route["direct_response"]["status"] == 405
    assert sorted(unchecked) == sorted(path for path, access in declared.items()
                                       if access in (Access.PUBLIC, Access.INTERNAL))
    for path in unchecked:
        route = _route_for(config, path)
        if declared[path] is Access.INTERNAL:
            assert route["direct_response"] == {"status": 404}, path
        else:
            assert "route" in route, path


def test_admin_methods_need_the_admin_role_claim_after_the_token_check(
    config: dict[str, Any]
) -> None:
    names = list(_filters(config))
    assert names.index(JWT_FILTER) < names.index("envoy.filters.http.rbac")
    rules = _filters(config)["envoy.filters.http.rbac"]["rules"]
    assert rules["action"] == "DENY"
    (policy,) = rules["policies"].values()
    (permission,) = policy["permissions"]
    guarded = [rule["url_path"]["path"]["exact"] for rule in permission["or_rules"]["rules"]]
    assert sorted(guarded) == sorted(method_path(m) for m in METHODS
                                     if declared_access(m) is Access.ADMIN)
    assert guarded  # the auth, task and catalog services each declare some
    (principal,) = policy["principals"]
    matcher = principal["not_id"]["sourced_metadata"]["metadata_matcher"]
    assert matcher["filter"] == JWT_FILTER
    assert matcher["path"] == [{"key": "jwt_payload"}, {"key": "role"}]
    assert matcher["value"] == {"string_match": {"exact": "admin"}}


# --- documentation ---------------------------------------------------------------------------


def test_the_docs_are_public_files_served_by_envoy(config: dict[str, Any]) -> None:
    """/openapi.json and Swagger UI: a direct_response from the generated directory with its
    content type, before any other route, and no token needed."""
    routes = _routes(config)
    generated = DESCRIPTOR_SET.parent
    for route, doc in zip(routes, docs_site.FILES, strict=False):
        assert route["match"] == {"path": doc.url}
        assert route["direct_response"] == {"status": 200,
                                            "body": {"filename": str(generated / doc.file)}}
        (header,) = route["response_headers_to_add"]
        assert header["header"] == {"key": "content-type", "value": doc.content_type}
        assert header["append_action"] == "OVERWRITE_IF_EXISTS_OR_ADD"
    slash = routes[len(docs_site.FILES)]
    assert slash == {"match": {"path": f"{docs_site.PAGE}/"},
                     "redirect": {"path_redirect": docs_site.PAGE}}
    bundle = (generated / "docs" / "swagger-ui-bundle.js")
    if bundle.exists():
        limit = _manager(config)["route_config"]["max_direct_response_body_size_bytes"]
        assert bundle.stat().st_size < limit
    exempt = [r["match"].get("path") for r in _filters(config)[JWT_FILTER]["rules"]
              if "requires" not in r]
    assert set(exempt) >= DOC_URLS


def test_only_errors_get_the_json_error_body(config: dict[str, Any]) -> None:
    """A global body_format would rewrite the files served with 200 into the error shape."""
    local_reply = _manager(config)["local_reply_config"]
    assert "body_format" not in local_reply
    *_, errors = local_reply["mappers"]
    assert errors["filter"]["status_code_filter"]["comparison"]["op"] == "GE"
    assert errors["filter"]["status_code_filter"]["comparison"]["value"]["default_value"] == 400
    for mapper in local_reply["mappers"]:
        assert mapper["body_format_override"] == {"json_format": {
            "status": "%RESPONSE_CODE%", "message": "%LOCAL_REPLY_BODY%"}}


def test_only_the_docs_are_compressed(config: dict[str, Any]) -> None:
    compressor = _filters(config)["marquee.docs_compressor"]
    (matcher,) = compressor["xds_matcher"]["matcher_list"]["matchers"]
    skip_unless = matcher["predicate"]["not_matcher"]["single_predicate"]
    assert skip_unless["input"]["typed_config"]["header_name"] == ":path"
    assert skip_unless["value_match"] == {"prefix": "/docs"}
    assert matcher["on_match"]["action"]["name"] == "skip"


# --- verbs a REST path does not take (issue 15, the fuzz) ------------------------------------


def test_rest_path_templates_become_whole_path_patterns() -> None:
    assert rest_path_regex("/files/{file_id}/content") == "/files/[^/]+/content"
    assert rest_path_regex("/v1/{name=shelves/*}/books/{id}") == "/v1/shelves/[^/]+/books/[^/]+"
    assert rest_path_regex("/.well-known/jwks.json") == r"/\.well\-known/jwks\.json"
    assert re.fullmatch(rest_path_regex("/files/{file_id}"), "/files/upload")
    assert not re.fullmatch(rest_path_regex("/files/{file_id}"), "/files/a/content")


def test_rest_paths_answer_405_to_other_verbs(config: dict[str, Any]) -> None:
    """Schemathesis found that a REST path asked with a verb it does not take (TRACE
    /auth/verify, PUT /tasks) got 404, or 401 without a token: now 405 with the verbs that path
    takes in Allow, after every service's route (only a request the transcoder did not map
    keeps its REST path)."""
    routes = _routes(config)
    first = next(i for i, r in enumerate(routes) if r.get("direct_response", {}).get(
        "status") == 405)
    services = [r for r in routes if "prefix" in r["match"]]
    assert services and all(routes.index(r) < first for r in services)
    assert all(r["direct_response"]["status"] == 405 for r in routes[first:])
    allowed = {r["match"]["safe_regex"]["regex"]: r["response_headers_to_add"][0]["header"]
               for r in routes[first:]}
    assert allowed[rest_path_regex("/ratings/{rating_id}")]["value"] == "DELETE, GET, PATCH, PUT"
    assert allowed[rest_path_regex("/auth/login")] == {"key": "allow", "value": "POST"}
    # /files/upload takes POST, and GET and DELETE as a /files/{file_id}: tried before it.
    regexes = list(allowed)
    upload, any_file = rest_path_regex("/files/upload"), rest_path_regex("/files/{file_id}")
    assert allowed[upload]["value"] == "DELETE, GET, POST"
    assert regexes.index(upload) < regexes.index(any_file)
    documented = {p for m in METHODS if declared_access(m) is not Access.INTERNAL
                  for p in _rest_paths(m)}
    assert set(allowed) == {rest_path_regex(p) for p in documented}
