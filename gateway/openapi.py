"""The OpenAPI 3 document of Marquee's REST routes, generated from the descriptor set that Envoy
transcodes with: `python -m gateway.openapi OUT` reads OUT/marquee.pb and writes
OUT/openapi.json beside the Swagger UI files (gateway.docs_site). protos/generate.sh runs it, so
the document is never written by hand and follows every change of the protos.

It describes what the gateway really does, not what a generic tool would guess:
- the routes of the services the transcoder serves (services.common.registry), each HttpRule
  and its additional bindings, with path parameters, the other fields as query parameters
  (nested ones as dotted names) or the body (`*` or one field), and `response_body`;
- bodies in the proto3 JSON mapping as the transcoder prints them (its print_options are read
  from gateway/envoy.yaml.tmpl: proto field names, int64 as strings, enums by name, Timestamps
  as RFC 3339, wrappers as nullable values), server streams as newline-delimited JSON;
- what the descriptors cannot say from the methods' `marquee.openapi.v1` options: statuses other
  than 200 (the `x-http-code` a service sets), the real shape of google.api.HttpBody bodies;
- what the services require of a request: the fields marked `(google.api.field_behavior) =
  REQUIRED` (`required` in a body's schema, `required: true` on a query parameter), the fields
  of a shared message that one request requires of its body and the numeric bounds the
  services enforce (the fields' `marquee.openapi.v1.field` option: `required`, `minimum`,
  `maximum`);
- the error bodies: the services' `{"code", "message", "details"}` and the gateway's own
  `{"message", "status"}` (local_reply_config);
- the bearer scheme, with `security: []` on the methods declared ACCESS_PUBLIC; internal methods
  have no REST route and are left out.
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any

from google.api import annotations_pb2, field_behavior_pb2, http_pb2
from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor

from services.common.rest import NDJSON

DESCRIPTOR_SET = "marquee.pb"
DOCUMENT = "openapi.json"
TEMPLATE = Path(__file__).with_name("envoy.yaml.tmpl")
HTTP_BODY = "google.api.HttpBody"
ERROR_SCHEMA = "Error"
# A query parameter's nested fields are named down to this depth (a.b.c), as a person would.
MAX_QUERY_DEPTH = 3

# What every route may answer besides its success, with the error body. The gateway answers
# some itself (a bad token, a query parameter it does not know, a body over its limit, the rate
# limit, an unknown path) and turns the services' gRPC codes into the others.
ERRORS: dict[int, str] = {
    400: "Invalid request: a value the service refuses (INVALID_ARGUMENT, "
         "FAILED_PRECONDITION), or a query parameter or value the gateway cannot transcode.",
    401: "No valid token (the gateway or the service), or wrong credentials.",
    403: "Not allowed: the token lacks the admin role, another user's resource, "
         "a disabled account.",
    404: "No such resource, or no such route.",
    409: "Already exists (ALREADY_EXISTS).",
    410: "Gone: the file or result was deleted after its retention period.",
    413: "The request body is over the gateway's limit, or an upload over the size limit or "
         "the storage quota.",
    431: "The request's headers, the query string among them, are over 16 KiB.",
    429: "Too many requests: the gateway's rate limit or a service's quota "
         "(RESOURCE_EXHAUSTED). Retry-After says when to come back.",
    503: "A service or its database is unavailable for the moment (UNAVAILABLE).",
}

_INT32 = {"type": "integer", "format": "int32", "minimum": -(2**31), "maximum": 2**31 - 1}
_UINT32 = {"type": "integer", "format": "int32", "minimum": 0, "maximum": 2**32 - 1}
# The JSON mapping writes 64-bit integers as strings (a JavaScript number cannot hold them).
_INT64 = {"type": "string", "format": "int64", "pattern": "^-?[0-9]+$"}
_UINT64 = {"type": "string", "format": "int64", "pattern": "^[0-9]+$"}
_SCALARS: dict[int, dict[str, Any]] = {
    FieldDescriptor.TYPE_DOUBLE: {"type": "number", "format": "double"},
    FieldDescriptor.TYPE_FLOAT: {"type": "number", "format": "float"},
    FieldDescriptor.TYPE_INT32: _INT32,
    FieldDescriptor.TYPE_SINT32: _INT32,
    FieldDescriptor.TYPE_SFIXED32: _INT32,
    FieldDescriptor.TYPE_UINT32: _UINT32,
    FieldDescriptor.TYPE_FIXED32: _UINT32,
    FieldDescriptor.TYPE_INT64: _INT64,
    FieldDescriptor.TYPE_SINT64: _INT64,
    FieldDescriptor.TYPE_SFIXED64: _INT64,
    FieldDescriptor.TYPE_UINT64: _UINT64,
    FieldDescriptor.TYPE_FIXED64: _UINT64,
    FieldDescriptor.TYPE_BOOL: {"type": "boolean"},
    FieldDescriptor.TYPE_STRING: {"type": "string"},
    FieldDescriptor.TYPE_BYTES: {"type": "string", "format": "byte"},
}
_WRAPPED = {"DoubleValue": FieldDescriptor.TYPE_DOUBLE, "FloatValue": FieldDescriptor.TYPE_FLOAT,
            "Int64Value": FieldDescriptor.TYPE_INT64, "UInt64Value": FieldDescriptor.TYPE_UINT64,
            "Int32Value": FieldDescriptor.TYPE_INT32, "UInt32Value": FieldDescriptor.TYPE_UINT32,
            "BoolValue": FieldDescriptor.TYPE_BOOL, "StringValue": FieldDescriptor.TYPE_STRING,
            "BytesValue": FieldDescriptor.TYPE_BYTES}
# The well-known types have JSON forms of their own.
_WELL_KNOWN: dict[str, dict[str, Any]] = {
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    "google.protobuf.Duration": {"type": "string", "pattern": r"^-?[0-9]+(\.[0-9]{1,9})?s$"},
    "google.protobuf.FieldMask": {"type": "string"},
    "google.protobuf.Empty": {"type": "object"},
    "google.protobuf.Struct": {"type": "object", "additionalProperties": True},
    "google.protobuf.Value": {},
    "google.protobuf.ListValue": {"type": "array", "items": {}},
    "google.protobuf.Any": {"type": "object", "required": ["@type"],
                            "properties": {"@type": {"type": "string"}},
                            "additionalProperties": True},
    # A null stands for the unset value.
    **{f"google.protobuf.{name}": {**_SCALARS[kind], "nullable": True}
       for name, kind in _WRAPPED.items()},
}


@dataclass(frozen=True)
class PrintOptions:
    """The transcoder's print_options in gateway/envoy.yaml.tmpl that shape its JSON."""
    preserve_proto_field_names: bool
    stream_newline_delimited: bool

    @classmethod
    def from_template(cls, template: str) -> PrintOptions:
        def flag(name: str) -> bool:
            found = re.search(rf"^\s*{name}:\s*(true|false)\s*$", template, re.MULTILINE)
            return bool(found) and found.group(1) == "true"  # type: ignore[union-attr]

        return cls(flag("preserve_proto_field_names"), flag("stream_newline_delimited"))


