"""Native gRPC: generated stubs through the gateway and against each service, and grpcurl."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from devstack import binaries
from devstack.stack import ROOT, Stack
from marquee.auth.v1 import auth_pb2, auth_pb2_grpc
from marquee.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from marquee.task.v1 import task_pb2, task_pb2_grpc
from marquee.upload.v1 import upload_pb2, upload_pb2_grpc
from services.common import jobs, registry
from services.common.access import SERVICE_KEY_HEADER
from tests.integration.conftest import Api, User

PROTOSET = ROOT / "build" / "gen" / "marquee.pb"


def _chunks(data: bytes, size: int = 64 * 1024) -> Iterator[upload_pb2.UploadFileRequest]:
    yield upload_pb2.UploadFileRequest(
        metadata=upload_pb2.FileMetadata(filename="grpc.csv", content_type="text/csv"))
    for i in range(0, len(data), size):
        yield upload_pb2.UploadFileRequest(chunk=data[i:i + size])


CSV = (b"id,title,release_date,vote_average,original_language\n"
       b"9100001,Grpc Movie One,1999-01-01,5.5,en\n9100002,Grpc Movie Two,1999-06-01,6.5,en\n")


def test_register_login_upload_and_watch_over_grpc(gateway_channel: grpc.Channel) -> None:
    auth = auth_pb2_grpc.AuthServiceStub(gateway_channel)
    name = "grpc" + Path(__file__).stem[-4:] + str(id(gateway_channel))[-6:]
    registered = auth.Register(auth_pb2.RegisterRequest(
        username=name, password="pa55word", email=f"{name}@example.com", name="G"))
    assert registered.message == "User registered successfully"
    login = auth.Login(auth_pb2.LoginRequest(username=name, password="pa55word"))
    metadata = (("authorization", f"Bearer {login.access_token}"),)

    upload = upload_pb2_grpc.UploadServiceStub(gateway_channel)
    response = upload.UploadFile(_chunks(CSV), metadata=metadata)
    assert response.task_id and response.size_bytes == len(CSV)

    tasks = task_pb2_grpc.TaskServiceStub(gateway_channel)
    events = list(tasks.WatchTask(task_pb2.WatchTaskRequest(task_id=response.task_id),
                                  metadata=metadata, timeout=120))
    assert events[-1].status == "done"
    assert events[-1].rows_imported == 2
    listed = tasks.ListTasks(task_pb2.ListTasksRequest(), metadata=metadata)
    assert [t.task_id for t in listed.tasks] == [response.task_id]


def test_list_movies_carries_total_and_page_tokens(gateway_channel: grpc.Channel,
                                                    tmdb_ingested: dict[str, Any],
                                                    api: Api) -> None:
    user: User = api.register()
    catalog = catalog_pb2_grpc.CatalogServiceStub(gateway_channel)
    first = catalog.ListMovies(catalog_pb2.ListMoviesRequest(language="fr", limit=20,
                                                             sort_field="rating"),
                               metadata=user.metadata)
    assert first.total_size >= 20 and len(first.movies) == 20 and first.next_page_token
    # Walking by token gives exactly what page/limit gives.
    by_token: list[str] = []
    token = ""
    while True:
        page = catalog.ListMovies(catalog_pb2.ListMoviesRequest(
            language="fr", limit=20, sort_field="rating", page_token=token),
            metadata=user.metadata)
        by_token.extend(m.id for m in page.movies)
        token = page.next_page_token
        if not token:
            break
    by_page: list[str] = []
    for page in range(1, first.total_size // 100 + 2):
        by_page.extend(m.id for m in catalog.ListMovies(catalog_pb2.ListMoviesRequest(
            language="fr", limit=100, page=page, sort_field="rating"),
            metadata=user.metadata).movies)
    assert by_token == by_page
    assert len(by_token) == first.total_size


def test_bad_argument_is_invalid_argument(gateway_channel: grpc.Channel, api: Api) -> None:
    user = api.register()
    catalog = catalog_pb2_grpc.CatalogServiceStub(gateway_channel)
    with pytest.raises(grpc.RpcError) as err:
        catalog.ListMovies(catalog_pb2.ListMoviesRequest(limit=-1), metadata=user.metadata)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "limit" in (err.value.details() or "")


@pytest.mark.parametrize("target", ["gateway", "catalog"])
def test_no_token_is_unauthenticated_at_the_gateway_and_at_the_service(
        stack: Stack, target: str) -> None:
    port = stack.ports[target]
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        catalog = catalog_pb2_grpc.CatalogServiceStub(channel)
        for metadata in ((), (("authorization", "Bearer not.a.jwt"),)):
            with pytest.raises(grpc.RpcError) as err:
                catalog.ListMovies(catalog_pb2.ListMoviesRequest(), metadata=metadata)
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_internal_methods_are_not_exposed(stack: Stack, gateway_channel: grpc.Channel,
                                          api: Api) -> None:
    user = api.register()
    request = task_pb2.CreateTaskRequest(user="x", kind="ingest_csv", file_id="f")
    with pytest.raises(grpc.RpcError) as err:
        task_pb2_grpc.TaskServiceStub(gateway_channel).CreateTask(request, metadata=user.metadata)
    assert err.value.code() in (grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.NOT_FOUND)
    with grpc.insecure_channel(f"127.0.0.1:{stack.ports['task']}") as channel:
        with pytest.raises(grpc.RpcError) as err:
            task_pb2_grpc.TaskServiceStub(channel).CreateTask(request, metadata=user.metadata)
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_a_task_of_a_kind_no_job_runs_is_refused(stack: Stack) -> None:
    key = ((SERVICE_KEY_HEADER, stack.settings.service_key()),)
    with (grpc.insecure_channel(f"127.0.0.1:{stack.ports['task']}") as channel,
          pytest.raises(grpc.RpcError) as err):
        task_pb2_grpc.TaskServiceStub(channel).CreateTask(task_pb2.CreateTaskRequest(
            user="u1", kind="dedupe_csv", file_id="f1"), metadata=key, timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    known = ", ".join(sorted(jobs.JOB_NAMES))
    assert f"unknown task kind 'dedupe_csv'; known kinds: {known}" in str(err.value.details())


def _grpcurl(*args: str) -> Any:
    out = subprocess.run([binaries.grpcurl(), "-plaintext", *args], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_grpcurl_through_the_gateway_with_the_protoset(stack: Stack, api: Api,
                                                       tmdb_ingested: dict[str, Any]) -> None:
    user = api.register()
    out = _grpcurl("-protoset", str(PROTOSET), "-H", f"authorization: Bearer {user.token}",
                   "-d", '{"year": 1994, "limit": 3, "sort_field": "rating", "sort_order": "desc"}',
                   f"127.0.0.1:{stack.ports['gateway']}",
                   "marquee.catalog.v1.CatalogService/ListMovies")
    body = json.loads(out)
    assert len(body["movies"]) == 3 and int(body["totalSize"]) >= 3
    assert body["movies"][0]["title"] == "The Shawshank Redemption"


@pytest.mark.parametrize("service", [s.name for s in registry.SERVICES])
def test_grpcurl_reflection_against_each_service(stack: Stack, service: str) -> None:
    listed = _grpcurl(f"127.0.0.1:{stack.ports[service]}", "list")
    assert f"marquee.{service}.v1." in listed
    assert "grpc.health.v1.Health" in listed
    health = json.loads(_grpcurl(f"127.0.0.1:{stack.ports[service]}",
                                 "grpc.health.v1.Health/Check"))
    assert health["status"] == "SERVING"
