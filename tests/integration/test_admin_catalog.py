"""The administrators' catalog and task routes: DELETE /movies/{id} and GET /admin/tasks, through
the gateway and, for a user, straight on the service's port too."""

from __future__ import annotations

import grpc
import pytest

from devstack.stack import Stack
from marquee.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from marquee.task.v1 import task_pb2, task_pb2_grpc
from tests.integration.conftest import Api, User

# A release year no other module's movies have, so that its page holds this module's movie only.
YEAR = 1875
MOVIES = (f"74300001,Lost Reel,Drama,en,x,1.0,{YEAR}-01-01,5.0,3\n"
          f"74300002,Kept Reel,Drama,en,x,1.0,{YEAR + 1}-01-01,5.0,3\n")
HEADER = "id,title,genre,original_language,overview,popularity,release_date,vote_average," \
         "vote_count\n"


@pytest.fixture(scope="module")
def owner(api: Api) -> User:
    return api.register("owner")


@pytest.fixture(scope="module")
def owners_tasks(api: Api, owner: User) -> list[str]:
    """Two finished tasks of `owner`, newest first: one done, one failed (no header)."""
    done = api.upload_ok(owner, (HEADER + MOVIES).encode())
    assert api.wait_task(owner, done)["status"] == "done"
    failed = api.upload_ok(owner, b"\n\n")
    assert api.wait_task(owner, failed)["status"] == "failed"
    return [failed, done]


def test_an_administrator_deletes_a_movie_and_no_page_shows_it_again(
        api: Api, admin: User, owner: User, owners_tasks: list[str]) -> None:
    def page() -> tuple[list[str], str]:
        r = api.get("/movies", headers=owner.headers, params={"year": YEAR})
        assert r.status_code == 200, r.text
        return [m["_id"] for m in r.json()], r.headers["x-cache"]

    # The page is cached (an import elsewhere in the session may retire it: ask again).
    assert next(p for p in (page() for _ in range(5)) if p[1] == "hit") == (["74300001"], "hit")
    r = api.http.delete(api.url("/movies/74300001"), headers=admin.headers, timeout=60)
    assert r.status_code == 200, r.text
    assert r.json() == {"movie_id": "74300001", "message": "movie 74300001 deleted"}
    assert page() == ([], "miss")
    assert api.get("/movies/74300001", headers=owner.headers).status_code == 404
    r = api.http.delete(api.url("/movies/74300001"), headers=admin.headers, timeout=60)
    assert r.status_code == 404, r.text
    assert r.json()["message"] == "no movie with id '74300001'"
    r = api.http.delete(api.url("/movies/" + "x" * 101), headers=admin.headers, timeout=60)
    assert r.status_code == 400, r.text


def test_a_user_may_not_delete_a_movie(api: Api, stack: Stack, owner: User,
                                       owners_tasks: list[str]) -> None:
    r = api.http.delete(api.url("/movies/74300002"), headers=owner.headers, timeout=60)
    assert r.status_code == 403, r.text
    with grpc.insecure_channel(f"127.0.0.1:{stack.ports['catalog']}") as channel:
        stub = catalog_pb2_grpc.CatalogServiceStub(channel)
        with pytest.raises(grpc.RpcError) as refused:
            stub.DeleteMovie(catalog_pb2.DeleteMovieRequest(movie_id="74300002"),
                             metadata=owner.metadata, timeout=30)
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_an_administrator_lists_every_users_tasks_by_owner_and_status(
        api: Api, admin: User, owner: User, owners_tasks: list[str]) -> None:
    user_id = api.get(f"/task/{owners_tasks[0]}", headers=owner.headers).json()["user_id"]
    r = api.get("/admin/tasks", headers=admin.headers, params={"user_id": user_id})
    assert r.status_code == 200, r.text
    listed = r.json()["tasks"]
    assert [t["task_id"] for t in listed][-2:] == owners_tasks
    assert {(t["user_id"], t["user"]) for t in listed} == {(user_id, owner.username)}
    r = api.get("/admin/tasks", headers=admin.headers,
                params={"user_id": user_id, "status": "failed"})
    assert [t["task_id"] for t in r.json()["tasks"]] == owners_tasks[:1]

    first = api.get("/admin/tasks", headers=admin.headers, params={"page_size": 1}).json()
    assert len(first["tasks"]) == 1 and first["next_page_token"]
    second = api.get("/admin/tasks", headers=admin.headers,
                     params={"page_size": 1, "page_token": first["next_page_token"]}).json()
    assert second["tasks"][0]["task_id"] != first["tasks"][0]["task_id"]

    r = api.get("/admin/tasks", headers=admin.headers, params={"status": "finished"})
    assert r.status_code == 400 and "status must be one of" in r.json()["message"], r.text
    r = api.get("/admin/tasks", headers=admin.headers, params={"user_id": "u" * 100})
    assert r.status_code == 400, r.text


def test_a_user_may_not_list_every_users_tasks(api: Api, stack: Stack, owner: User) -> None:
    assert api.get("/admin/tasks", headers=owner.headers).status_code == 403
    with grpc.insecure_channel(f"127.0.0.1:{stack.ports['task']}") as channel:
        stub = task_pb2_grpc.TaskServiceStub(channel)
        with pytest.raises(grpc.RpcError) as refused:
            stub.ListAllTasks(task_pb2.ListAllTasksRequest(), metadata=owner.metadata,
                              timeout=30)
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
