"""The CLI's pure pieces: addresses, units, tables, filter conditions, --json."""

from __future__ import annotations

import json

import pytest
from rich.console import Console

from marquee.catalog.v1 import catalog_pb2
from marquee.task.v1 import task_pb2
from marquee_cli.conditions import parse_condition
from marquee_cli.endpoint import parse_endpoint
from marquee_cli.formatting import (
    human_bytes,
    human_duration,
    movies_table,
    operation_text,
    task_counts,
    tasks_table,
    year_of,
)
from marquee_cli.proto_json import to_plain


@pytest.mark.parametrize(("text", "url", "target", "tls"), [
    ("http://127.0.0.1:8000", "http://127.0.0.1:8000", "127.0.0.1:8000", False),
    ("127.0.0.1:18000/", "http://127.0.0.1:18000", "127.0.0.1:18000", False),
    ("https://marquee.example", "https://marquee.example:443", "marquee.example:443", True),
    ("http://[::1]:8000", "http://[::1]:8000", "[::1]:8000", False),
])
def test_parse_endpoint(text: str, url: str, target: str, tls: bool) -> None:
    endpoint = parse_endpoint(text)
    assert (endpoint.url, endpoint.target, endpoint.tls) == (url, target, tls)


@pytest.mark.parametrize("text", ["ftp://x:1", "http://h:1/api", "http://h:99999", "http://"])
def test_parse_endpoint_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_endpoint(text)


def test_units() -> None:
    assert human_bytes(512) == "512 B"
    assert human_bytes(3 * 1024 * 1024 + 1) == "3.0 MiB"
    assert human_bytes(5 << 40) == "5120.0 GiB"
    assert human_duration(None) == "-"
    assert human_duration(7.4) == "7s"
    assert human_duration(245) == "4:05"
    assert human_duration(3723) == "1:02:03"
    assert human_duration(-3) == "0s"
    assert year_of("1994-09-23T00:00:00") == "1994"
    assert year_of("") == ""


def test_task_counts_by_kind() -> None:
    ingest = task_pb2.Task(kind="ingest_csv", rows_imported=1200, rows_rejected=3)
    assert task_counts(ingest) == "1,200 imported, 3 rejected"
    dedupe = task_pb2.Task(kind="dedupe", rows_read=10, rows_out=8, duplicates=2)
    assert task_counts(dedupe) == "10 read, 8 out, 2 duplicates"


def test_operation_text() -> None:
    op = task_pb2.Operation(operation="filter", match="any", conditions=[
        task_pb2.Condition(column="year", op="gte", value="2000"),
        task_pb2.Condition(column="overview", op="empty")])
    assert operation_text(op) == "filter any: year gte 2000; overview empty"
    assert operation_text(task_pb2.Operation(operation="dedupe")) == "dedupe on all columns"


def _render(table: object) -> str:
    console = Console(width=200, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
    console.print(table)
    return console.export_text()


def test_tables_show_the_fields() -> None:
    movie = catalog_pb2.Movie(id="278", title="The Shawshank Redemption", genre=["Drama"],
                              release_date="1994-09-23T00:00:00", original_language="en",
                              vote_average=8.7, vote_count=24649, upvotes=3, downvotes=1)
    text = _render(movies_table([movie, catalog_pb2.Movie(id="1", title="Unknown")]))
    assert "The Shawshank Redemption" in text and "1994" in text and "8.7" in text
    assert "24649" in text and "3/1" in text
    task = task_pb2.Task(task_id="t1", kind="ingest_csv", status="done", user="alice",
                         original_name="m.csv", rows_imported=2)
    text = _render(tasks_table([task], with_owner=True))
    assert "t1" in text and "alice" in text and "2 imported, 0 rejected" in text


@pytest.mark.parametrize(("text", "column", "op", "value"), [
    ("vote_average >= 8", "vote_average", "gte", "8"),
    ("title contains 'star wars'", "title", "contains", "star wars"),
    ("overview empty", "overview", "empty", ""),
    ("original_language = en", "original_language", "eq", "en"),
    ("year GT 2000", "year", "gt", "2000"),
])
def test_parse_condition(text: str, column: str, op: str, value: str) -> None:
    c = parse_condition(text)
    assert (c.column, c.op, c.value) == (column, op, value)


@pytest.mark.parametrize("text", ["year", "year ~ 3", "year gte", "overview empty x", "a 'b"])
def test_parse_condition_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_condition(text)


def test_to_plain_keeps_numbers_and_nulls() -> None:
    movie = catalog_pb2.Movie(id="278", vote_count=24649, genre=["Drama"], extra={"k": "v"})
    plain = to_plain(movie)
    assert plain["vote_count"] == 24649  # not "24649", as the proto JSON mapping would say
    assert plain["vote_average"] is None and plain["popularity"] is None
    assert plain["genre"] == ["Drama"] and plain["extra"] == {"k": "v"}
    task = task_pb2.Task(task_id="t", bytes_total=5)
    task.created_at.FromSeconds(0)
    task.updated_at.FromSeconds(1_700_000_000)
    plain = to_plain(task)
    assert plain["bytes_total"] == 5 and plain["operation"] is None
    assert plain["updated_at"] == "2023-11-14T22:13:20Z" and plain["created_at"] is None
    json.dumps(plain)
