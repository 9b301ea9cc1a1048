"""dedupe, unique and filter over messy files, read by the same reader as imports (BOM, CRLF,
';', quoted newlines, latin-1, duplicates quoted differently), and their spills: a result
computed through many partitions is the one computed in memory."""

from __future__ import annotations

import codecs
import csv
import io
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from services.common.errors import InvalidArgument
from services.worker import row_steps
from services.worker.csv_operations import (
    Operation,
    Tally,
    UniqueValues,
    partitions_for,
    start_operation,
)
from services.worker.csv_source import ByteStream, CsvLimits, detect_dialect, is_utf8, records
from services.worker.operation_spec import Condition, OperationSpec, column_index, plan
from services.worker.row_steps import as_number

LIMITS = CsvLimits(max_row_chars=1 << 20, max_header_chars=1 << 16, max_columns=256)


def _read(data: bytes) -> tuple[list[str], list[list[str]], str, str]:
    stream = ByteStream(iter([data[i : i + 7] for i in range(0, len(data), 7)]))
    dialect = detect_dialect(stream, lambda: is_utf8([data]))
    rows = records(stream, lambda: True, LIMITS, dialect)
    header = next(rows)
    return header.fields, [r.fields for r in rows], dialect.encoding, dialect.delimiter


def _run(data: bytes, spec: OperationSpec, tmp_path: Path, *, size: int | None = None,
         max_in_memory: int = 200_000) -> tuple[bytes, Tally]:
    header, rows, _, _ = _read(data)
    checked = plan(spec, header)
    op: Operation
    if spec.operation == "unique":
        op = UniqueValues(checked, header[checked.column], size or len(data), tmp_path,
                          max_in_memory=max_in_memory)
    else:
        op = start_operation(checked, header, size or len(data), tmp_path)
    for at in range(0, len(rows), 3):  # in batches, as the reader gives them
        stepped: Any = op.step(rows[at : at + 3])  # as a parsing process makes it
        op.add(stepped)
    out = b"".join(op.result(header, lambda: None))
    assert list(tmp_path.iterdir()) == []  # every spill file is gone
    return out, op.tally


def _csv(out: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(out.decode("utf-8"), newline="")))


MESSY = ('\ufefftitle;year;note\r\n'
         'Heat;1995;"two\r\nlines"\r\n'
         '"Heat";"1995";"two\r\nlines"\r\n'          # the same row, quoted
         'Alien;1979;x\r\n'
         'Heat;1995;other\r\n'
         '\r\n'
         'Alien;1979;x\r\n')


def test_dedupe_compares_parsed_values_whatever_the_bom_crlf_delimiter_and_quoting(
        tmp_path: Path) -> None:
    out, tally = _run(MESSY.encode("utf-8"), OperationSpec("dedupe"), tmp_path)
    assert _csv(out) == [["title", "year", "note"], ["Heat", "1995", "two\r\nlines"],
                         ["Alien", "1979", "x"], ["Heat", "1995", "other"]]
    assert out.startswith(b"title,year,note\r\n")  # comma-delimited, no BOM
    assert (tally.rows_out, tally.duplicates, tally.distinct) == (3, 2, 3)


def test_dedupe_on_key_columns_keeps_the_first_occurrence_in_order(tmp_path: Path) -> None:
    out, tally = _run(MESSY.encode("utf-8"), OperationSpec("dedupe", columns=("title",)),
                      tmp_path)
    assert _csv(out)[1:] == [["Heat", "1995", "two\r\nlines"], ["Alien", "1979", "x"]]
    assert (tally.rows_out, tally.duplicates, tally.distinct) == (2, 3, 2)


def test_latin1_is_read_and_written_as_utf8(tmp_path: Path) -> None:
    data = "name,city\nJosé,Zürich\nJosé,Zürich\nRenée,Genève\n".encode("latin-1")
    _, _, encoding, delimiter = _read(data)
    assert (encoding, delimiter) == ("cp1252", ",")
    out, _ = _run(data, OperationSpec("dedupe"), tmp_path)
    assert out.decode("utf-8") == "name,city\r\nJosé,Zürich\r\nRenée,Genève\r\n"


def _generated(rows: int) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["id", "lang", "text"])
    for i in range(rows):
        writer.writerow([str(i % 997), ["en", "fr", "de", "ja"][i % 4], f"t,{i % 13}\n."])
    return out.getvalue().encode()


def test_dedupe_through_many_partitions_equals_an_in_memory_answer(tmp_path: Path) -> None:
    data = _generated(20_000)
    _, rows, _, _ = _read(data)
    seen: set[tuple[str, str]] = set()
    expected = []
    for row in rows:
        key = (row[0], row[2])
        if key not in seen:
            seen.add(key)
            expected.append(row)
    size = 300 << 20  # as if the file were large: 75 partitions
    assert partitions_for(size) > 50
    out, tally = _run(data, OperationSpec("dedupe", columns=("id", "text")), tmp_path, size=size)
    assert _csv(out)[1:] == expected
    assert (tally.rows_out, tally.duplicates) == (len(expected), len(rows) - len(expected))


def _expected_unique(values: list[str]) -> list[dict[str, object]]:
    counts = Counter(values)
    return [{"value": v, "count": n}
            for v, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]


@pytest.mark.parametrize("max_in_memory", [200_000, 50])
def test_unique_counts_most_frequent_first_ties_by_value_spilled_or_not(
        tmp_path: Path, max_in_memory: int) -> None:
    data = _generated(5_000)
    _, rows, _, _ = _read(data)
    out, tally = _run(data, OperationSpec("unique", column="id"), tmp_path,
                      size=50 << 20, max_in_memory=max_in_memory)
    answer = json.loads(out)
    assert answer["column"] == "id"
    assert answer["values"] == _expected_unique([r[0] for r in rows])
    assert answer["distinct"] == tally.distinct == 997


