"""The files surface and the operations on files, through REST and gRPC, as a user drives them:
list, describe, download (bytes and sha256), delete (then 410), another user's file (404), the
storage quota (413), and dedupe, unique and filter on a messy file, each checked against an
answer computed here with the csv module, cancel included.

The stack keeps files FILE_RETENTION_SECONDS (8 s) after their task ended, so operations are
asked for right after the upload (the file is kept while they run) and results are read as soon
as their task is done. Last, a worker killed in the middle of an operation: it runs again, to
the exact result."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import signal
import time
from collections import Counter
from typing import Any

import grpc
import pytest

from devstack.stack import Stack
from marquee.task.v1 import task_pb2
from marquee.upload.v1 import upload_pb2, upload_pb2_grpc
from tests.integration.conftest import STORED_BYTES_QUOTA, Api, User

MIB = 1 << 20
# latin-1, ';', CRLF, a BOM-less header, quoted newlines, the same row quoted two ways, a blank
# line, and one malformed row (too few fields).
ROWS = [["name", "city", "score", "note"],
        ["José", "Zürich", "7.5", "line one\r\nline two"],
        ["Renée", "Genève", "10", "x"],
        ["José", "Zürich", "7.5", "line one\r\nline two"],
        ["Ana", "Zürich", "n/a", ""],
        ["Renée", "Genève", "9", "y"]]
MESSY = ('name;city;score;note\r\n'
         'José;Zürich;7.5;"line one\r\nline two"\r\n'
         'Renée;"Genève";10;x\r\n'
         '"José";"Zürich";"7.5";"line one\r\nline two"\r\n'
         '\r\n'
         'Ana;Zürich;n/a;\r\n'
         'broken;row\r\n'
         'Renée;Genève;9;y\r\n').encode("latin-1")


def _upload(api: Api, user: User, data: bytes, name: str = "messy.csv") -> dict[str, Any]:
    r = api.upload(user, data, name)
    assert r.status_code == 202, r.text
    return dict(r.json())


def _operate(api: Api, user: User, file_id: str, body: dict[str, Any]) -> str:
    r = api.post(f"/files/{file_id}/operations", headers=user.headers, json=body)
    assert r.status_code == 202, r.text
    assert r.json()["message"]
    return str(r.json()["task_id"])


def _result(api: Api, user: User, task_id: str) -> tuple[dict[str, Any], bytes, str]:
    task = api.wait_task(user, task_id)
    assert task["status"] == "done", task
    r = api.get(f"/task/{task_id}/result", headers=user.headers)
    assert r.status_code == 200, r.text
    assert "attachment" in r.headers["content-disposition"]
    return task, r.content, r.headers["content-type"]


def _rows(content: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(content.decode("utf-8"), newline="")))


def test_files_are_listed_described_downloaded_and_deleted(api: Api) -> None:
    alice, bob = api.register("files"), api.register("files")
    uploaded = _upload(api, alice, MESSY, "Café data.csv")
    file_id = uploaded["file_id"]
    listed = api.get("/files", headers=alice.headers)
    assert listed.status_code == 200
    (item,) = listed.json()
    assert item == api.get(f"/files/{file_id}", headers=alice.headers).json()
    assert {k: item[k] for k in ("file_id", "original_name", "size_bytes", "sha256",
                                 "encoding", "delimiter", "columns", "task_id", "deleted")} == {
        "file_id": file_id, "original_name": "Café data.csv", "size_bytes": len(MESSY),
        "sha256": hashlib.sha256(MESSY).hexdigest(), "encoding": "cp1252", "delimiter": ";",
        "columns": ROWS[0], "task_id": uploaded["task_id"], "deleted": False}
    assert item["uploaded_at"].endswith("Z")
    content = api.get(f"/files/{file_id}/content", headers=alice.headers)
    assert content.status_code == 200 and content.content == MESSY
    assert hashlib.sha256(content.content).hexdigest() == uploaded["sha256"]
    assert content.headers["content-type"].startswith("text/csv")
    assert "filename*=UTF-8''Caf%C3%A9%20data.csv" in content.headers["content-disposition"]
    # Another user's file is not found, whatever they try.
    for method, path in (("GET", ""), ("GET", "/content"), ("DELETE", "")):
        r = api.http.request(method, api.url(f"/files/{file_id}{path}"), headers=bob.headers,
                             timeout=30)
        assert r.status_code == 404, (method, path, r.text)
    r = api.post(f"/files/{file_id}/operations", headers=bob.headers,
                 json={"operation": "dedupe"})
    assert r.status_code == 404
    assert api.get("/files", headers=bob.headers).json() == []
    # Deleted: 204, the record stays marked, the bytes and operations are gone (410).
    r = api.http.delete(api.url(f"/files/{file_id}"), headers=alice.headers, timeout=30)
    assert r.status_code == 204 and r.content == b""
    assert api.get(f"/files/{file_id}", headers=alice.headers).json()["deleted"] is True
    assert api.get(f"/files/{file_id}/content", headers=alice.headers).status_code == 410
    r = api.post(f"/files/{file_id}/operations", headers=alice.headers,
                 json={"operation": "dedupe"})
    assert r.status_code == 410 and "deleted" in r.json()["message"]
    assert api.get("/files/not-a-file", headers=alice.headers).status_code == 404


def test_the_list_pages_newest_first(api: Api) -> None:
    user = api.register("pages")
    ids = [_upload(api, user, b"a,b\n1,2\n")["file_id"] for _ in range(3)]
    first = api.get("/files", headers=user.headers, params={"limit": 2})
    token = first.headers["x-next-page-token"]
    second = api.get("/files", headers=user.headers, params={"limit": 2, "page_token": token})
    assert [f["file_id"] for f in first.json() + second.json()] == ids[::-1]
    assert "x-next-page-token" not in second.headers
    assert api.get("/files", headers=user.headers, params={"limit": 500}).status_code == 400


def test_operations_on_a_messy_file_match_an_independent_answer(api: Api) -> None:
    user = api.register("ops")
    file_id = _upload(api, user, MESSY)["file_id"]
    dedupe = _operate(api, user, file_id, {"operation": "dedupe"})
    by_city = _operate(api, user, file_id, {"operation": "dedupe", "columns": ["city"]})
    unique = _operate(api, user, file_id, {"operation": "unique", "column": "city"})
    filtered = _operate(api, user, file_id, {
        "operation": "filter", "match": "all",
        "conditions": [{"column": "score", "op": "gte", "value": "9"},
                       {"column": "city", "op": "eq", "value": "Genève"}]})

    body = ROWS[1:]
    task, content, content_type = _result(api, user, dedupe)
    assert content_type.startswith("text/csv")
    firsts = [row for i, row in enumerate(body) if row not in body[:i]]
    assert _rows(content) == [ROWS[0], *firsts]
    assert task["kind"] == "dedupe" and task["operation"]["operation"] == "dedupe"
    assert task["result"]["rows_in"] == 6 and task["result"]["rows_rejected"] == 1
    assert (task["result"]["rows_out"], task["result"]["duplicates"]) == (len(firsts), 1)
    errors = api.get(f"/task/{dedupe}/errors", headers=user.headers).text
    assert "row has 2 fields but the header has 4" in errors and "broken,row" in errors

    _, content, _ = _result(api, user, by_city)
    kept = [row for i, row in enumerate(body) if row[1] not in {r[1] for r in body[:i]}]
    assert _rows(content) == [ROWS[0], *kept]

    task, content, content_type = _result(api, user, unique)
    assert content_type.startswith("application/json")
    counts = Counter(row[1] for row in body)
    assert json.loads(content) == {
        "column": "city", "distinct": len(counts),
        "values": [{"value": v, "count": n}
                   for v, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]}
    assert task["result"]["distinct"] == len(counts)

    _, content, _ = _result(api, user, filtered)
    assert _rows(content) == [ROWS[0], *[row for row in body if row[1] == "Genève"
                                         and float(row[2]) >= 9]]


@pytest.mark.parametrize(("body", "message"), [
    ({"operation": "sort"}, "unknown operation 'sort'"),
    ({"operation": "unique", "column": "rating"}, "unknown column 'rating'"),
    ({"operation": "filter", "conditions": [{"column": "city", "op": "like", "value": "x"}]},
     "unknown op 'like'"),
    ({"operation": "dedupe", "columns": ["city", "nope"]}, "unknown column 'nope'"),
])
def test_a_bad_operation_is_400_naming_what_is_wrong(api: Api, body: dict[str, Any],
                                                     message: str) -> None:
    user = api.register("bad")
    file_id = _upload(api, user, MESSY)["file_id"]
    r = api.post(f"/files/{file_id}/operations", headers=user.headers, json=body)
    assert r.status_code == 400 and message in r.json()["message"], r.text


def test_files_and_operations_over_grpc(api: Api, gateway_channel: grpc.Channel) -> None:
    user = api.register("grpc")
    file_id = _upload(api, user, MESSY)["file_id"]
    stub = upload_pb2_grpc.UploadServiceStub(gateway_channel)
    info = stub.DescribeFile(upload_pb2.DescribeFileRequest(file_id=file_id),
                             metadata=user.metadata)
    assert list(info.columns) == ROWS[0] and info.size_bytes == len(MESSY)
    data = b"".join(m.data for m in stub.DownloadFile(
        upload_pb2.DownloadFileRequest(file_id=file_id), metadata=user.metadata))
    assert data == MESSY
    accepted = stub.StartOperation(upload_pb2.StartOperationRequest(
        file_id=file_id, operation=task_pb2.Operation(operation="unique", column="name")),
        metadata=user.metadata)
    _, content, _ = _result(api, user, accepted.task_id)
    assert json.loads(content)["distinct"] == 3
    with pytest.raises(grpc.RpcError) as refused:
        stub.StartOperation(upload_pb2.StartOperationRequest(
            file_id=file_id, operation=task_pb2.Operation(operation="unique", column="x")),
            metadata=user.metadata)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]


def _junk(size: int) -> bytes:
    line = b"k,v\n" + b"".join(b"%07d,%s\n" % (i, b"x" * 40) for i in range(size // 49 + 1))
    return line[:size]


def test_the_storage_quota_is_413_with_what_is_used_and_allowed(api: Api) -> None:
    user = api.register("quota")
    half = STORED_BYTES_QUOTA // 2 - MIB
    first = _upload(api, user, _junk(half))["file_id"]
    _upload(api, user, _junk(half))
    r = api.upload(user, _junk(3 * MIB))
    assert r.status_code == 413, r.text
    assert f"your stored files take {2 * half} of the {STORED_BYTES_QUOTA} bytes" \
        in r.json()["message"]
    assert len(api.get("/files", headers=user.headers).json()) == 2  # nothing kept
    assert api.http.delete(api.url(f"/files/{first}"), headers=user.headers,
                           timeout=30).status_code == 204
    _upload(api, user, _junk(3 * MIB))  # room again


def test_an_operation_is_cancelled_as_an_import_is(api: Api) -> None:
    user = api.register("cancel")
    file_id = _upload(api, user, _junk(12 * MIB))["file_id"]
    task_id = _operate(api, user, file_id, {"operation": "dedupe", "columns": ["v"]})
    r = api.post(f"/task/{task_id}/cancel", headers=user.headers)
    assert r.status_code == 200, r.text
    task = api.wait_task(user, task_id)
    assert task["status"] == "cancelled", task
    r = api.get(f"/task/{task_id}/result", headers=user.headers)
    assert r.status_code == 400 and "cancelled" in r.json()["message"]
    time.sleep(0.1)


def _repeating(size: int) -> tuple[bytes, bytes, int, int]:
    """A file of about `size` bytes (quoted commas, quotes and line breaks) where row i repeats
    row i // 2 when i % 10 < 3; its dedupe as csv.writer writes it; its rows; their duplicates."""
    header = ["k", "v", "note"]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    rows: list[list[str]] = []
    while out.tell() < size:
        i = len(rows)
        j = i // 2 if i % 10 < 3 else i
        rows.append([str(j), f"v{j % 97}", f'note, {j}\n"two"' if j % 5 == 0 else "x" * 60])
        writer.writerow(rows[-1])
    expected = io.StringIO()
    csv.writer(expected).writerow(header)
    firsts = {tuple(row): row for row in reversed(rows)}  # each row's first occurrence
    csv.writer(expected).writerows(row for row in rows if firsts[tuple(row)] is row)
    return out.getvalue().encode(), expected.getvalue().encode(), len(rows), \
        len(rows) - len(firsts)


