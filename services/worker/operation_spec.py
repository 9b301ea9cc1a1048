"""What an operation on a CSV file may ask (dedupe, unique, filter), checked against the file's
header: the upload service checks a request when it arrives, and the worker resolves the same
names to column positions with the same rules when it runs it.

Every input is bounded before it is looked at: how many columns and conditions, and how long
each name and value may be, so that a request costs what a fair one does."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from marquee.task.v1 import task_pb2
from services.common.errors import InvalidArgument
from services.common.jobs import DEDUPE, FILTER, UNIQUE
from services.common.jobs import OPERATION_KINDS as OPERATIONS
from services.worker.row_steps import VALUELESS_OPS, ResolvedCondition

OPS = ("eq", "ne", "contains", "startswith", "gt", "gte", "lt", "lte", "empty", "not_empty")
MATCHES = ("all", "any")
MAX_CONDITIONS = 32
MAX_NAME_CHARS = 1024
MAX_VALUE_CHARS = 1024
# More key columns than any header may have (CSV_MAX_COLUMNS is 256 by default) is refused
# unread.
MAX_KEY_COLUMNS = 1024


@dataclass(frozen=True)
class Condition:
    column: str
    op: str
    value: str = ""


@dataclass(frozen=True)
class OperationSpec:
    operation: str
    columns: tuple[str, ...] = ()  # dedupe: the key (all columns when empty)
    column: str = ""  # unique
    conditions: tuple[Condition, ...] = ()  # filter
    match: str = ""  # filter: all (the default) or any


@dataclass(frozen=True)
class Plan:
    """An operation checked against a header: column names as positions."""

    operation: str
    key: tuple[int, ...] = ()  # dedupe
    column: int = -1  # unique
    conditions: tuple[ResolvedCondition, ...] = field(default=())
    match_all: bool = True


def _shown(text: str) -> str:
    return repr(text[:100] + ("..." if len(text) > 100 else ""))


def column_index(header: Sequence[str], name: str) -> int:
    """The position of the column `name`: the header's exact name, else the one name that
    equals it once both are trimmed and case-folded. InvalidArgument naming it otherwise."""
    if len(name) > MAX_NAME_CHARS:
        raise InvalidArgument(f"column names have at most {MAX_NAME_CHARS} characters")
    if not name.strip():
        raise InvalidArgument("a column name is empty")
    exact = [i for i, h in enumerate(header) if h == name]
    if not exact:
        folded = name.strip().casefold()
        exact = [i for i, h in enumerate(header) if h.strip().casefold() == folded]
    if len(exact) == 1:
        return exact[0]
    if exact:
        raise InvalidArgument(f"column {_shown(name)} is in the header {len(exact)} times, so "
                              "which one is meant cannot be told")
    raise InvalidArgument(f"unknown column {_shown(name)}: the file's columns are "
                          f"{_shown(', '.join(header))}")


def plan(spec: OperationSpec, header: Sequence[str]) -> Plan:
    """The operation against this header; InvalidArgument naming what is wrong."""
    if spec.operation == DEDUPE:
        return _dedupe(spec, header)
    if spec.operation == UNIQUE:
        _only(spec, "column")
        if not spec.column:
            raise InvalidArgument("unique needs the column whose values to count: "
                                  '{"operation": "unique", "column": "..."}')
        return Plan(UNIQUE, column=column_index(header, spec.column))
    if spec.operation == FILTER:
        return _filter(spec, header)
    raise InvalidArgument(f"unknown operation {_shown(spec.operation)}: use one of "
                          f"{', '.join(OPERATIONS)}")


def _only(spec: OperationSpec, *allowed: str) -> None:
    """Refuses fields that belong to another operation, rather than ignoring what the client
    meant."""
    given = {"columns": bool(spec.columns), "column": bool(spec.column),
             "conditions": bool(spec.conditions), "match": bool(spec.match)}
    extra = [name for name, present in given.items() if present and name not in allowed]
    if extra:
        raise InvalidArgument(f"{spec.operation} does not take {', '.join(extra)}")


def _dedupe(spec: OperationSpec, header: Sequence[str]) -> Plan:
    _only(spec, "columns")
    if len(spec.columns) > MAX_KEY_COLUMNS:
        raise InvalidArgument(f"dedupe takes at most {MAX_KEY_COLUMNS} columns")
    key = tuple(column_index(header, name) for name in spec.columns)
    if len(set(key)) != len(key):
        raise InvalidArgument("a column is named twice in columns")
    return Plan(DEDUPE, key=key or tuple(range(len(header))))


def _filter(spec: OperationSpec, header: Sequence[str]) -> Plan:
    _only(spec, "conditions", "match")
    if not spec.conditions:
        raise InvalidArgument('filter needs conditions: [{"column": "...", "op": "eq", '
                              '"value": "..."}]')
    if len(spec.conditions) > MAX_CONDITIONS:
        raise InvalidArgument(f"filter takes at most {MAX_CONDITIONS} conditions "
                              f"(got {len(spec.conditions)})")
    match = spec.match.strip().lower() or "all"
    if match not in MATCHES:
        raise InvalidArgument(f"unknown match {_shown(spec.match)}: use all or any")
    resolved = []
    for n, condition in enumerate(spec.conditions, 1):
        op = condition.op.strip().lower()
        if op not in OPS:
            raise InvalidArgument(f"condition {n}: unknown op {_shown(condition.op)}: use one "
                                  f"of {', '.join(OPS)}")
        if len(condition.value) > MAX_VALUE_CHARS:
            raise InvalidArgument(f"condition {n}: a value has at most {MAX_VALUE_CHARS} "
                                  "characters")
        if op in VALUELESS_OPS and condition.value:
            raise InvalidArgument(f"condition {n}: {op} takes no value")
        resolved.append(ResolvedCondition(column_index(header, condition.column), op,
                                          condition.value))
    return Plan(FILTER, conditions=tuple(resolved), match_all=match == "all")


def spec_from_message(message: task_pb2.Operation) -> OperationSpec:
    """The request as the contract carries it (upload's StartOperation, the task record)."""
    if len(message.conditions) > MAX_CONDITIONS:  # refused before a condition is copied
        raise InvalidArgument(f"filter takes at most {MAX_CONDITIONS} conditions "
                              f"(got {len(message.conditions)})")
    if len(message.columns) > MAX_KEY_COLUMNS:
        raise InvalidArgument(f"dedupe takes at most {MAX_KEY_COLUMNS} columns")
    return OperationSpec(
        operation=message.operation.strip().lower(), columns=tuple(message.columns),
        column=message.column,
        conditions=tuple(Condition(c.column, c.op, c.value) for c in message.conditions),
        match=message.match)


def spec_message(spec: OperationSpec) -> task_pb2.Operation:
    return task_pb2.Operation(
        operation=spec.operation, columns=spec.columns, column=spec.column,
        conditions=[task_pb2.Condition(column=c.column, op=c.op, value=c.value)
                    for c in spec.conditions],
        match=spec.match)