def test_unique_of_messy_values_keeps_them_as_parsed(tmp_path: Path) -> None:
    out, _ = _run(MESSY.encode("utf-8"), OperationSpec("unique", column="note"), tmp_path)
    assert json.loads(out) == {"column": "note", "distinct": 3, "values": [
        {"value": "two\r\nlines", "count": 2}, {"value": "x", "count": 2},
        {"value": "other", "count": 1}]}


NUMBERS = b"name,score,lang\na,7.5,fr\nb,10,en\nc,9,fr\nd,,fr\ne,n/a,fr\nf, 8 ,FR\n"


@pytest.mark.parametrize(("conditions", "match", "names"), [
    ([("score", "gte", "7.5")], "all", ["a", "b", "c", "e", "f"]),  # 10 > 7.5; "n/a" as text
    ([("score", "gt", "9")], "all", ["b", "e"]),  # "n/a" > "9" as text
    ([("score", "gte", "7.5"), ("lang", "eq", "fr")], "all", ["a", "c", "e"]),
    ([("score", "eq", "10.0"), ("lang", "eq", "FR")], "any", ["b", "f"]),
    ([("score", "empty", "")], "all", ["d"]),
    ([("score", "not_empty", ""), ("lang", "ne", "fr")], "all", ["b", "f"]),
    ([("name", "contains", "b")], "all", ["b"]),
    ([("lang", "startswith", "F")], "all", ["f"]),
    ([("score", "lt", "8")], "all", ["a", "d"]),  # "" < "8" as text
    ([("score", "lte", "8")], "all", ["a", "d", "f"]),
])
def test_filter(tmp_path: Path, conditions: list[tuple[str, str, str]], match: str,
                names: list[str]) -> None:
    spec = OperationSpec("filter", conditions=tuple(Condition(*c) for c in conditions),
                         match=match)
    out, tally = _run(NUMBERS, spec, tmp_path)
    rows = _csv(out)
    assert rows[0] == ["name", "score", "lang"]
    assert [r[0] for r in rows[1:]] == names
    assert tally.rows_out == len(names)


def test_filter_answers_alike_when_it_remembers_next_to_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(row_steps, "ANSWERS_KEPT", 1)
    monkeypatch.setattr(row_steps, "ANSWER_CHARS_KEPT", 1)
    spec = OperationSpec("filter", conditions=(Condition("score", "gte", "7.5"),
                                               Condition("lang", "ne", "en")))
    out, _ = _run(NUMBERS, spec, tmp_path)
    assert [r[0] for r in _csv(out)[1:]] == ["a", "c", "e", "f"]


@pytest.mark.parametrize("rows", [
    [["a", "b,c", 'say "hi"', "x\ny", "cr\r", "", " sp ", "é"]],
    [[""], ["x"]],  # a row of one empty field is written as ""
    [["", ""], [",", '"'], ["\r\n", "\t"]],
])
def test_results_are_written_as_csv_writer_writes_them(rows: list[list[str]]) -> None:
    out = io.StringIO()
    csv.writer(out).writerows(rows)
    assert row_steps.csv_rows(rows) == out.getvalue()


def test_numbers() -> None:
    assert as_number(" 7.50 ") == 7.5 and as_number("-3") == -3 and as_number("1e3") == 1000
    assert as_number("9007199254740993") == 9007199254740993  # exact, not a double
    for text in ("", "nan", "inf", "1_000", "7.5.1", "0x10", "abc"):
        assert as_number(text) is None


HEADER = ["title", "Year", "title ", "lang"]


@pytest.mark.parametrize(("spec", "message"), [
    (OperationSpec("sort"), "unknown operation 'sort'"),
    (OperationSpec("dedupe", columns=("nope",)), "unknown column 'nope'"),
    (OperationSpec("dedupe", columns=("lang", "lang")), "named twice"),
    (OperationSpec("dedupe", column="lang"), "dedupe does not take column"),
    (OperationSpec("unique"), "unique needs the column"),
    (OperationSpec("unique", column="Title"), "in the header 2 times"),
    (OperationSpec("filter"), "filter needs conditions"),
    (OperationSpec("filter", conditions=(Condition("lang", "like", "x"),)), "unknown op 'like'"),
    (OperationSpec("filter", conditions=(Condition("lang", "eq", "x"),), match="most"),
     "unknown match 'most'"),
    (OperationSpec("filter", conditions=(Condition("lang", "empty", "x"),)), "takes no value"),
    (OperationSpec("filter", conditions=(Condition("lang", "eq", "x" * 2000),)), "at most"),
    (OperationSpec("filter", conditions=(Condition("lang", "eq", "x"),) * 33), "at most 32"),
])
def test_requests_are_checked_against_the_header(spec: OperationSpec, message: str) -> None:
    with pytest.raises(InvalidArgument) as refused:
        plan(spec, HEADER)
    assert message in str(refused.value)


def test_column_names_match_exactly_then_trimmed_and_case_folded() -> None:
    assert column_index(HEADER, "title ") == 2
    assert column_index(HEADER, "year") == 1
    assert column_index(HEADER, " LANG") == 3


def test_a_utf16_file_with_bom_is_read(tmp_path: Path) -> None:
    data = codecs.BOM_UTF16_LE + "a\tb\r\n1\t2\r\n1\t2\r\n".encode("utf-16-le")
    out, tally = _run(data, OperationSpec("dedupe"), tmp_path)
    assert out == b"a,b\r\n1,2\r\n" and tally.duplicates == 1


def _chunks(data: bytes) -> Iterator[bytes]:
    yield data
