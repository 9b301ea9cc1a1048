"""The operations on a CSV file's rows: dedupe, unique (distinct values with counts) and filter.
Pure logic over parsed rows (lists of field values, as services/worker/csv_source.py reads
them), so values compare as parsed: a row quoted differently is the same row.

Rows come in batches, a block of the file each. What an operation does with one batch is its
step (services/worker/row_steps.py), run where the batch is parsed (in this process, or in the
processes that parse the blocks of a big file); the operation adds the steps' results up in
the file's order. The steps work with C-level calls (map, compress, Counter, marshal, str.join)
rather than Python code per row: the csv module's parsing is then most of an operation's time.

Memory stays bounded whatever the file's size, and results are exact:
- dedupe spills the rows, and each row's key (its values in the key columns, marshalled) with
  the row's number to one of P partition files chosen by the key's CRC-32, so equal keys meet in
  one partition. Each partition is then read alone into a dict from key to its first row, which
  marks the first occurrences in a bytearray of one byte per row. The rows are read back in
  their order and the marked ones written: first occurrences, in the original order. P grows
  with the file (PARTITION_BYTES of input each), so a partition's keys fit in memory.
- unique counts values in a dict while it holds at most MAX_VALUES_IN_MEMORY of them; past that
  it spills the counts to hash partitions, then sums each partition alone, sorts it, and merges
  the sorted partitions into the answer.
- filter writes matching rows as it reads them.

Spills are marshal (version 2: no back-references, so nothing is remembered across records):
written and read back by the same process, never from outside it, and several times faster
than pickle for lists of strings.
"""

from __future__ import annotations

import heapq
import json
import marshal
import math
from bisect import bisect_right
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import chain, compress, repeat
from pathlib import Path
from typing import IO, Any

from services.worker.operation_spec import (
    DEDUPE,
    UNIQUE,
    Plan,
)
from services.worker.row_steps import SPILL_VERSION, CountStep, DedupeStep, FilterStep, csv_rows

CSV_TYPE = "text/csv; charset=utf-8"
JSON_TYPE = "application/json"
# Input bytes per dedupe partition, and how many partitions at most (open files).
PARTITION_BYTES = 4 << 20
MAX_PARTITIONS = 512
MAX_VALUES_IN_MEMORY = 200_000
OUT_CHUNK = 1 << 20
SPILL_BUFFER = 32 << 10
_SIZE_BYTES = 8
# Keys held before they go to their partitions: in bigger writes, one per partition.
KEYS_BUFFERED = 8192


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

    def write(self, index: int, value: Any) -> None:
        """Appends `value`, after its size: marshal.load reads a file in many small reads, so
        each value is read whole and unmarshalled from memory."""
        self.write_marshalled(index, marshal.dumps(value, SPILL_VERSION))

    def write_marshalled(self, index: int, data: bytes) -> None:
        """Appends a value marshalled already (version SPILL_VERSION)."""
        assert self._files is not None
        self._files[index].write(len(data).to_bytes(_SIZE_BYTES, "little"))
        self._files[index].write(data)

    def close(self) -> None:
        for f in self._files or ():
            f.close()
        self._files = None

    def read(self, index: int) -> Iterator[Any]:
        with open(self._paths[index], "rb", buffering=1 << 20) as f:
            while size := int.from_bytes(f.read(_SIZE_BYTES), "little"):
                yield marshal.loads(f.read(size))

    def remove(self, index: int) -> None:
        self._paths[index].unlink(missing_ok=True)


def _csv_line(fields: Sequence[str]) -> str:
    """One row as comma-delimited CSV (RFC 4180: CRLF, quotes only where needed)."""
    return csv_rows([list(fields)])


def _encoded(texts: Iterable[str]) -> Iterator[bytes]:
    """The texts as UTF-8, in chunks of about OUT_CHUNK bytes."""
    parts: list[str] = []
    size = 0
    for text in texts:
        parts.append(text)
        size += len(text)
        if size >= OUT_CHUNK:
            yield "".join(parts).encode()
            parts, size = [], 0
    yield "".join(parts).encode()