def _source_paths(file: descriptor_pb2.FileDescriptorProto) -> dict[tuple[int, ...], str]:
    """The full name of each message, field, service and method of the file by its path in
    the source info (4 = message_type, 2 = field, 3 = nested_type, 6 = service, 2 = method)."""
    names: dict[tuple[int, ...], str] = {}
    pkg = f"{file.package}." if file.package else ""
    pending: list[tuple[str, tuple[int, ...], list[descriptor_pb2.DescriptorProto]]] = [
        (pkg, (4,), list(file.message_type))]
    while pending:
        prefix, path, types = pending.pop()
        for i, message in enumerate(types):
            full = prefix + message.name
            names[(*path, i)] = full
            for j, field in enumerate(message.field):
                names[(*path, i, 2, j)] = f"{full}.{field.name}"
            pending.append((f"{full}.", (*path, i, 3), list(message.nested_type)))
    for i, service in enumerate(file.service):
        names[(6, i)] = pkg + service.name
        for j, method in enumerate(service.method):
            names[(6, i, 2, j)] = f"{pkg}{service.name}.{method.name}"
    return names


def _comments(files: Iterable[descriptor_pb2.FileDescriptorProto]) -> dict[str, str]:
    """Each element's leading comment by full name (`pkg.Message.field`, `pkg.Service.Method`),
    from the source info that protoc keeps with --include_source_info."""
    out: dict[str, str] = {}
    for file in files:
        names = _source_paths(file)
        for location in file.source_code_info.location:
            name = names.get(tuple(location.path))
            if name and location.leading_comments.strip():
                lines = location.leading_comments.strip("\n").splitlines()
                out[name] = "\n".join(line[1:] if line.startswith(" ") else line
                                      for line in lines).strip()
    return out


