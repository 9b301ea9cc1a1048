"""The container deployment (Dockerfile, docker-compose.yml) agrees with the code it runs.

No Docker engine is needed: docker-compose.yml is validated against the official Compose
Specification JSON schema (the copy check-jsonschema vendors), and the files are checked against
the sources they depend on: the variable names Settings reads, each service's port, the modules
the commands start, the Makefile's protoc command and the Envoy config that gateway.render
produces for the network. The schema says what any Compose file may hold; the checks below it
say what this project's must.
"""

from __future__ import annotations

import ast
import copy
import hashlib
import importlib.resources
import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Mapping
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import jsonschema
import pytest
import yaml
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from gateway import docs_site
from services.common import registry
from tests.unit.tree import walk

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"

# Every registered service must have its block, healthcheck and address here.
GRPC_SERVICES = tuple(s.name for s in registry.SERVICES)
EXPECTED_SERVICES = {*GRPC_SERVICES, "worker", "mongo", "redis", "envoy-config", "envoy"}
ENV_CALLS = {"env", "_int", "getenv"}  # env = os.environ.get in Settings.from_env
ENV_METHODS = {"get", "getenv", "setdefault", "pop"}
ENV_OWNERS = {"env", "environ", "os"}
# What the operator must set before `docker compose up`; compose refuses to start without it.
OPERATOR_ENV = {"SERVICE_KEY": "k" * 44}


# --- helpers ---------------------------------------------------------------------------------


def _compose_spec() -> dict[str, Any]:
    """The Compose Specification's schema (compose-spec/compose-spec, schema/compose-spec.json)
    as check-jsonschema ships it, checked against the sha256 that package records for its copy."""
    vendor = importlib.resources.files("check_jsonschema.builtin_schemas.vendor")
    text = (vendor / "compose-spec.json").read_bytes()
    recorded = (vendor / "sha256" / "compose-spec.sha256").read_text().split()[0]
    assert hashlib.sha256(text).hexdigest() == recorded, "the vendored compose-spec.json changed"
    schema = json.loads(text)
    assert isinstance(schema, dict) and schema["title"] == "Compose Specification"
    return schema


def _project_schema() -> dict[str, Any]:
    """The Compose Specification, and on top of it every service this project must define: the
    registered gRPC services, the worker, the stand-ins and the gateway."""
    return {"allOf": [_compose_spec(), {
        "required": ["services"],
        "properties": {"services": {"required": sorted(EXPECTED_SERVICES)}},
    }]}


def _schema_errors(document: Any) -> list[str]:
    # The draft the specification declares ($schema; 2020-12 today).
    validator_class = jsonschema.validators.validator_for(_compose_spec())
    validator = validator_class(_project_schema())
    return [f"{e.json_path}: {e.message}" for e in validator.iter_errors(document)]


