"""Messages as plain JSON values for `--json`: the proto field names, numbers as numbers
(protobuf's JSON mapping writes int64 as strings, which scripts then have to convert), unset
optional fields as null, timestamps as RFC 3339 strings."""

from __future__ import annotations

from typing import Any

from google.protobuf.message import Message

_TIMESTAMP = "google.protobuf.Timestamp"


def _value(field: Any, value: Any) -> Any:
    if field.message_type is None:
        return value
    if field.message_type.full_name == _TIMESTAMP:
        return value.ToJsonString() if value.seconds or value.nanos else None
    return to_plain(value)


def to_plain(message: Message) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for field in message.DESCRIPTOR.fields:
        value = getattr(message, field.name)
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            value_field = field.message_type.fields_by_name["value"]
            out[field.name] = {k: _value(value_field, v) for k, v in value.items()}
        elif field.is_repeated:
            out[field.name] = [_value(field, v) for v in value]
        elif field.has_presence and not message.HasField(field.name):
            out[field.name] = None
        else:
            out[field.name] = _value(field, value)
    return out
