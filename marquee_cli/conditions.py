"""`--where` of `marquee op filter`: "COLUMN OP [VALUE]" into a filter condition."""

from __future__ import annotations

import shlex

from marquee.task.v1 import task_pb2

# The operators the task service knows (task.proto, Condition), and the symbols people type.
OPERATORS = ("eq", "ne", "contains", "startswith", "gt", "gte", "lt", "lte", "empty", "not_empty")
SYMBOLS = {"=": "eq", "==": "eq", "!=": "ne", ">": "gt", ">=": "gte", "<": "lt", "<=": "lte"}
NO_VALUE = ("empty", "not_empty")


def parse_condition(text: str) -> task_pb2.Condition:
    """`vote_average >= 7`, `title contains "star wars"`, `overview empty`. Quote a column or
    value that has spaces."""
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise ValueError(f"--where {text!r}: {exc}") from None
    if len(words) < 2:
        raise ValueError(f"--where {text!r}: expected COLUMN OP [VALUE], e.g. 'year >= 2000'")
    column, op, rest = words[0], words[1].lower(), words[2:]
    op = SYMBOLS.get(op, op)
    if op not in OPERATORS:
        raise ValueError(
            f"--where {text!r}: unknown operator {words[1]!r}; one of "
            f"{', '.join(OPERATORS)} or {' '.join(SYMBOLS)}"
        )
    if op in NO_VALUE:
        if rest:
            raise ValueError(f"--where {text!r}: {op} takes no value")
        return task_pb2.Condition(column=column, op=op)
    if not rest:
        raise ValueError(f"--where {text!r}: {op} needs a value")
    return task_pb2.Condition(column=column, op=op, value=" ".join(rest))
