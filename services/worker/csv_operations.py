"""The operations on a CSV file's rows: dedupe, unique (distinct values with counts) and filter.
Pure logic over parsed rows (lists of field values, as services/worker/csv_source.py reads
them), so values compare as parsed: a row quoted differently is the same row.

Memory stays bounded whatever the file's size, and results are exact:
- dedupe spills each row, and each row's key (its values in the key columns, marshalled) to one
  of P partition files chosen by the key's hash, so equal keys meet in one partition. Each
  partition is then read alone with a set of its keys, in row order, which marks every row
  whose key an earlier row had in a bitmap of one bit per row. The rows are read back in their
  order and those not marked are written: first occurrences, in the original order. P grows
  with the file (PARTITION_BYTES of input each), so a partition's keys fit in memory.
- unique counts values in a dict while it holds at most MAX_VALUES_IN_MEMORY of them; past that
  it spills the counts to hash partitions, then sums each partition alone, sorts it, and merges
  the sorted partitions into the answer.
- filter writes matching rows as it reads them.
"""

from __future__ import annotations

import csv
import heapq
import io
import json
import marshal
import math
import operator
import pickle
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from services.worker.operation_spec import Plan, ResolvedCondition

CSV_TYPE = "text/csv; charset=utf-8"
JSON_TYPE = "application/json"
# Input bytes per dedupe partition, and how many partitions at most (open files).
PARTITION_BYTES = 4 << 20
MAX_PARTITIONS = 512
MAX_VALUES_IN_MEMORY = 200_000
OUT_CHUNK = 1 << 20
SPILL_BUFFER = 32 << 10
# Protocol 2 names each memo entry by an index that restarts with every record, so reading a
# spill back keeps only the last record's objects; from protocol 4 on, the unpickler's memo
# grows with every record read and held the whole spill (a 100 MiB dedupe peaked at 395 MB).
SPILL_PROTOCOL = 2
TICK_EVERY = 4096  # records between two calls of a run's tick (progress, lease, cancel)


@dataclass
class Tally:
    """What an operation has produced so far (the task's rows_out, duplicates, distinct)."""

    rows_out: int = 0
    duplicates: int = 0
    distinct: int = 0


Tick = Callable[[], None]


def partitions_for(size_bytes: int) -> int:
    return max(1, min(MAX_PARTITIONS, math.ceil(size_bytes / PARTITION_BYTES)))


class _Spill:
    """Records (any picklable value) appended to numbered files in a directory, read back in
    the order they were written."""

    def __init__(self, directory: Path, name: str, count: int) -> None:
        self._paths = [directory / f"{name}-{i}" for i in range(count)]
        # Open for the spill's whole life (the partitions are written row by row), closed by
        # close().
        self._files: list[IO[bytes]] | None = [
            open(p, "wb", buffering=SPILL_BUFFER)  # noqa: SIM115
            for p in self._paths]

    def writer(self, index: int) -> Callable[[bytes], Any]:
        assert self._files is not None
        return self._files[index].write

    def close(self) -> None:
        for f in self._files or ():
            f.close()
        self._files = None

    def read(self, index: int) -> Iterator[Any]:
        with open(self._paths[index], "rb", buffering=1 << 20) as f:
            load = pickle.Unpickler(f).load
            while True:
                try:
                    yield load()
                except EOFError:
                    return

    def remove(self, index: int) -> None:
        self._paths[index].unlink(missing_ok=True)


def _key_getter(key: Sequence[int]) -> Callable[[list[str]], bytes]:
    """A row's key as bytes: its values in the key columns, marshalled (version 2, which
    writes no back-references, so equal keys give equal bytes whatever object they are)."""
    pick = operator.itemgetter(*key)
    if len(key) == 1:
        return lambda fields: marshal.dumps((pick(fields),), 2)
    return lambda fields: marshal.dumps(pick(fields), 2)