class Dedupe:
    """Rows whose key equals an earlier row's are dropped; first occurrences keep their order.

    A key is its values marshalled (version 2 writes no back-references, so equal values give
    equal bytes whatever objects hold them): one bytes object, cheap to hash, spill and compare.
    A key of all columns is the whole row, so the keys are also the spill of the rows.
    """

    content_type = CSV_TYPE

    def __init__(self, plan: Plan, size_bytes: int, spill_dir: Path, columns: int) -> None:
        self.tally = Tally()
        self._count = partitions_for(size_bytes)
        self.step = DedupeStep(plan.key, list(plan.key) == list(range(columns)), self._count)
        self._rows = _Spill(spill_dir, "rows", 1)
        self._keys = _Spill(spill_dir, "keys", self._count)
        self._added = 0
        self._numbers: list[int] = []
        self._buffered: list[bytes] = []
        self._parts: list[int] = []

    def add(self, stepped: tuple[list[bytes], bytes | None, list[int]]) -> None:
        keys, rows, parts = stepped
        if not keys:
            return
        if rows is None:
            self._rows.write(0, keys)
        else:
            self._rows.write_marshalled(0, rows)
        self._buffered += keys
        self._parts += parts
        self._numbers += range(self._added, self._added + len(keys))
        self._added += len(keys)
        if len(self._numbers) >= KEYS_BUFFERED:
            self._flush_keys()

    def _flush_keys(self) -> None:
        """The keys held so far, each with its row's number, to their partitions; the numbers
        in a partition stay in order."""
        numbers, keys, parts = self._numbers, self._buffered, self._parts
        self._numbers, self._buffered, self._parts = [], [], []
        if not numbers:
            return
        if self._count == 1:
            self._keys.write(0, (numbers, keys))
            return
        order = sorted(range(len(parts)), key=parts.__getitem__)  # stable: rows stay in order
        parts = list(map(parts.__getitem__, order))
        numbers = list(map(numbers.__getitem__, order))
        keys = list(map(keys.__getitem__, order))
        start = 0
        while start < len(parts):
            end = bisect_right(parts, parts[start], start)
            self._keys.write(parts[start], (numbers[start:end], keys[start:end]))
            start = end

    def result(self, header: Sequence[str], tick: Tick) -> Iterator[bytes]:
        self._flush_keys()
        self._rows.close()
        self._keys.close()
        first = self._mark_first(tick)
        return _encoded(chain((_csv_line(header),), self._first_occurrences(first, tick)))

    def _mark_first(self, tick: Tick) -> bytearray:
        """A byte per row, 1 for the row whose key no earlier row had."""
        first = bytearray(self._added)
        for index in range(self._count):
            numbers: list[int] = []
            keys: list[Any] = []
            for some_numbers, some_keys in self._keys.read(index):
                numbers += some_numbers
                keys += some_keys
            # Built backwards, each key ends up with its earliest row (the last one assigned).
            earliest = dict(zip(reversed(keys), reversed(numbers), strict=True))
            deque(map(first.__setitem__, earliest.values(), repeat(1)), maxlen=0)
            self.tally.distinct += len(earliest)
            self.tally.duplicates += len(keys) - len(earliest)
            self._keys.remove(index)
            tick()
        return first

    def _first_occurrences(self, first: bytearray, tick: Tick) -> Iterator[str]:
        at = 0
        for rows in self._rows.read(0):
            marks = first[at : at + len(rows)]
            at += len(rows)
            self.tally.rows_out += marks.count(1)
            kept = compress(rows, marks)
            yield csv_rows(map(marshal.loads, kept) if self.step.whole_row else kept)
            tick()
        self._rows.remove(0)


def _entries(chunks: Iterable[list[Any]]) -> Iterator[tuple[Any, ...]]:
    """The entries of a spill written a list at a time (marshal gives tuples back as tuples)."""
    for chunk in chunks:
        yield from chunk