def _interpolated(node: Any) -> Any:
    """The document as compose sees it once the operator's environment is substituted (compose
    validates after interpolation)."""
    if isinstance(node, dict):
        return {k: _interpolated(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_interpolated(v) for v in node]
    return _interpolate(node) if isinstance(node, str) else node


def _compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(data, dict)
    return data


def _services() -> dict[str, dict[str, Any]]:
    services = _compose()["services"]
    assert isinstance(services, dict)
    return services


class MissingVariable(Exception):
    """`${NAME:?message}` with NAME unset: compose refuses to start and shows the message."""


def _interpolate(value: str, env: Mapping[str, str] = OPERATOR_ENV) -> str:
    """Compose's interpolation with `env` set: `${NAME}`; `${NAME:-default}` and
    `${NAME-default}` (the default when NAME is unset, or with `:` also empty); `${NAME:?message}`
    and `${NAME?message}` (MissingVariable then); `$$` -> `$`."""

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, operator, argument = match.group(1), match.group(2) or "", match.group(3) or ""
        given = env.get(name)
        if given is not None and not (given == "" and operator.startswith(":")):
            return given
        if operator.endswith("?"):
            raise MissingVariable(f"{name}: {argument}")
        return argument

    return re.sub(r"\$\$|\$\{(\w+)(?:(:?[-?])([^}]*))?\}", substitute, value)


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    assert isinstance(env, dict), "environment should be a mapping (the anchors merge mappings)"
    return {k: _interpolate(str(v)) for k, v in env.items()}


def _argv(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return shlex.split(value)
    assert isinstance(value, list)
    assert all(isinstance(v, str) for v in value), f"non-string argument in {value!r}"
    return list(value)


def _command_text(service: dict[str, Any]) -> str:
    return " ".join(_argv(service.get("command")))


def _healthcheck_text(service: dict[str, Any]) -> str:
    test = (service.get("healthcheck") or {}).get("test")
    return " ".join(_argv(test))


def _long_running(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {n: s for n, s in services.items() if s.get("restart", "no") != "no"}


def _env_names_read(path: Path) -> set[str]:
    """Variable names a module reads: env("X"), _int("X"), os.environ.get("X"),
    os.getenv("X"), env.get("X"), os.environ["X"] -- string literals only."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        arg: ast.expr | None = None
        if isinstance(node, ast.Call) and node.args:
            func = node.func
            if isinstance(func, ast.Name) and func.id in ENV_CALLS:
                arg = node.args[0]
            elif isinstance(func, ast.Attribute) and func.attr in ENV_METHODS:
                owner = func.value
                owner_name = owner.id if isinstance(owner, ast.Name) else (
                    owner.attr if isinstance(owner, ast.Attribute) else "")
                if owner_name in ENV_OWNERS:
                    arg = node.args[0]
        elif (isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute)
              and node.value.attr == "environ"):
            arg = node.slice
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            names.add(arg.value)
    return names


def _settings_names() -> set[str]:
    """What Settings reads: its literal names, and each registered service's address."""
    return (_env_names_read(ROOT / "services" / "common" / "settings.py")
            | {s.addr_setting for s in registry.SERVICES})


def _modules_started(text: str) -> list[str]:
    return re.findall(r"python -m ([\w.]+)", text)


def _module_files(module: str) -> list[Path]:
    """The source files of `python -m module`: a package's files, or the module's file."""
    base = ROOT.joinpath(*module.split("."))
    if (base / "__main__.py").is_file():
        return sorted(base.glob("*.py"))
    if base.with_suffix(".py").is_file():
        return [base.with_suffix(".py")]
    return []


def _port(addr: str) -> int:
    return int(addr.rpartition(":")[2])


def _mounts(service: dict[str, Any]) -> dict[str, str]:
    """Container path -> named volume, for `name:/path[:mode]` entries."""
    mounts = {}
    for entry in service.get("volumes") or []:
        assert isinstance(entry, str), f"use the short volume syntax: {entry!r}"
        source, target, *_ = entry.split(":")
        mounts[target] = source
    return mounts


def _volume_for(service: dict[str, Any], path: str) -> str | None:
    """The named volume that holds `path` in the container (the deepest mount above it)."""
    best: tuple[int, str] | None = None
    for target, volume in _mounts(service).items():
        holds = path == target or path.startswith(target.rstrip("/") + "/")
        if holds and (best is None or len(target) > best[0]):
            best = (len(target), volume)
    return best[1] if best else None


# --- docker-compose.yml ----------------------------------------------------------------------


def test_expected_services_exist() -> None:
    assert set(_services()) >= EXPECTED_SERVICES


def test_compose_file_follows_the_compose_specification() -> None:
    """The file as written (anchors merged by YAML) and as compose reads it after interpolation
    is valid Compose, and names every registered service."""
    assert {s.name for s in registry.SERVICES} <= EXPECTED_SERVICES
    document = _compose()
    assert _schema_errors(document) == []
    assert _schema_errors(_interpolated(document)) == []


@pytest.mark.parametrize("path, value", [
    (("services", "auth", "restart"), False),  # `restart: no` unquoted is a YAML boolean
    (("services", "auth", "helthcheck"), {}),  # an unknown key
    (("services", "redis", "command"), ["redis-server", "--appendonly", True]),
    (("services", "auth", "depends_on", "mongo"), {"condition": "service_healthy_"}),
    (("services", "auth", "stop_grace_period"), 15),  # a duration is a string: "15s"
    (("volume",), {}),  # a top-level key the specification does not have
])
def test_the_schema_refuses_what_compose_refuses(path: tuple[str, ...], value: Any) -> None:
    """The validation has teeth: each of these breaks the file for `docker compose`."""
    document = copy.deepcopy(_compose())
    node = document
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    assert _schema_errors(document)


@pytest.mark.parametrize("name", sorted(EXPECTED_SERVICES))
def test_the_schema_requires_every_service(name: str) -> None:
    document = copy.deepcopy(_compose())
    del document["services"][name]
    assert any(f"'{name}' is a required property" in e for e in _schema_errors(document))


def test_compose_follows_the_registry() -> None:
    """Each registered service has its block, on its registry port, started after what the
    registry says it needs; the gateway waits for all of them."""
    services = _services()
    for spec in registry.SERVICES:
        assert spec.name in services, f"docker-compose.yml has no block for {spec.name}"
        block = services[spec.name]
        assert _port(_env(block)["GRPC_LISTEN"]) == spec.port, spec.name
        assert _env(block)[spec.addr_setting] == f"{spec.name}:{spec.port}", spec.name
        after = {n for n, c in block.get("depends_on", {}).items()
                 if c == {"condition": "service_healthy"}}
        assert set(spec.after) <= after, f"{spec.name} must depend on {spec.after}"
    gateway_waits_for = set(services["envoy"]["depends_on"])
    assert {s.name for s in registry.SERVICES} <= gateway_waits_for


def test_every_registered_service_address_is_documented() -> None:
    readme = (ROOT / "README.md").read_text()
    for spec in registry.SERVICES:
        assert f"`{spec.addr_setting}`" in readme, f"README's settings lack {spec.addr_setting}"


def test_values_are_strings_not_yaml_booleans_or_numbers() -> None:
    # `yes`/`no`/`on` unquoted are booleans to YAML: redis' `--appendonly yes`, `restart: no`.
    for name, service in _services().items():
        _argv(service.get("command"))
        assert isinstance(service.get("restart", "no"), str), name
        for key, value in (service.get("environment") or {}).items():
            assert isinstance(value, str), f"{name}: {key} should be a quoted string"


def test_every_long_running_service_has_a_healthcheck() -> None:
    services = _services()
    long_running = _long_running(services)
    assert set(long_running) >= EXPECTED_SERVICES - {"envoy-config"}
    for name, service in long_running.items():
        assert service["restart"] == "unless-stopped", name
        check = service.get("healthcheck") or {}
        assert not check.get("disable"), name
        assert _argv(check.get("test"))[0] in ("CMD", "CMD-SHELL"), name


def test_one_shot_config_service_is_not_restarted() -> None:
    assert _services()["envoy-config"]["restart"] == "no"


def test_our_services_run_the_one_image() -> None:
    services = _services()
    ours = {n: s for n, s in services.items() if "build" in s}
    assert set(ours) == {*GRPC_SERVICES, "worker", "envoy-config"}
    assert len({(str(s["build"]), s.get("image")) for s in ours.values()}) == 1
    for name in (*GRPC_SERVICES, "worker"):
        assert _modules_started(_command_text(services[name])) == [f"services.{name}"]


def test_commands_and_healthchecks_reference_modules_that_exist() -> None:
    for name, service in _services().items():
        for text in (_command_text(service), _healthcheck_text(service)):
            for module in _modules_started(text):
                assert _module_files(module), f"{name}: no module {module} for python -m"
            for app in re.findall(r"celery -A ([\w.]+)", text):
                assert ROOT.joinpath(*app.split(".")).with_suffix(".py").is_file(), name


def test_environment_names_are_ones_the_code_reads() -> None:
    settings_names = _settings_names()
    # The extraction itself works (it would otherwise let everything through as "unknown").
    assert {"MONGO_URI", "REDIS_URL", "GRPC_LISTEN", "SERVICE_KEY"} <= settings_names
    for name, service in _services().items():
        if "build" not in service:
            continue  # third-party images (mongo, redis, envoy) have their own settings
        modules = _modules_started(_command_text(service))
        read = set(settings_names)
        for module in modules:
            for path in _module_files(module):
                read |= _env_names_read(path)
        unknown = set(_env(service)) - read
        assert not unknown, f"{name} sets variables no code reads: {sorted(unknown)}"


def test_addresses_match_listen_ports() -> None:
    services = _services()
    listen = {}
    for name in GRPC_SERVICES:
        host, _, port = _env(services[name])["GRPC_LISTEN"].rpartition(":")
        assert host == "0.0.0.0", f"{name} must listen beyond its own loopback"
        listen[name] = int(port)
    assert len(set(listen.values())) == len(listen)
    for name, service in services.items():
        env = _env(service)
        for target in GRPC_SERVICES:
            key = f"{target.upper()}_ADDR"
            if key in env:
                host, _, port = env[key].rpartition(":")
                assert host == target and host in services, f"{name}: {key}={env[key]}"
                assert int(port) == listen[target], f"{name}: {key}={env[key]}"


def test_shared_settings_are_the_same_everywhere() -> None:
    services = _services()
    envs = [_env(services[n]) for n in (*GRPC_SERVICES, "worker", "envoy-config")]
    for key in ("MONGO_URI", "REDIS_URL", "SERVICE_KEY", "JWT_ISSUER", "JWT_AUDIENCE",
                "MAX_UPLOAD_BYTES", "JOB_VISIBILITY_TIMEOUT_SECONDS",
                *(f"{s.upper()}_ADDR" for s in GRPC_SERVICES)):
        values = {env.get(key) for env in envs}
        assert len(values) == 1 and None not in values, f"{key} differs: {values}"
    env = envs[0]
    assert env["MONGO_URI"].startswith("mongodb://mongo:")
    assert env["REDIS_URL"].startswith("redis://redis:")


def test_no_key_depends_on_a_shared_disk() -> None:
    services = _services()
    for name in (*GRPC_SERVICES, "worker"):
        # The key-file fallback would give each container its own service key.
        assert _env(services[name]).get("SERVICE_KEY"), name
    auth = services["auth"]
    data_dir = _env(auth)["MARQUEE_DATA_DIR"]
    assert _volume_for(auth, f"{data_dir}/keys/jwt-private.pem"), "auth's signing key is lost"
    upload = services["upload"]
    assert _volume_for(upload, _env(upload)["UPLOAD_DIR"]), "uploads are lost on restart"
    volumes = set(_compose().get("volumes") or {})
    for name, service in services.items():
        for volume in _mounts(service).values():
            assert volume in volumes, f"{name}: volume {volume} is not declared"


def test_compose_refuses_to_start_without_a_service_key() -> None:
    """No well-known fallback key: with SERVICE_KEY unset or empty compose stops, saying how to
    make one."""
    raw = _compose()["x-common-env"]["SERVICE_KEY"]
    for unset in ({}, {"SERVICE_KEY": ""}):
        with pytest.raises(MissingVariable, match=r"at least 32 bytes.*openssl rand"):
            _interpolate(raw, unset)
    assert _interpolate(raw) == OPERATOR_ENV["SERVICE_KEY"]


@pytest.mark.parametrize("text, env, expected", [
    ("${A:-x}", {}, "x"), ("${A:-x}", {"A": ""}, "x"), ("${A-x}", {"A": ""}, ""),
    ("${A:-x}", {"A": "y"}, "y"), ("${A}", {"A": "y"}, "y"), ("${A?no}", {"A": ""}, ""),
    ("$${A}-$$(cat x)", {"A": "y"}, "${A}-$(cat x)"),
])
def test_the_interpolation_helper_follows_compose(text: str, env: dict[str, str],
                                                   expected: str) -> None:
    assert _interpolate(text, env) == expected


def test_grpc_healthcheck_asks_its_own_port() -> None:
    services = _services()
    for name in GRPC_SERVICES:
        check = _healthcheck_text(services[name])
        port = _port(_env(services[name])["GRPC_LISTEN"])
        assert "GRPC_LISTEN" in check or f"127.0.0.1:{port}" in check, name


@pytest.mark.parametrize("status, code", [
    (health_pb2.HealthCheckResponse.SERVING, 0),
    (health_pb2.HealthCheckResponse.NOT_SERVING, 1),
])
def test_grpc_healthcheck_command_works(status: int, code: int) -> None:
    """Runs the gRPC services' healthcheck against a health server on loopback."""
    argv = _argv(_services()["auth"]["healthcheck"]["test"])
    assert argv[:3] == ["CMD", "python", "-c"]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    servicer.set("", status)  # type: ignore[arg-type]
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        env = {**os.environ, "GRPC_LISTEN": f"0.0.0.0:{port}"}
        done = subprocess.run([sys.executable, "-c", argv[3]], env=env, capture_output=True,
                              timeout=30)
    finally:
        server.stop(None)
    assert done.returncode == code, done.stderr.decode()


def test_worker_healthcheck_pings_the_workers_own_node_name() -> None:
    worker = _services()["worker"]
    check = _healthcheck_text(worker)
    # %h is socket.gethostname(), i.e. the kernel's hostname.
    match = re.search(r"inspect ping .*--destination (\S+)@\$\$\(cat /proc/sys/kernel/hostname\)",
                      check)
    assert match, check
    tree = ast.parse((ROOT / "services" / "common" / "settings.py").read_text())
    defaults = [n.args[1].value for n in ast.walk(tree)
                if isinstance(n, ast.Call) and len(n.args) == 2
                and isinstance(n.args[0], ast.Constant) and n.args[0].value == "WORKER_NAME"
                and isinstance(n.args[1], ast.Constant)]
    assert defaults == [f"{match.group(1)}@%h"]
    assert "WORKER_NAME" not in _env(worker)


def test_gateway_config_hand_off() -> None:
    services = _services()
    envoy, config = services["envoy"], services["envoy-config"]
    assert envoy["depends_on"]["envoy-config"]["condition"] == "service_completed_successfully"
    for name in GRPC_SERVICES:
        assert envoy["depends_on"][name]["condition"] == "service_healthy"
    env = _env(config)
    descriptor = env["DESCRIPTOR_SET"]
    shared = str(Path(descriptor).parent)
    command = _command_text(config)
    assert f"cp /app/build/gen/marquee.pb {descriptor}" in command
    # Envoy reads the documentation's files beside the descriptor set (gateway/docs_site.py).
    copied = re.search(r"cp -r ((?:/app/build/gen/\S+ )+)(\S+)", command)
    assert copied and copied.group(2).rstrip("/") == shared
    assert {f.file.split("/")[0] for f in docs_site.FILES} == \
        {Path(p).name for p in copied.group(1).split()}
    rendered = re.findall(r"python -m gateway.render (\S+)", command)
    assert len(rendered) == 1 and str(Path(rendered[0]).parent) == shared
    argv = _argv(envoy["command"])
    assert argv[argv.index("-c") + 1] == rendered[0]
    assert "--disable-hot-restart" in argv
    # The same volume at the same path: render writes absolute paths into the config.
    assert _mounts(config)[shared] == _mounts(envoy)[shared]
    assert envoy["volumes"] == [f"{_mounts(envoy)[shared]}:{shared}:ro"]
    assert env["GATEWAY_HOST"] == "0.0.0.0"
    assert envoy["ports"] == [f"{env['GATEWAY_PORT']}:{env['GATEWAY_PORT']}"]


def test_rendered_envoy_config_matches_the_network(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """gateway.render with envoy-config's environment: listener, admin, clusters, descriptor."""
    from gateway.render import render
    from services.common.settings import Settings

    services = _services()
    env = _env(services["envoy-config"])
    monkeypatch.chdir(tmp_path)  # no .env from the working tree
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    config = yaml.safe_load(render(Settings.from_env()))

    admin = config["admin"]["address"]["socket_address"]
    assert admin["port_value"] == int(env["GATEWAY_ADMIN_PORT"])
    check = _healthcheck_text(services["envoy"])
    assert f"/dev/tcp/{admin['address']}/{admin['port_value']}" in check
    assert "GET /ready HTTP/1.1" in check  # Envoy's admin answers HTTP/1.0 with 426

    (listener,) = config["static_resources"]["listeners"]
    assert listener["address"]["socket_address"] == {
        "address": "0.0.0.0", "port_value": int(env["GATEWAY_PORT"])}

    clusters = {c["name"]: c for c in config["static_resources"]["clusters"]}
    for name in GRPC_SERVICES:
        (address,) = [n["socket_address"] for n in walk(clusters[name])
                      if isinstance(n, dict) and "socket_address" in n]
        assert address["address"] == name and name in services
        assert address["port_value"] == _port(_env(services[name])["GRPC_LISTEN"])

    descriptors = [n["proto_descriptor"] for n in walk(config)
                   if isinstance(n, dict) and "proto_descriptor" in n]
    assert descriptors == [env["DESCRIPTOR_SET"]]


# --- Dockerfile ------------------------------------------------------------------------------


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    lines = [ln for ln in text.splitlines() if not ln.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    result = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, rest = line.strip().partition(" ")
            result.append((keyword.upper(), " ".join(rest.split())))
    return result


def _stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for keyword, rest in _instructions(DOCKERFILE.read_text()):
        if keyword == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((keyword, rest))
    return stages


def _arg_defaults() -> dict[str, str]:
    defaults = {}
    for keyword, rest in _instructions(DOCKERFILE.read_text()):
        if keyword == "FROM":
            break
        if keyword == "ARG" and "=" in rest:
            key, _, value = rest.partition("=")
            defaults[key] = value
    return defaults


def test_one_protoc_invocation_shared_by_the_makefile_and_the_dockerfile() -> None:
    """protos/generate.sh is the only place protoc runs; both builds call it."""
    stages = _stages()
    runs = [(i, rest) for i, stage in enumerate(stages) for kw, rest in stage
            if kw == "RUN" and "generate.sh" in rest]
    assert len(runs) == 1
    index, command = runs[0]
    assert command == "sh protos/generate.sh build/gen"
    workdirs = [rest for kw, rest in stages[index] if kw == "WORKDIR"]
    assert workdirs and workdirs[-1] == "/app"  # build/gen is /app/build/gen
    assert any(kw == "COPY" and rest.split()[0] == "protos" for kw, rest in stages[index])
    assert any(kw == "RUN" and "grpcio-tools" in rest for kw, rest in stages[index])
    makefile = (ROOT / "Makefile").read_text()
    assert "sh protos/generate.sh $(GEN)" in makefile
    for text in (makefile, DOCKERFILE.read_text()):
        assert "grpc_tools.protoc" not in text


def test_dockerfile_final_stage() -> None:
    stages = _stages()
    final = stages[-1]
    base = final[0][1].split()[0]
    for key, value in _arg_defaults().items():
        base = base.replace(f"${{{key}}}", value)
    assert base == "python:3.11-slim"
    text = "\n".join(f"{kw} {rest}" for kw, rest in final)
    assert "grpcio-tools" not in text and "grpc_tools" not in text
    envs: dict[str, str] = {}
    for kw, rest in final:
        if kw == "ENV":
            envs.update(t.split("=", 1) for t in shlex.split(rest) if "=" in t)  # type: ignore[misc]
    assert envs["PYTHONPATH"] == "/app/build/gen:/app"
    assert re.search(r"^COPY --from=\S+ /app/build/gen /app/build/gen$", text, re.M)
    users = [rest for kw, rest in final if kw == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    everything = DOCKERFILE.read_text()
    assert re.search(r"pip install \.(\s|$)", everything)
    assert "[dev]" not in everything


def test_dockerignore_keeps_local_state_out() -> None:
    entries = {ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines()
               if ln.strip() and not ln.startswith("#")}
    assert {".git", ".venv", "build", ".marquee", ".env"} <= entries