def _summary(comment: str) -> str:
    """The comment's first sentence, on one line."""
    text = " ".join(comment.split())
    end = text.find(". ")
    return text if end < 0 else text[:end + 1]


class _Schemas:
    """The schemas of messages in the proto3 JSON mapping; each message the document refers to
    is kept once among the components, under its full name."""

    def __init__(self, pool: descriptor_pool.DescriptorPool, comments: dict[str, str],
                 options: PrintOptions) -> None:
        from marquee.openapi.v1 import openapi_pb2  # registers the field option

        self.field_option = openapi_pb2.field
        self.pool = pool
        self.comments = comments
        self.options = options
        self.components: dict[str, Any] = {}

    def name(self, field: FieldDescriptor) -> str:
        return field.name if self.options.preserve_proto_field_names else field.json_name

    def ref(self, message: Descriptor) -> dict[str, Any]:
        if message.full_name in _WELL_KNOWN:
            return dict(_WELL_KNOWN[message.full_name])
        if message.full_name not in self.components:
            self.components[message.full_name] = {}  # placeholder: a message may nest itself
            self.components[message.full_name] = self.object(message)
        return {"$ref": f"#/components/schemas/{message.full_name}"}

    def object(self, message: Descriptor, leave_out: Iterable[str] = (),
               required: Iterable[str] = ()) -> dict[str, Any]:
        """The message's schema, less the fields `leave_out` names; its required fields are
        those marked REQUIRED and those `required` names (proto names)."""
        fields = [f for f in message.fields if f.name not in set(leave_out)]
        schema: dict[str, Any] = {"type": "object", "properties": {
            self.name(f): self.field(f) for f in fields}}
        if needed := [self.name(f) for f in fields
                      if is_required(f) or f.name in set(required)]:
            schema["required"] = needed
        if comment := self.comments.get(message.full_name):
            schema["description"] = comment
        return schema

    def body(self, field: FieldDescriptor) -> dict[str, Any]:
        """The schema of a request field sent as the whole body (`body: "rating"`): with the
        fields of its message that this request requires, when its option names any."""
        required = list(field.GetOptions().Extensions[self.field_option].required)
        if not required or field.message_type is None:
            return self.field(field)
        names = {f.name for f in field.message_type.fields}
        if unknown := set(required) - names:
            raise ValueError(f"{field.full_name} requires fields its message lacks: {unknown}")
        schema = self.object(field.message_type, required=required)
        if comment := self.comments.get(field.full_name):
            schema["description"] = comment  # the body's own, as self.field would give it
        return schema

    def bounded(self, field: FieldDescriptor, schema: dict[str, Any]) -> dict[str, Any]:
        """The schema of a number with the bounds the field's option declares."""
        bounds = field.GetOptions().Extensions[self.field_option]
        if not (bounds.HasField("minimum") or bounds.HasField("maximum")):
            return schema
        if schema.get("type") not in ("integer", "number"):
            raise ValueError(f"{field.full_name}: bounds on a field that is not a JSON number")
        for name in ("minimum", "maximum"):
            if bounds.HasField(name):
                schema[name] = getattr(bounds, name)
        if schema.get("minimum", -math.inf) > schema.get("maximum", math.inf):
            raise ValueError(f"{field.full_name}: minimum above maximum")
        return schema

    def value(self, field: FieldDescriptor) -> dict[str, Any]:
        """One value of the field (an element, if it is repeated)."""
        if field.type == FieldDescriptor.TYPE_ENUM:
            return {"type": "string", "enum": [v.name for v in field.enum_type.values]}
        if field.type in (FieldDescriptor.TYPE_MESSAGE, FieldDescriptor.TYPE_GROUP):
            return self.ref(field.message_type)
        return dict(_SCALARS[field.type])

    def field(self, field: FieldDescriptor) -> dict[str, Any]:
        entry = field.message_type
        schema: dict[str, Any]
        if entry is not None and entry.GetOptions().map_entry:
            schema = {"type": "object",
                      "additionalProperties": self.value(entry.fields_by_name["value"])}
        elif field.is_repeated:
            schema = {"type": "array", "items": self.bounded(field, self.value(field))}
        else:
            schema = self.bounded(field, self.value(field))
        if comment := self.comments.get(field.full_name):
            # OpenAPI 3.0 ignores the siblings of a $ref: wrap it to keep the description.
            schema = {"allOf": [schema]} if "$ref" in schema else schema
            schema["description"] = comment
        return schema


