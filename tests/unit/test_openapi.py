"""The OpenAPI document that gateway.openapi generates (build/gen/openapi.json, served at
/openapi.json): a valid OpenAPI 3 document, with exactly the REST routes that the gateway
transcodes, in the JSON the transcoder and the services really write.

tests/integration/test_openapi.py fetches it through the real gateway.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from google.api import annotations_pb2
from google.protobuf import descriptor_pb2
from openapi_schema_validator import OAS30Validator
from openapi_spec_validator import validate

from gateway.openapi import ERRORS, PrintOptions, document, openapi_path, transcoded_services
from gateway.render import TEMPLATE, render
from services.catalog.records import Movie, Provenance
from services.catalog.server import rest_json
from services.common.access import Access, declared_access, method_path
from services.common.settings import Settings
from services.upload.server import file_json

GENERATED = Path(__file__).resolve().parents[2] / "build" / "gen"
VERBS = ("get", "put", "post", "delete", "patch")


@pytest.fixture(scope="module")
def files() -> descriptor_pb2.FileDescriptorSet:
    return descriptor_pb2.FileDescriptorSet.FromString((GENERATED / "marquee.pb").read_bytes())


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    loaded = json.loads((GENERATED / "openapi.json").read_text())
    assert isinstance(loaded, dict)
    return loaded


def _operations(doc: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(verb, path): op for path, item in doc["paths"].items()
            for verb, op in item.items() if verb in VERBS}


def _schema_validator(doc: dict[str, Any], schema: dict[str, Any]) -> OAS30Validator:
    """Validates JSON against a schema of the document: its $refs (`#/components/...`) resolve
    in the root schema, which carries the document's components beside it."""
    return OAS30Validator({**schema, "components": doc["components"]})


def test_the_document_is_valid_openapi(doc: dict[str, Any]) -> None:
    validate(doc)
    assert doc["openapi"].startswith("3.")


def test_the_generated_file_is_what_the_generator_makes_now(
    doc: dict[str, Any], files: descriptor_pb2.FileDescriptorSet
) -> None:
    """A stale file (protos changed, `make generate` not run) would describe other routes."""
    fresh = document(files, transcoded_services(), PrintOptions.from_template(
        TEMPLATE.read_text()))
    assert json.loads(json.dumps(fresh)) == doc


