"""Movies have owners: two users' overlapping files, the owner's and an administrator's
re-imports, two users importing the same new movies at once, and the provenance a movie shows."""

from __future__ import annotations

import csv
import io
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from pymongo import MongoClient

from devstack.stack import Stack
from tests.integration.conftest import Api, User, catalog_count, generated_csv

BASE = 74_000_000  # alice's 30 movies; bob's file overlaps her last 10
RACE_BASE = 74_100_000


def retitled(data: bytes, prefix: str, reverse: bool = False) -> bytes:
    """The CSV with every title prefixed, so that whose version is stored shows; `reverse`
    writes the rows last first."""
    rows = list(csv.reader(io.StringIO(data.decode())))
    body = [[row[0], f"{prefix} {row[1]}", *row[2:]] for row in rows[1:]]
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows([rows[0], *(body[::-1] if reverse else body)])
    return out.getvalue().encode()


def _ingest(api: Api, user: User, data: bytes) -> dict[str, Any]:
    task = api.wait_task(user, api.upload_ok(user, data), timeout=120)
    assert task["status"] == "done", task
    assert task["rows_read"] == task["rows_imported"] + task["rows_rejected"] + \
        task["rows_skipped"], task
    return task


def _stored(stack: Stack, lo: int, hi: int) -> list[dict[str, Any]]:
    """The stored documents of the movies lo..hi-1, read in the database itself."""
    client: MongoClient = MongoClient(stack.env["MONGO_URI"])
    try:
        movies = client[stack.settings.mongo_db]["catalog_movies"]
        return list(movies.find({"_id": {"$in": [str(n) for n in range(lo, hi)]}}))
    finally:
        client.close()


def _movie(api: Api, user: User, movie_id: int) -> dict[str, Any]:
    r = api.get(f"/movies/{movie_id}", headers=user.headers)
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_another_users_overlapping_rows_are_skipped_and_their_movies_untouched(
        api: Api, stack: Stack) -> None:
    alice, bob = api.register("alice"), api.register("bob")
    _ingest(api, alice, retitled(generated_csv(30, BASE), "Alice"))
    before = {n: _movie(api, alice, n) for n in range(BASE + 20, BASE + 30)}

    task = _ingest(api, bob, retitled(generated_csv(20, BASE + 20), "Bob"))
    assert (task["rows_read"], task["rows_imported"], task["rows_skipped"],
            task["rows_rejected"]) == (20, 10, 10, 0)
    for n, movie in before.items():
        assert _movie(api, bob, n) == movie  # title, owner and time of change all kept
        assert movie["title"].startswith("Alice ") and movie["imported_by"] == alice.username
    assert _movie(api, bob, BASE + 30)["imported_by"] == bob.username
    assert catalog_count(stack, BASE, BASE + 40) == 40

    reason = f"movie {BASE + 20} belongs to another user (imported by {alice.username}); skipped"
    assert task["rejected_sample"][0] == {"line": 2, "reason": reason,
                                          "raw": task["rejected_sample"][0]["raw"]}
    assert task["rejected_sample"][0]["raw"].startswith(f"{BASE + 20},Bob ")
    r = api.get(f"/task/{task['task_id']}/errors", headers=bob.headers)
    assert r.status_code == 200, r.text
    exported = list(csv.DictReader(io.StringIO(r.text)))
    assert [int(e["line"]) for e in exported] == list(range(2, 12))
    assert exported[0]["reason"] == reason
    assert exported[9]["raw"].startswith(f"{BASE + 29},Bob ")

    # The owner's own re-upload replaces, as it always did.
    again = _ingest(api, alice, retitled(generated_csv(30, BASE), "Alice Again"))
    assert (again["rows_imported"], again["rows_skipped"]) == (30, 0)
    assert _movie(api, alice, BASE + 25)["title"].startswith("Alice Again ")


def test_an_administrators_import_replaces_and_keeps_the_first_importer(
        api: Api, admin: User) -> None:
    carol = api.register("carol")
    _ingest(api, carol, retitled(generated_csv(5, BASE + 100), "Carol"))
    first = _movie(api, carol, BASE + 100)

    task = _ingest(api, admin, retitled(generated_csv(5, BASE + 100), "Fixed"))
    assert (task["rows_imported"], task["rows_skipped"]) == (5, 0)
    fixed = _movie(api, carol, BASE + 100)
    assert fixed["title"].startswith("Fixed ")
    assert (fixed["imported_by"], fixed["updated_by"]) == (carol.username, admin.username)
    assert fixed["updated_at"] > first["updated_at"]
    # Still carol's: she replaces it, another user cannot.
    assert _ingest(api, carol, retitled(generated_csv(5, BASE + 100), "Carol"))[
        "rows_imported"] == 5
    assert _ingest(api, api.register("dave"), generated_csv(5, BASE + 100))[
        "rows_skipped"] == 5


def test_two_users_importing_the_same_new_movies_at_once_own_one_each(
        api: Api, stack: Stack) -> None:
    rows = 300
    erin, frank = api.register("erin"), api.register("frank")
    files = {erin.username: retitled(generated_csv(rows, RACE_BASE), erin.username),
             frank.username: retitled(generated_csv(rows, RACE_BASE), frank.username,
                                      reverse=True)}
    with ThreadPoolExecutor(2) as pool:
        task_ids = list(pool.map(lambda u: api.upload_ok(u, files[u.username]), [erin, frank]))
    tasks = [api.wait_task(u, t, timeout=120) for u, t in zip([erin, frank], task_ids,
                                                              strict=True)]
    for task in tasks:
        assert task["status"] == "done", task
        assert task["rows_imported"] + task["rows_skipped"] == rows, task
    assert sum(t["rows_imported"] for t in tasks) == rows
    assert sum(t["rows_skipped"] for t in tasks) == rows
    stored = _stored(stack, RACE_BASE, RACE_BASE + rows)
    assert len(stored) == rows
    owned = {t["user"]: t["rows_imported"] for t in tasks}
    for doc in stored:  # each movie is its owner's version, and counted as theirs
        assert doc["title"].startswith(doc["imported_by"] + " ")
        owned[doc["imported_by"]] -= 1
    assert owned == {erin.username: 0, frank.username: 0}


def test_every_movie_shows_who_imported_it_and_when_it_last_changed(api: Api) -> None:
    gina = api.register("gina")
    _ingest(api, gina, generated_csv(3, BASE + 200))
    movie = _movie(api, gina, BASE + 200)
    assert (movie["imported_by"], movie["updated_by"]) == (gina.username, gina.username)
    changed = datetime.fromisoformat(movie["updated_at"])
    assert abs((datetime.now(UTC).replace(tzinfo=None) - changed).total_seconds()) < 300
    assert "imported_by_id" not in movie
    r = api.get(f"/v1/movies/{BASE + 200}", headers=gina.headers)
    assert r.status_code == 200, r.text
    typed = r.json()
    assert (typed["imported_by"], typed["updated_at"], typed["updated_by"]) == (
        gina.username, movie["updated_at"], gina.username)
    listed = api.all_movies(gina, year=movie["release_date"][:4])
    assert next(m for m in listed if m["_id"] == str(BASE + 200)) == movie