def is_required(field: FieldDescriptor) -> bool:
    """Whether the field is marked `(google.api.field_behavior) = REQUIRED`."""
    behavior = field.GetOptions().Extensions[field_behavior_pb2.field_behavior]
    return field_behavior_pb2.REQUIRED in behavior


def _field_at(message: Descriptor, dotted: str) -> FieldDescriptor:
    *parents, last = dotted.split(".")
    for name in parents:
        message = message.fields_by_name[name].message_type
    return message.fields_by_name[last]


def http_bindings(rule: http_pb2.HttpRule) -> Iterator[tuple[str, str, http_pb2.HttpRule]]:
    """(verb, path template, rule) for the rule and its additional bindings."""
    for binding in (rule, *rule.additional_bindings):
        pattern = binding.WhichOneof("pattern")
        if pattern == "custom":
            yield binding.custom.kind.lower(), binding.custom.path, binding
        elif pattern is not None:
            yield pattern, getattr(binding, pattern), binding


_VARIABLE = re.compile(r"\{([^}=]+)(?:=[^}]*)?\}")


def openapi_path(template: str) -> tuple[str, list[str]]:
    """An HttpRule path template as an OpenAPI path, and its variables (dotted field paths):
    `/v1/{name=shelves/*}` -> `/v1/{name}`."""
    return _VARIABLE.sub(lambda m: "{" + m.group(1) + "}", template), \
        _VARIABLE.findall(template)