def test_every_transcoded_route_is_documented_and_nothing_else(
    doc: dict[str, Any], files: descriptor_pb2.FileDescriptorSet,
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The routes are read from the rendered Envoy config (the transcoder's services) and the
    HttpRules in the descriptor set it loads, on their own: a route the gateway serves but the
    document lacks, or one the document invents, fails here."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DESCRIPTOR_SET", str(GENERATED / "marquee.pb"))
    config = yaml.safe_load(render(Settings.from_env()))
    (listener,) = config["static_resources"]["listeners"]
    manager = listener["filter_chains"][0]["filters"][0]["typed_config"]
    (transcoder,) = [f["typed_config"] for f in manager["http_filters"]
                     if f["name"] == "envoy.filters.http.grpc_json_transcoder"]
    served = set(transcoder["services"])
    routes = set()
    for file in files.file:
        for service in file.service:
            if f"{file.package}.{service.name}" not in served:
                continue
            for method in service.method:
                rule = method.options.Extensions[annotations_pb2.http]
                for binding in (rule, *rule.additional_bindings):
                    verb = binding.WhichOneof("pattern")
                    if verb == "custom":
                        routes.add((binding.custom.kind.lower(),
                                    openapi_path(binding.custom.path)[0]))
                    elif verb is not None:
                        routes.add((verb, openapi_path(getattr(binding, verb))[0]))
    assert routes  # the descriptor set was read
    assert set(_operations(doc)) == routes


def test_access_levels_become_security(doc: dict[str, Any]) -> None:
    from services.common import registry

    access = {method_path(m): declared_access(m) for spec in registry.SERVICES
              for s in spec.descriptors() for m in s.methods}
    assert doc["security"] == [{"bearer": []}]
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    for op in _operations(doc).values():
        level = access[op["x-grpc-method"]]
        assert level is not Access.INTERNAL  # the gateway answers 404 to those
        assert (op.get("security") == []) == (level is Access.PUBLIC), op["operationId"]


def test_every_operation_declares_the_errors_with_their_shape(doc: dict[str, Any]) -> None:
    for op in _operations(doc).values():
        assert {str(c) for c in ERRORS} <= set(op["responses"]), op["operationId"]
    error = doc["components"]["schemas"]["Error"]
    check = _schema_validator(doc, error)
    check.validate({"code": 3, "message": "limit must be an integer", "details": []})
    check.validate({"message": "Jwt is missing", "status": 401})


def test_bodies_follow_the_transcoders_json(doc: dict[str, Any]) -> None:
    """Proto field names (preserve_proto_field_names), int64 as strings, Timestamps as RFC
    3339, the bare arrays and the statuses that the services ask the gateway for."""
    task = doc["components"]["schemas"]["marquee.task.v1.Task"]["properties"]
    assert task["bytes_total"]["type"] == "string" and task["bytes_total"]["format"] == "int64"
    assert task["created_at"] == {"type": "string", "format": "date-time"}
    ops = _operations(doc)
    tasks = ops[("get", "/tasks")]["responses"]["200"]["content"]["application/json"]
    assert tasks["schema"] == {"type": "array",
                               "items": {"$ref": "#/components/schemas/marquee.task.v1.Task"}}
    assert "201" in ops[("post", "/auth/register")]["responses"]
    assert "202" in ops[("post", "/files/upload")]["responses"]
    assert "content" not in ops[("delete", "/ratings/{rating_id}")]["responses"]["204"]
    recommendations = ops[("get", "/recommendations")]["responses"]
    assert {"200", "202"} <= set(recommendations)
    upload = ops[("post", "/files/upload")]["requestBody"]["content"]["multipart/form-data"]
    assert upload["schema"]["properties"]["file"]["format"] == "binary"
    params = {p["name"]: p for p in ops[("get", "/movies")]["parameters"]}
    assert params["year"]["in"] == "query" and params["year"]["schema"]["type"] == "integer"


def test_field_names_follow_the_transcoder_setting(files: descriptor_pb2.FileDescriptorSet
                                                   ) -> None:
    camel = document(files, transcoded_services(), PrintOptions(
        preserve_proto_field_names=False, stream_newline_delimited=True))
    task = camel["components"]["schemas"]["marquee.task.v1.Task"]["properties"]
    assert "bytesTotal" in task and "bytes_total" not in task
    assert PrintOptions.from_template(TEMPLATE.read_text()).preserve_proto_field_names


def test_the_movie_documents_match_what_the_catalog_writes(doc: dict[str, Any]) -> None:
    """GET /movies is not the JSON mapping of Movie but the stored document (rest_json): the
    shape MovieDocument declares must hold for what the catalog really sends."""
    ops = _operations(doc)
    schema = ops[("get", "/movies")]["responses"]["200"]["content"]["application/json"]["schema"]
    check = _schema_validator(doc, schema)
    known = Movie(id="603", title="The Matrix", genre=["Action"], original_language="en",
                  release_date=datetime(1999, 3, 30), popularity=80.5, vote_average=8.2,
                  vote_count=24000, extra={"tagline": "Free your mind"}, upvotes=3,
                  provenance=Provenance(imported_by_id="u1", imported_by="alice",
                                        updated_at=datetime(2026, 1, 2), updated_by="alice"))
    unknown = Movie(id="x", title="Nothing known")
    check.validate([rest_json(known), rest_json(unknown)])
    assert rest_json(unknown)["vote_count"] is None  # null: the schema must allow it


def test_the_files_routes_declare_what_they_send(doc: dict[str, Any]) -> None:
    """Schemathesis's first finding: the files and operations routes declared nothing, so the
    document said 200 with any content for a 204, a 202, CSV and the /files documents."""
    ops = _operations(doc)

    def content(verb: str, path: str, status: str) -> dict[str, Any]:
        declared = ops[(verb, path)]["responses"][status]
        assert isinstance(declared, dict)
        return declared.get("content", {})

    files = content("get", "/files", "200")["application/json"]["schema"]
    assert files == {"type": "array",
                     "items": {"$ref": "#/components/schemas/marquee.upload.v1.FileDocument"}}
    one = content("get", "/files/{file_id}", "200")["application/json"]["schema"]
    assert one == files["items"]
    assert set(content("get", "/files/{file_id}/content", "200")) == {"text/csv"}
    assert "content" not in ops[("delete", "/files/{file_id}")]["responses"]["204"]
    assert "200" not in ops[("delete", "/files/{file_id}")]["responses"]
    accepted = content("post", "/files/{file_id}/operations", "202")["application/json"]
    assert accepted["schema"]["$ref"].endswith("marquee.upload.v1.OperationAccepted")
    result = content("get", "/task/{task_id}/result", "200")
    assert set(result) == {"text/csv", "application/json"}
    assert result["application/json"]["schema"]["$ref"].endswith("marquee.task.v1.UniqueValues")
    for op in ops.values():  # no route left that says "anything"
        for answer in op["responses"].values():
            assert "*/*" not in answer.get("content", {}), op["operationId"]


def test_file_documents_match_what_the_upload_service_writes(doc: dict[str, Any]) -> None:
    """The /files items (file_json): the size is a number, the time RFC 3339 to the ms."""
    from services.upload.records import UploadedFile

    schema = doc["components"]["schemas"]["marquee.upload.v1.FileDocument"]
    file = UploadedFile(id="f" * 32, owner="u1", original_name="m.csv", file_path="u1/f",
                        size_bytes=3 << 30, sha256="0" * 64, created_at=datetime(2026, 1, 2),
                        task_id="t" * 32)
    _schema_validator(doc, {"type": "array", "items": schema}).validate([file_json(file)])


def _body_schema(doc: dict[str, Any], op: dict[str, Any]) -> dict[str, Any]:
    (content,) = op["requestBody"]["content"].values()
    schema = content["schema"]
    if "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    assert isinstance(schema, dict)
    return schema


def test_request_fields_the_services_require_are_required(doc: dict[str, Any]) -> None:
    """Schemathesis's positive_data_acceptance / negative_data_rejection: a body without a
    field that the service refuses to go without was valid by the document, and so was
    /recommendations/status without its task_id. `(google.api.field_behavior) = REQUIRED`, and
    the `required` of a shared message's body (Rating), now say so; nothing else is required."""
    ops = _operations(doc)
    bodies = {
        ("post", "/auth/register"): {"username", "password", "email", "name"},
        ("post", "/auth/login"): {"username", "password"},
        ("post", "/auth/refresh"): {"refresh_token"},
        ("post", "/auth/verify"): {"token"},
        ("post", "/auth/logout"): set(),  # refresh_token, or `all` with the bearer token
        ("post", "/ratings"): {"movie_id", "rating_type"},
        ("put", "/ratings/{rating_id}"): {"rating_type"},  # movie_id may be left out
        ("patch", "/ratings/{rating_id}"): {"rating_type"},
        ("post", "/files/upload"): {"file"},
        ("post", "/files/{file_id}/operations"): {"operation"},
        ("post", "/preferences"): set(),
        ("patch", "/admin/users/{user_id}"): set(),
    }
    for route, required in bodies.items():
        schema = _body_schema(doc, ops[route])
        assert set(schema.get("required", [])) == required, route
        assert required <= set(schema["properties"]), route
    # The Rating that the routes answer with requires nothing of its own: only the requests do.
    assert "required" not in doc["components"]["schemas"]["marquee.ratings.v1.Rating"]
    status = {p["name"]: p for p in ops[("get", "/recommendations/status")]["parameters"]}
    assert status["task_id"]["required"] is True
    for route, op in ops.items():  # the optional query parameters stay optional
        for parameter in op.get("parameters", []):
            if parameter["in"] == "query" and route != ("get", "/recommendations/status"):
                assert "required" not in parameter, (route, parameter["name"])
    # A required body is valid with its required fields and invalid without one.
    login = _schema_validator(doc, _body_schema(doc, ops[("post", "/auth/login")]))
    login.validate({"username": "alice", "password": "secret"})
    assert not login.is_valid({"username": "alice"})


def _bounds(doc: dict[str, Any], verb: str, path: str) -> dict[str, tuple[Any, Any]]:
    op = _operations(doc)[(verb, path)]
    return {p["name"]: (p["schema"].get("minimum"), p["schema"].get("maximum"))
            for p in op.get("parameters", [])}


def test_paging_bounds_are_the_services_own(doc: dict[str, Any], monkeypatch: pytest.MonkeyPatch
                                            ) -> None:
    """int32's range was "valid" for page and limit, and the services answered 400 outside
    theirs: the bounds are declared (the field option `minimum`/`maximum`) with the services'
    constants, so that the two cannot drift apart."""
    from services.auth import user_pages
    from services.catalog import service as catalog
    from services.common import page_tokens
    from services.ratings import rating_pages
    from services.recommendations import criteria
    from services.task.service import TaskLimits

    monkeypatch.delenv("TASK_LIST_MAX_LIMIT", raising=False)
    task_max = TaskLimits().list_max
    assert Settings.from_env().task_list_max_limit == task_max  # the setting's default
    assert catalog.MAX_PAGE == page_tokens.MAX_PAGE
    page = (1, page_tokens.MAX_PAGE)
    page_size = (0, 2**31 - 1)  # a larger page_size is read as the largest page (AIP-158)
    lists = {
        ("get", "/movies"): catalog.MAX_LIMIT, ("get", "/v1/movies"): catalog.MAX_LIMIT,
        ("get", "/tasks"): task_max, ("get", "/v1/tasks"): task_max,
        ("get", "/admin/tasks"): task_max,
        ("get", "/files"): task_max, ("get", "/v1/files"): task_max,  # TASK_LIST_MAX_LIMIT too
        ("get", "/ratings"): rating_pages.MAX_LIMIT, ("get", "/v1/ratings"): rating_pages.MAX_LIMIT,
        ("get", "/admin/users"): user_pages.MAX_LIMIT,
    }
    for (verb, path), max_limit in lists.items():
        bounds = _bounds(doc, verb, path)
        assert bounds["page"] == page, path
        assert bounds["limit"] == (1, max_limit), path
        if "page_size" in bounds:
            assert bounds["page_size"] == page_size, path
    assert _bounds(doc, "get", "/movies")["year"] == (1, 9999)
    assert _bounds(doc, "get", "/recommendations")["limit"] == (1, criteria.MAX_LIMIT)
    # Every page, limit and page_size parameter of the document is bounded.
    for verb, path in _operations(doc):
        for name, (low, _) in _bounds(doc, verb, path).items():
            if name in ("page", "limit", "page_size"):
                assert low in (0, 1), (path, name)


@pytest.mark.parametrize("max_limit", [100, 1000])
def test_the_declared_bounds_are_what_the_paging_accepts(doc: dict[str, Any], max_limit: int
                                                         ) -> None:
    """The same numbers, read through the validators themselves: the ends are accepted, one
    past them refused (page_window, which every list but /movies uses, and the catalog's)."""
    from services.catalog.service import validate
    from services.common.errors import InvalidArgument
    from services.common.page_tokens import page_window

    def window(**kwargs: int) -> None:
        page_window(**{"page": None, "limit": None, "page_size": 0, **kwargs},  # type: ignore[arg-type]
                    default_limit=1, max_limit=max_limit)

    def movies(**kwargs: int) -> None:
        validate(**{"page": None, "limit": None, "year": None, **kwargs},  # type: ignore[arg-type]
                 language="", sort_field="", sort_order="", page_token="")

    route = ("get", "/movies") if max_limit == 1000 else ("get", "/tasks")
    bounds = _bounds(doc, *route)
    check = movies if max_limit == 1000 else window
    for name in ("page", "limit", *(("year",) if check is movies else ("page_size",))):
        low, high = bounds[name]
        check(**{name: low})
        check(**{name: high})
        with pytest.raises(InvalidArgument):
            check(**{name: low - 1})
        if name != "page_size":
            with pytest.raises(InvalidArgument):
                check(**{name: high + 1})