def test_a_worker_killed_mid_operation_runs_it_again_to_the_exact_result(api: Api,
                                                                         stack: Stack) -> None:
    user = api.register("opcrash")
    data, expected, rows, duplicates = _repeating(10 * MIB)  # twice over within the quota
    file_id = _upload(api, user, data, "repeats.csv")["file_id"]
    task_id = _operate(api, user, file_id, {"operation": "dedupe"})
    deadline = time.monotonic() + 60
    while (task := api.get(f"/task/{task_id}", headers=user.headers).json())["status"] \
            == "pending":
        assert time.monotonic() < deadline, task
        time.sleep(0.05)
    time.sleep(0.3)  # into the file
    task = api.get(f"/task/{task_id}", headers=user.headers).json()
    assert task["status"] == "processing", task
    for worker in ("worker", "worker2"):  # whichever holds the task dies
        stack.kill(worker, signal.SIGKILL)
    task = api.wait_task(user, task_id, timeout=240)
    assert task["status"] == "done", task
    assert task["attempts"] >= 2, task
    assert (task["result"]["rows_in"], task["result"]["rows_rejected"]) == (rows, 0)
    assert task["result"]["duplicates"] == duplicates
    r = api.get(f"/task/{task_id}/result", headers=user.headers)
    assert r.status_code == 200, r.text
    assert r.content == expected
    stack.wait_ready("worker")
    stack.wait_ready("worker2")
