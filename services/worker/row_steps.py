"""What each operation does with one batch of rows, where the batch is parsed: in the job's
process, or in the processes that parse its blocks (services/worker/block_workers.py), which
get these steps pickled. So this module imports only the standard library: a parsing process
starts with the csv reader and this, not with gRPC or the task messages.

Each step is a plain object whose result the operation (services/worker/csv_operations.py)
adds up in the job's process, in the file's order.
"""

from __future__ import annotations

import csv
import io
import marshal
import operator
import re
import zlib
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from itertools import compress, repeat
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    pass

SPILL_VERSION = 2  # marshal's: no back-references (version 3 on shares equal objects)
VALUELESS_OPS = ("empty", "not_empty")  # the filter ops that take no value
# What filter remembers of its answers for a column's values: how many values, and characters.
ANSWERS_KEPT = 65536
ANSWER_CHARS_KEPT = 4 << 20


@dataclass(frozen=True)
class ResolvedCondition:
    """A filter condition checked against a header (operation_spec): its column's position."""

    index: int
    op: str
    value: str


class DedupeStep:
    """What dedupe needs of a batch, made where the batch is parsed: each row's key, the rows
    as spilled (None when the keys are the rows), and the partition of each key. The partition
    is the key's CRC-32, which every process computes alike (hash() is salted per process)."""

    def __init__(self, key: tuple[int, ...], whole_row: bool, partitions: int) -> None:
        self.key = key
        self.whole_row = whole_row
        self.partitions = partitions

    def __call__(self, rows: list[list[str]]) -> tuple[list[bytes], bytes | None, list[int]]:
        keyed = rows if self.whole_row else map(operator.itemgetter(*self.key), rows)
        keys = list(map(marshal.dumps, keyed, repeat(SPILL_VERSION)))
        parts = (list(map(operator.mod, map(zlib.crc32, keys), repeat(self.partitions)))
                 if self.partitions > 1 else [])
        return keys, None if self.whole_row else marshal.dumps(rows, SPILL_VERSION), parts


class CountStep:
    """The values of one column of a batch, counted where the batch is parsed."""

    def __init__(self, column: int) -> None:
        self.column = column

    def __call__(self, rows: list[list[str]]) -> Counter[str]:
        return Counter(map(operator.itemgetter(self.column), rows))


_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_INTEGER = re.compile(r"[+-]?\d+")


def as_number(text: str) -> int | float | None:
    """The number a value writes, or None: decimal notation with an optional sign, fraction
    and exponent, spaces around it allowed. Integers stay exact (Python compares int and float
    exactly); no nan, inf or digit separators."""
    stripped = text.strip()
    if _INTEGER.fullmatch(stripped):
        return int(stripped)
    if _NUMBER.fullmatch(stripped):
        return float(stripped)
    return None


_ORDER = {"gt": operator.gt, "gte": operator.ge, "lt": operator.lt, "lte": operator.le,
          "eq": operator.eq, "ne": operator.ne}


Answers = Callable[[list[str]], Iterable[bool]]  # a condition on each value of a column


def _answers(condition: ResolvedCondition) -> Answers:
    op, value = condition.op, condition.value
    if op == "contains":
        return lambda values: map(str.__contains__, values, repeat(value))
    if op == "startswith":
        return lambda values: map(str.startswith, values, repeat(value))
    if op in VALUELESS_OPS:
        wanted = op == "empty"
        return _remembered(lambda field: (not field.strip()) == wanted)
    compare = _ORDER[op]
    number = as_number(value)
    if number is None:  # the condition's side is text, so every comparison is
        return _remembered(lambda field: bool(compare(field, value)))

    def compared(field: str) -> bool:
        mine = as_number(field)
        return bool(compare(field, value) if mine is None else compare(mine, number))

    return _remembered(compared)


def _remembered(answer: Callable[[str], bool]) -> Answers:
    """`answer` for each value, worked out once per distinct value: a column repeats its values
    (a rating, a year), and a dict lookup costs less than reading a number. What is remembered
    is bounded (ANSWERS_KEPT values, ANSWER_CHARS_KEPT characters); past that it starts over."""
    known: dict[str, bool] = {}
    chars = 0

    def answers(values: list[str]) -> Iterable[bool]:
        nonlocal chars
        new = set(values).difference(known)
        if len(known) + len(new) > ANSWERS_KEPT or chars + sum(map(len, new)) > ANSWER_CHARS_KEPT:
            known.clear()
            new, chars = set(values), 0
        known.update(zip(new, map(answer, new), strict=True))
        chars += sum(map(len, new))
        return map(known.__getitem__, values)

    return answers


def row_selector(conditions: tuple[ResolvedCondition, ...], match_all: bool
                 ) -> Callable[[list[list[str]]], Iterable[bool]]:
    """Whether each row of a batch matches all (or any) of the conditions."""
    answered = [(operator.itemgetter(c.index), _answers(c)) for c in conditions]
    combine = all if match_all else any

    def select(rows: list[list[str]]) -> Iterable[bool]:
        columns = [answers(list(map(column, rows))) for column, answers in answered]
        return columns[0] if len(columns) == 1 else map(combine, zip(*columns, strict=True))

    return select


class FilterStep:
    """The rows of a batch that match, as CSV, and how many: made where the batch is parsed.
    Its answers for values seen are remembered there (row_selector), and not pickled."""

    def __init__(self, conditions: tuple[ResolvedCondition, ...], match_all: bool) -> None:
        self.conditions = conditions
        self.match_all = match_all
        self._select = row_selector(conditions, match_all)

    def __reduce__(self) -> tuple[type[FilterStep], tuple[tuple[ResolvedCondition, ...], bool]]:
        return FilterStep, (self.conditions, self.match_all)

    def __call__(self, rows: list[list[str]]) -> tuple[str, int]:
        matched = list(compress(rows, self._select(rows)))
        return csv_rows(matched), len(matched)


def _csv_field(value: str) -> str:
    if '"' in value:
        return '"' + value.replace('"', '""') + '"'
    if "," in value or "\n" in value or "\r" in value:
        return '"' + value + '"'
    return value


def csv_rows(rows: Iterable[list[str]]) -> str:
    """The rows as csv.writer writes them (comma, quotes only around a comma, quote or line
    break, quotes doubled, CRLF), in under half its time: its C loop copies every character
    into a buffer of its own, where str.join and `in` work on whole strings. A row of one
    empty field, which csv.writer quotes, is left to csv.writer."""
    rows = list(rows)
    if 1 in map(len, rows):
        out = io.StringIO()
        csv.writer(out).writerows(rows)
        return out.getvalue()
    return "".join([",".join(map(_csv_field, row)) + "\r\n" for row in rows])


