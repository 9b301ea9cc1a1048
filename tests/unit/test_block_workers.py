"""Blocks parsed by child processes (services/worker/block_workers.py) give what the operation's
own process gives: the same rows, the same malformed records on the same lines, the same
rejections, whatever the encoding, the quoting, or a block cut where no record ends."""

from __future__ import annotations

import codecs
import os
import re
from collections.abc import Iterator

import pytest

from services.worker import block_workers, csv_source
from services.worker.block_workers import BlockWorkers, ParsingProcessLost
from services.worker.csv_source import (
    BlockJob,
    ByteStream,
    CsvLimits,
    Dialect,
    InProcess,
    Parser,
    detect_dialect,
    is_utf8,
    stepped_blocks,
)
from services.worker.movie_rows import FileRejected

LIMITS = CsvLimits(max_row_chars=200, max_header_chars=100, max_columns=8)


class Rows:
    """The step that keeps the rows as they are (pickled to the children by reference)."""

    def __call__(self, rows: list[list[str]]) -> list[list[str]]:
        return rows


def _chunks(data: bytes) -> Iterator[bytes]:
    return (data[i : i + 1000] for i in range(0, len(data), 1000))


Read = tuple[list[list[str]], list[tuple[int, str]], int, list[Parser]]


def _read(data: bytes, processes: int, dialect: Dialect | None = None) -> Read:
    """The rows, the malformed records' lines and reasons, the records counted, the parsers."""
    parsers: list[Parser] = []

    def begin(header: list[str], dialect: Dialect) -> Parser:
        job = BlockJob(dialect.delimiter, len(header), Rows())
        parsers.append(BlockWorkers(job, dialect.encoding, processes) if processes
                       else InProcess(job))
        return parsers[-1]

    stream = ByteStream(_chunks(data))
    dialect = dialect or detect_dialect(stream, lambda: is_utf8(_chunks(data)))
    rows: list[list[str]] = []
    malformed: list[tuple[int, str]] = []
    count = 0
    for parsed in stepped_blocks(stream, lambda: True, LIMITS, dialect, begin):
        rows += parsed.value
        malformed += [(r.line, r.rejected or str(len(r.fields))) for r in parsed.malformed]
        count += parsed.records
    return rows, malformed, count, parsers


def _row(i: int) -> str:
    """Rows of every kind: quoted commas and quotes, quoted line breaks (CRLF and LF), a short
    row, a row over the bound, blank lines, accents."""
    kind = i % 9
    if kind == 0:
        return f'{i},"Ronin, the",é\r\n'
    if kind == 1:
        return f'{i},"two\nlines ""q""",x\n'
    if kind == 2:
        return f'{i},"three\r\nlines\nhere",y\r\n'
    if kind == 3:
        return f"{i},short\n"
    if kind == 4:
        return f"{i},{'w' * 300},z\n"
    if kind == 5:
        return "\n\n"
    return f"{i},Amélie {i},fr\n"


MESSY = "id,title,lang\n" + "".join(_row(i) for i in range(3000))
# Quotes inside unquoted fields are kept as they are by the csv module, so their count says
# nothing of where a record ends: blocks get cut inside a quoted field and must be re-read.
STRAY_QUOTES = "id,title,lang\n" + "".join(
    f'{i},5\'11" tall,"a\nb"\n' if i % 3 else f'{i},"q",x\n' for i in range(3000))


@pytest.mark.parametrize("data", [
    pytest.param(MESSY.encode(), id="utf-8"),
    pytest.param(codecs.BOM_UTF8 + MESSY.encode(), id="utf-8-bom"),
    pytest.param(MESSY.replace(",", ";").encode("cp1252"), id="cp1252-semicolons"),
    pytest.param(MESSY.encode("utf-16"), id="utf-16-as-text"),
    pytest.param(STRAY_QUOTES.encode(), id="quotes-that-mislead-the-cut"),
])
@pytest.mark.parametrize("block", [64, 1 << 16])
def test_the_processes_read_what_this_process_reads(monkeypatch: pytest.MonkeyPatch,
                                                    data: bytes, block: int) -> None:
    monkeypatch.setattr(csv_source, "BLOCK_CHARS", block)
    monkeypatch.setattr(BlockWorkers, "blocks_per_group", 3)
    here = _read(data, 0)
    there = _read(data, 2)
    assert there[:3] == here[:3]
    assert here[2] == len(here[0]) + len(here[1]) > 2000
    assert isinstance(there[3][0], BlockWorkers)
    assert there[3][0].cuts_bytes == (not data.startswith(codecs.BOM_UTF16_LE))


@pytest.mark.parametrize(("encoding", "damage"), [("utf-8", b"\xff\xfe"), ("cp1252", b"\x81")])
def test_bytes_that_do_not_decode_are_named_as_this_process_names_them(
        monkeypatch: pytest.MonkeyPatch, encoding: str, damage: bytes) -> None:
    monkeypatch.setattr(csv_source, "BLOCK_CHARS", 256)
    data = MESSY.encode(encoding)
    at = data.index(b"\n2500,") + 1
    data = data[:at] + damage + data[at:]
    says = f"not valid {encoding}"
    dialect = Dialect(encoding, ",")  # as its upload detected it, from its first bytes
    with pytest.raises(FileRejected, match=re.escape(says)) as here:
        _read(data, 0, dialect)
    with pytest.raises(FileRejected) as there:
        _read(data, 2, dialect)
    assert str(there.value) == str(here.value)


def test_the_children_end_with_the_reading(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(csv_source, "BLOCK_CHARS", 256)
    *_, parsers = _read(MESSY.encode(), 2)
    workers = parsers[0]
    assert isinstance(workers, BlockWorkers) and workers.peak_kib > 0
    assert workers._children == []


def test_a_child_that_dies_fails_the_reading(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(csv_source, "BLOCK_CHARS", 256)
    workers = BlockWorkers(BlockJob(",", 3, Rows()), "utf-8", 2)
    try:
        os.kill(workers._children[1].pid, 9)
        workers._children[1].wait()
        with pytest.raises(ParsingProcessLost, match="ended unexpectedly"):
            for _ in range(block_workers.DEPTH * 2 + 1):
                workers.submit([b"1,a,b\n"], False)
                workers.take()
    finally:
        workers.close()