class _Document:
    def __init__(self, files: descriptor_pb2.FileDescriptorSet, options: PrintOptions) -> None:
        # Imported for their side effect: the options' extensions become readable.
        from marquee.access.v1 import access_pb2
        from marquee.openapi.v1 import openapi_pb2

        self.access_option = access_pb2.access
        self.public = access_pb2.ACCESS_PUBLIC
        self.admin = access_pb2.ACCESS_ADMIN
        self.response_option = openapi_pb2.response
        self.request_body_option = openapi_pb2.request_body
        self.pool = descriptor_pool.DescriptorPool()
        for file in files.file:
            self.pool.Add(file)
        self.comments = _comments(files.file)
        self.options = options
        self.schemas = _Schemas(self.pool, self.comments, options)

    def query_parameters(self, message: Descriptor, bound: set[str], prefix: str = "",
                         depth: int = 1) -> Iterator[dict[str, Any]]:
        """The fields that neither the path nor the body carry: query parameters, with the
        fields of a nested message as dotted names (the transcoder's convention)."""
        for field in message.fields:
            path = prefix + field.name
            name = prefix + self.schemas.name(field)
            if path in bound:
                continue
            entry = field.message_type
            if entry is not None and entry.GetOptions().map_entry:
                continue  # the transcoder reads no maps from a query string
            if (entry is not None and entry.full_name not in _WELL_KNOWN
                    and not field.is_repeated):
                if depth < MAX_QUERY_DEPTH:
                    yield from self.query_parameters(entry, bound, f"{path}.", depth + 1)
                continue
            parameter: dict[str, Any] = {"name": name, "in": "query",
                                         "schema": self.schemas.field(field)}
            if description := parameter["schema"].pop("description", None):
                parameter["description"] = description
            if is_required(field) and not prefix:
                parameter["required"] = True
            if field.is_repeated:
                parameter.update(style="form", explode=True)  # ?genre=a&genre=b
            yield parameter

    def request_body(self, method: MethodDescriptor, rule: http_pb2.HttpRule,
                     in_path: list[str]) -> dict[str, Any] | None:
        request = method.input_type
        if not rule.body:
            return None
        if request.full_name == HTTP_BODY:
            declared = method.GetOptions().Extensions[self.request_body_option]
            if not declared.content_type:
                return {"required": True, "content": {
                    "*/*": {"schema": {"type": "string", "format": "binary"}}}}
            form = self.pool.FindMessageTypeByName(declared.message)
            schema = self.schemas.object(form)
            for prop, field in zip(schema["properties"].values(), form.fields, strict=True):
                if field.type == FieldDescriptor.TYPE_BYTES:
                    prop.update(format="binary")  # a file, not base64 text
            return {"required": True, "content": {declared.content_type: {"schema": schema}}}
        if rule.body == "*":
            schema = (self.schemas.object(request, leave_out=in_path) if in_path
                      else self.schemas.ref(request))
        else:
            schema = self.schemas.body(_field_at(request, rule.body))
        return {"required": True, "content": {"application/json": {"schema": schema}}}

    def responses(self, method: MethodDescriptor, rule: http_pb2.HttpRule) -> dict[str, Any]:
        output = method.output_type
        if rule.response_body:
            natural = self.schemas.field(_field_at(output, rule.response_body))
        elif output.full_name == HTTP_BODY:
            natural = {"type": "string", "format": "binary"}
        else:
            natural = self.schemas.ref(output)
        stream_note, json_type = "", "application/json"
        if method.server_streaming and output.full_name != HTTP_BODY:
            stream_note = (" A stream: one JSON object per line (newline-delimited JSON), each "
                           "sent as it is produced." if self.options.stream_newline_delimited
                           else " A stream: a JSON array sent in pieces.")
            if self.options.stream_newline_delimited:  # labelled so by the service (NDJSON)
                json_type = NDJSON
        declared = list(method.GetOptions().Extensions[self.response_option])
        out: dict[str, Any] = {}
        if not declared:
            content_type = "*/*" if output.full_name == HTTP_BODY else json_type
            return {"200": {"description": "OK." + stream_note,
                            "content": {content_type: {"schema": natural}}}}
        for answer in declared:
            status = str(answer.status or 200)
            response = out.setdefault(status, {"description": (
                answer.description or HTTPStatus(int(status)).phrase + ".") + stream_note})
            if answer.empty:
                continue
            if answer.message:
                schema = self.schemas.ref(self.pool.FindMessageTypeByName(answer.message))
                if answer.array:
                    schema = {"type": "array", "items": schema}
            elif output.full_name == HTTP_BODY:
                schema = {"type": "string"}
            else:
                schema = natural
            response.setdefault("content", {})[answer.content_type or json_type] = {
                "schema": schema}
        return out

    def operation(self, method: MethodDescriptor, template: str, rule: http_pb2.HttpRule,
                  operation_id: str) -> dict[str, Any]:
        access = method.GetOptions().Extensions[self.access_option]
        _, variables = openapi_path(template)
        request = method.input_type
        parameters = []
        for variable in variables:
            field = _field_at(request, variable)
            schema = self.schemas.field(field)
            parameter = {"name": variable, "in": "path", "required": True, "schema": schema}
            if description := schema.pop("description", None):
                parameter["description"] = description
            parameters.append(parameter)
        if request.full_name != HTTP_BODY and rule.body != "*":
            bound = {*variables, *([rule.body] if rule.body else [])}
            parameters.extend(self.query_parameters(request, bound))
        comment = self.comments.get(method.full_name, "")
        if access == self.admin:
            comment += "\n\nFor administrators only (a token whose `role` claim is `admin`)."
        operation: dict[str, Any] = {
            "operationId": operation_id,
            "tags": [method.containing_service.name],
            "summary": _summary(comment) or method.name,
            "description": comment.strip(),
            "x-grpc-method": f"/{method.containing_service.full_name}/{method.name}",
        }
        if parameters:
            operation["parameters"] = parameters
        if (body := self.request_body(method, rule, variables)) is not None:
            operation["requestBody"] = body
        operation["responses"] = {
            **self.responses(method, rule),
            **{str(code): {"$ref": f"#/components/responses/{code}"} for code in ERRORS}}
        if access == self.public:
            operation["security"] = []  # no token needed
        return operation

    def build(self, services: Iterable[str]) -> dict[str, Any]:
        paths: dict[str, dict[str, Any]] = {}
        tags = []
        for service_name in services:
            service = self.pool.FindServiceByName(service_name)
            tags.append({"name": service.name,
                         "description": self.comments.get(service.full_name, "")})
            for method in service.methods:
                if not method.GetOptions().HasExtension(annotations_pb2.http):
                    continue  # native gRPC only (internal methods have no REST route)
                rule = method.GetOptions().Extensions[annotations_pb2.http]
                for n, (verb, template, binding) in enumerate(http_bindings(rule)):
                    operation_id = f"{service.name}_{method.name}" + (f"_{n}" if n else "")
                    path, _ = openapi_path(template)
                    paths.setdefault(path, {})[verb] = self.operation(
                        method, template, binding, operation_id)
        return {
            "openapi": "3.0.3",
            "info": {
                "title": "Marquee",
                "version": "v1",
                "description": "Marquee's REST API, served by its Envoy gateway, which "
                               "transcodes it to the services' gRPC methods. Generated from "
                               "the protos (gateway/openapi.py); docs/api.md has the prose.",
            },
            "tags": tags,
            "paths": dict(sorted(paths.items())),
            "security": [{"bearer": []}],
            "components": {
                "securitySchemes": {"bearer": {
                    "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                    "description": "An access token from POST /auth/login or /auth/register "
                                   "(`access_token`)."}},
                "schemas": {**dict(sorted(self.schemas.components.items())),
                            ERROR_SCHEMA: _error_schema()},
                "responses": {str(code): _error_response(code, text)
                              for code, text in ERRORS.items()},
            },
        }