def _csv_chunks(header: Sequence[str], rows: Iterable[Sequence[str]]) -> Iterator[bytes]:
    """The header and rows as comma-delimited UTF-8 CSV (RFC 4180: CRLF, quotes only where
    needed), in chunks of about OUT_CHUNK bytes."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    for row in rows:
        writer.writerow(row)
        if buffer.tell() >= OUT_CHUNK:
            yield buffer.getvalue().encode()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode()


class Dedupe:
    """Rows whose key equals an earlier row's are dropped; first occurrences keep their order."""

    content_type = CSV_TYPE

    def __init__(self, plan: Plan, size_bytes: int, spill_dir: Path) -> None:
        self.tally = Tally()
        self._key = _key_getter(plan.key)
        self._count = partitions_for(size_bytes)
        self._rows = _Spill(spill_dir, "rows", 1)
        self._keys = _Spill(spill_dir, "keys", self._count)
        self._write_row = self._rows.writer(0)
        self._key_writers = [self._keys.writer(i) for i in range(self._count)]
        self._added = 0

    def add(self, fields: list[str]) -> None:
        key = self._key(fields)
        self._key_writers[hash(key) % self._count](pickle.dumps((self._added, key), SPILL_PROTOCOL))
        self._write_row(pickle.dumps(fields, SPILL_PROTOCOL))
        self._added += 1

    def result(self, header: Sequence[str], tick: Tick) -> Iterator[bytes]:
        self._rows.close()
        self._keys.close()
        repeated = self._mark_repeats(tick)
        return _csv_chunks(header, self._first_occurrences(repeated, tick))

    def _mark_repeats(self, tick: Tick) -> bytearray:
        """A bit per row, set for a row whose key an earlier row had."""
        repeated = bytearray((self._added + 7) // 8)
        for index in range(self._count):
            seen: set[bytes] = set()
            for n, (row, key) in enumerate(self._keys.read(index), 1):
                if key in seen:
                    repeated[row >> 3] |= 1 << (row & 7)
                    self.tally.duplicates += 1
                else:
                    seen.add(key)
                if n % TICK_EVERY == 0:
                    tick()
            self.tally.distinct += len(seen)
            self._keys.remove(index)
        return repeated

    def _first_occurrences(self, repeated: bytearray, tick: Tick) -> Iterator[list[str]]:
        for row, fields in enumerate(self._rows.read(0)):
            if not repeated[row >> 3] & (1 << (row & 7)):
                self.tally.rows_out += 1
                yield fields
            if row % TICK_EVERY == 0:
                tick()
        self._rows.remove(0)


class UniqueValues:
    """The distinct values of one column with how many rows hold each: most frequent first, ties
    by value (code point order)."""

    content_type = JSON_TYPE

    def __init__(self, plan: Plan, column_name: str, size_bytes: int, spill_dir: Path,
                 max_in_memory: int = MAX_VALUES_IN_MEMORY) -> None:
        self.tally = Tally()
        self._index = plan.column
        self._name = column_name
        self._counts: dict[str, int] = {}
        self._max = max_in_memory
        self._spill_dir = spill_dir
        self._partition_count = partitions_for(size_bytes)
        self._spill: _Spill | None = None

    def add(self, fields: list[str]) -> None:
        value = fields[self._index]
        counts = self._counts
        counts[value] = counts.get(value, 0) + 1
        if len(counts) > self._max:
            self._spill_counts()

    def _spill_counts(self) -> None:
        if self._spill is None:
            self._spill = _Spill(self._spill_dir, "values", self._partition_count)
        count = self._partition_count
        writers = [self._spill.writer(i) for i in range(count)]
        for value, n in self._counts.items():
            writers[hash(value) % count](pickle.dumps((value, n), SPILL_PROTOCOL))
        self._counts = {}

    def result(self, header: Sequence[str], tick: Tick) -> Iterator[bytes]:
        del header
        if self._spill is None:
            ordered: Iterable[tuple[int, str]] = sorted(
                (-n, value) for value, n in self._counts.items())
            self.tally.distinct = len(self._counts)
        else:
            ordered = self._merged_runs(tick)
        self._counts = {}
        return self._json(ordered)

    def _merged_runs(self, tick: Tick) -> Iterator[tuple[int, str]]:
        """Each partition's counts summed and sorted into a run of its own, then all runs
        merged: only one partition's distinct values are in memory at a time. The runs are
        written before this returns, so that the distinct count is known."""
        runs = self._sorted_runs(tick)
        return self._merge(runs)

    def _merge(self, runs: _Spill) -> Iterator[tuple[int, str]]:
        yield from heapq.merge(*(runs.read(i) for i in range(self._partition_count)))
        for index in range(self._partition_count):
            runs.remove(index)

    def _sorted_runs(self, tick: Tick) -> _Spill:
        assert self._spill is not None
        self._spill_counts()
        self._spill.close()
        runs = _Spill(self._spill_dir, "runs", self._partition_count)
        for index in range(self._partition_count):
            summed: dict[str, int] = {}
            for value, n in self._spill.read(index):
                summed[value] = summed.get(value, 0) + n
            write = runs.writer(index)
            for entry in sorted((-n, value) for value, n in summed.items()):
                write(pickle.dumps(entry, SPILL_PROTOCOL))
            self.tally.distinct += len(summed)
            self._spill.remove(index)
            tick()
        runs.close()
        return runs

    def _json(self, ordered: Iterable[tuple[int, str]]) -> Iterator[bytes]:
        head = {"column": self._name, "distinct": self.tally.distinct}
        parts = [json.dumps(head, ensure_ascii=False)[:-1] + ', "values": [']
        size = 0
        for i, (negative, value) in enumerate(ordered):
            item = json.dumps({"value": value, "count": -negative}, ensure_ascii=False)
            parts.append(item if i == 0 else ", " + item)
            size += len(item)
            if size >= OUT_CHUNK:
                yield "".join(parts).encode()
                parts, size = [], 0
        parts.append("]}")
        yield "".join(parts).encode()


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


def _predicate(condition: ResolvedCondition) -> Callable[[list[str]], bool]:
    i, op, value = condition.index, condition.op, condition.value
    if op == "empty":
        return lambda fields: not fields[i].strip()
    if op == "not_empty":
        return lambda fields: bool(fields[i].strip())
    if op == "contains":
        return lambda fields: value in fields[i]
    if op == "startswith":
        return lambda fields: fields[i].startswith(value)
    compare = _ORDER[op]
    number = as_number(value)
    if number is None:  # the condition's side is text, so every comparison is
        return lambda fields: bool(compare(fields[i], value))

    def check(fields: list[str]) -> bool:
        field = fields[i]
        mine = as_number(field)
        return bool(compare(field, value) if mine is None else compare(mine, number))

    return check


def row_matcher(plan: Plan) -> Callable[[list[str]], bool]:
    checks = [_predicate(c) for c in plan.conditions]
    if plan.match_all:
        return lambda fields: all(check(fields) for check in checks)
    return lambda fields: any(check(fields) for check in checks)


class Filter:
    """The rows that match all (or any) of the conditions, in their order."""

    content_type = CSV_TYPE

    def __init__(self, plan: Plan, spill_dir: Path) -> None:
        self.tally = Tally()
        self._matches = row_matcher(plan)
        self._path = spill_dir / "matches"
        # Written row by row while the file is read; closed by result().
        self._file: IO[str] | None = open(self._path, "w", encoding="utf-8",  # noqa: SIM115
                                          newline="")
        self._writer = csv.writer(self._file)

    def add(self, fields: list[str]) -> None:
        if self._matches(fields):
            self._writer.writerow(fields)
            self.tally.rows_out += 1

    def result(self, header: Sequence[str], tick: Tick) -> Iterator[bytes]:
        assert self._file is not None
        self._file.close()
        self._file = None
        yield from _csv_chunks(header, ())
        with open(self._path, "rb") as f:
            while chunk := f.read(OUT_CHUNK):
                yield chunk
                tick()
        self._path.unlink(missing_ok=True)