class UniqueValues:
    """The distinct values of one column with how many rows hold each: most frequent first, ties
    by value (code point order)."""

    content_type = JSON_TYPE

    def __init__(self, plan: Plan, column_name: str, size_bytes: int, spill_dir: Path,
                 max_in_memory: int = MAX_VALUES_IN_MEMORY) -> None:
        self.tally = Tally()
        self._name = column_name
        self._counts: Counter[str] = Counter()
        self.step = CountStep(plan.column)
        self._max = max_in_memory
        self._spill_dir = spill_dir
        self._partition_count = partitions_for(size_bytes)
        self._spill: _Spill | None = None

    def add(self, counts: Counter[str]) -> None:
        self._counts.update(counts)
        if len(self._counts) > self._max:
            self._spill_counts()

    def _spill_counts(self) -> None:
        if self._spill is None:
            self._spill = _Spill(self._spill_dir, "values", self._partition_count)
        count = self._partition_count
        parts: list[list[tuple[str, int]]] = [[] for _ in range(count)]
        for entry in self._counts.items():
            parts[hash(entry[0]) % count].append(entry)
        for index, entries in enumerate(parts):
            if entries:
                self._spill.write(index, entries)
        self._counts = Counter()

    def result(self, header: Sequence[str], tick: Tick) -> Iterator[bytes]:
        del header
        if self._spill is None:
            ordered: Iterable[tuple[int, str]] = sorted(
                (-n, value) for value, n in self._counts.items())
            self.tally.distinct = len(self._counts)
        else:
            ordered = self._merged_runs(tick)
        self._counts = Counter()
        return self._json(ordered)

    def _merged_runs(self, tick: Tick) -> Iterator[tuple[int, str]]:
        """Each partition's counts summed and sorted into a run of its own, then all runs
        merged: only one partition's distinct values are in memory at a time. The runs are
        written before this returns, so that the distinct count is known."""
        runs = self._sorted_runs(tick)
        return self._merge(runs)

    def _merge(self, runs: _Spill) -> Iterator[tuple[int, str]]:
        yield from heapq.merge(*(_entries(runs.read(i)) for i in range(self._partition_count)))
        for index in range(self._partition_count):
            runs.remove(index)

    def _sorted_runs(self, tick: Tick) -> _Spill:
        assert self._spill is not None
        self._spill_counts()
        self._spill.close()
        runs = _Spill(self._spill_dir, "runs", self._partition_count)
        for index in range(self._partition_count):
            summed: dict[str, int] = {}
            for value, n in _entries(self._spill.read(index)):
                summed[value] = summed.get(value, 0) + n
            ordered = sorted((-n, value) for value, n in summed.items())
            for at in range(0, len(ordered), KEYS_BUFFERED):
                runs.write(index, ordered[at : at + KEYS_BUFFERED])
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


class Filter:
    """The rows that match all (or any) of the conditions, in their order."""

    content_type = CSV_TYPE

    def __init__(self, plan: Plan, spill_dir: Path) -> None:
        self.tally = Tally()
        self.step = FilterStep(plan.conditions, plan.match_all)
        self._path = spill_dir / "matches"
        # Written batch by batch while the file is read; closed by result().
        self._file: IO[str] | None = open(self._path, "w", encoding="utf-8",  # noqa: SIM115
                                          newline="")

    def add(self, matched: tuple[str, int]) -> None:
        assert self._file is not None
        text, count = matched
        self._file.write(text)
        self.tally.rows_out += count

    def result(self, header: Sequence[str], tick: Tick) -> Iterator[bytes]:
        assert self._file is not None
        self._file.close()
        self._file = None
        yield _csv_line(header).encode()
        with open(self._path, "rb") as f:
            while chunk := f.read(OUT_CHUNK):
                yield chunk
                tick()
        self._path.unlink(missing_ok=True)


Operation = Dedupe | UniqueValues | Filter


def start_operation(checked: Plan, header: list[str], size_bytes: int, spill_dir: Path
                    ) -> Operation:
    """The operation a plan asks for, ready for the file's rows."""
    if checked.operation == DEDUPE:
        return Dedupe(checked, size_bytes, spill_dir, len(header))
    if checked.operation == UNIQUE:
        return UniqueValues(checked, header[checked.column], size_bytes, spill_dir)
    return Filter(checked, spill_dir)