def _error_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "description": "An error. A service's carries the gRPC status `code` and `details` "
                       "(google.rpc.Status); one the gateway answers itself carries the HTTP "
                       "`status` instead.",
        "required": ["message"],
        "properties": {
            "code": {"type": "integer", "description": "The gRPC status code."},
            "message": {"type": "string"},
            "details": {"type": "array", "items": _WELL_KNOWN["google.protobuf.Any"]},
            "status": {"type": "integer", "description": "The HTTP status."},
        },
    }


def _error_response(code: int, text: str) -> dict[str, Any]:
    response: dict[str, Any] = {"description": text, "content": {"application/json": {
        "schema": {"$ref": f"#/components/schemas/{ERROR_SCHEMA}"}}}}
    if code == 429:
        response["headers"] = {"Retry-After": {
            "description": "Seconds to wait before trying again.",
            "schema": {"type": "integer"}}}
    return response


def document(files: descriptor_pb2.FileDescriptorSet, services: Iterable[str],
             options: PrintOptions) -> dict[str, Any]:
    """The OpenAPI document of these proto services' REST routes (full names)."""
    return _Document(files, options).build(services)


def transcoded_services() -> list[str]:
    """The services the gateway transcodes: every service in the registry."""
    from services.common import registry

    return [s.full_name for spec in registry.SERVICES for s in spec.descriptors()]


def main() -> None:
    out = Path(sys.argv[1])
    files = descriptor_pb2.FileDescriptorSet.FromString((out / DESCRIPTOR_SET).read_bytes())
    doc = document(files, transcoded_services(), PrintOptions.from_template(TEMPLATE.read_text()))
    (out / DOCUMENT).write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")

    from gateway import docs_site

    docs_site.write_swagger_ui(out)


if __name__ == "__main__":
    main()
