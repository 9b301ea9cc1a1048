"""Real files are messy: each shape ends in a clear outcome, and nothing is lost or corrupted.

Most files here are TMDB rows in another form (BOM, CRLF, other encodings, reordered columns):
ingesting them again must leave those movies exactly as the clean file stored them.
"""

from __future__ import annotations

import csv
import io
import os
from typing import Any

import pytest

from devstack.stack import Stack
from tests.integration.conftest import TMDB, Api, User, catalog_count

with open(TMDB, newline="", encoding="utf-8") as _f:
    _ROWS = list(csv.reader(_f))
HEADER, BODY = _ROWS[0], _ROWS[2:]  # skip the placeholder row


def _csv(rows: list[list[str]], newline: str = "\n") -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator=newline).writerows(rows)
    return out.getvalue()


def _latin1_rows(n: int) -> list[list[str]]:
    """Rows with non-ASCII text that Latin-1 can carry (accented titles and overviews)."""
    picked = []
    for row in BODY:
        text = "".join(row)
        if any(ord(c) > 127 for c in text):
            try:
                text.encode("latin-1")
            except UnicodeEncodeError:
                continue
            picked.append(row)
        if len(picked) == n:
            return picked
    raise AssertionError("not enough Latin-1 rows in the sample file")


@pytest.fixture(scope="module")
def user(api: Api, tmdb_ingested: dict[str, Any]) -> User:
    """The TMDB file's owner, logged in afresh: these files carry its movies again, and only
    their owner's import replaces them (another user's rows would be skipped)."""
    owner = tmdb_ingested["owner"]
    return api.login(owner.username, owner.password)


def _ingest(api: Api, user: User, data: bytes, name: str = "messy.csv") -> dict[str, Any]:
    return api.wait_task(user, api.upload_ok(user, data, name))


def _movie(api: Api, user: User, movie_id: str) -> dict[str, Any]:
    r = api.get(f"/movies/{movie_id}", headers=user.headers)
    assert r.status_code == 200, r.text
    return dict(r.json())


def _unchanged(api: Api, user: User, rows: list[list[str]]) -> None:
    for row in rows:
        movie = _movie(api, user, row[0])
        assert movie["title"] == row[1]
        assert movie["overview"] == row[4]
        assert movie["genre"] == [g for g in row[2].split(",") if g]


def test_bom_crlf_and_untidy_header(api: Api, user: User) -> None:
    rows = BODY[:40]
    header = [f"  {h.upper()} " for h in HEADER]
    data = "\ufeff" + _csv([header, *rows], "\r\n")
    task = _ingest(api, user, data.encode("utf-8"))
    assert task["status"] == "done", task
    assert (task["rows_read"], task["rows_imported"], task["rows_rejected"]) == (40, 40, 0)
    _unchanged(api, user, rows)


@pytest.mark.parametrize("encoding", ["cp1252", "latin-1", "utf-16"])
def test_other_encodings_are_decoded_not_mangled(api: Api, user: User, encoding: str) -> None:
    rows = _latin1_rows(25)
    task = _ingest(api, user, _csv([HEADER, *rows]).encode(encoding), f"{encoding}.csv")
    assert task["status"] == "done", task
    assert task["rows_imported"] == 25
    _unchanged(api, user, rows)


def test_reordered_and_extra_columns(api: Api, user: User) -> None:
    order = [8, 7, 6, 5, 4, 3, 2, 1, 0]
    rows = BODY[100:130]
    header = [HEADER[i] for i in order] + ["director"]
    data = _csv([header, *[[r[i] for i in order] + ["Someone"] for r in rows]])
    task = _ingest(api, user, data.encode())
    assert task["status"] == "done" and task["rows_imported"] == 30
    _unchanged(api, user, rows)
    assert _movie(api, user, rows[0][0])["director"] == "Someone"


def test_bad_rows_are_rejected_with_line_and_reason_the_rest_imported(api: Api,
                                                                      user: User) -> None:
    head = "id,title,genre,original_language,overview,popularity,release_date,vote_average," \
           "vote_count\n"
    lines = [
        "9300001,Good One,Drama,en,Fine,1.0,2010-01-01,7.0,10",       # line 2
        "9300002,Bad Date,Drama,en,x,1.0,2010-13-45,7.0,10",          # line 3
        "9300003,Bad Rating,Drama,en,x,1.0,2010-01-01,eleven,10",     # line 4
        "",                                                           # line 5 (blank)
        "9300004,Too Few Fields,Drama",                               # line 6
        "9300005,,Drama,en,no title,1.0,2010-01-01,7.0,10",           # line 7
        '9300006,"Multi\nLine Title",Drama,en,x,1.0,2010-01-01,7.0,10',  # lines 8-9
        "9300007,Rating Too High,Drama,en,x,1.0,2010-01-01,11.5,10",   # line 10
        "9300008,Good Two,Drama,en,Fine,1.0,2010-01-02,7.0,10",       # line 11
    ]
    task = _ingest(api, user, (head + "\n".join(lines) + "\n").encode())
    assert task["status"] == "done", task
    assert (task["rows_read"], task["rows_imported"], task["rows_rejected"]) == (8, 3, 5)
    reasons = {r["line"]: r["reason"] for r in task["rejected_sample"]}
    assert set(reasons) == {3, 4, 6, 7, 10}
    assert "release_date" in reasons[3] and "vote_average" in reasons[4]
    assert "fields" in reasons[6] and "title" in reasons[7] and "vote_average" in reasons[10]
    r = api.get(f"/task/{task['task_id']}/errors", headers=user.headers)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    exported = list(csv.DictReader(io.StringIO(r.text)))
    assert [int(e["line"]) for e in exported] == [3, 4, 6, 7, 10]
    assert exported[0]["raw"].startswith("9300002,Bad Date")
    assert _movie(api, user, "9300006")["title"] == "Multi\nLine Title"


def test_duplicate_rows_and_blank_lines_do_not_duplicate_movies(api: Api, user: User,
                                                                stack: Stack) -> None:
    rows = BODY[200:210]
    data = _csv([HEADER, *rows, *rows]) + "\n\n\n" + _csv(rows)
    task = _ingest(api, user, data.encode())
    assert task["status"] == "done" and task["rows_read"] == 30
    for row in rows:
        assert catalog_count(stack, int(row[0]), int(row[0]) + 1) == 1


def test_other_column_set_without_ids_uses_title_and_date(api: Api, user: User) -> None:
    data = "Movie Title;Released;Rating\nZeta Film;2015-05-05;6.1\nZeta Film;2015-05-05;6.3\n" \
           "Zeta Film;2016-05-05;5.0\n"
    task = _ingest(api, user, data.encode())
    assert task["status"] == "done", task
    assert task["rows_imported"] == 3
    r = api.get("/movies", headers=user.headers, params={"year": 2015, "limit": 1000})
    zetas = [m for m in r.json() if m["title"] == "Zeta Film"]
    assert len(zetas) == 1 and zetas[0]["vote_average"] == 6.3


@pytest.mark.parametrize("data,phrase", [
    (os.urandom(4096) + b"\x00" * 64, "binary"),
    (b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8, "binary"),
    (b"1,2,3\n4,5,6\n", "no usable header"),
    (b"\n\n   \n", "blank"),
    (b'id,title\n1,"never closed' + b"x" * (2 << 20), "quote"),
])
def test_unusable_files_fail_with_a_reason(api: Api, user: User, data: bytes,
                                           phrase: str) -> None:
    task = _ingest(api, user, data)
    assert task["status"] == "failed", task
    assert phrase in task["error"]
    assert task["rows_imported"] == 0


def test_header_only_file_is_done_with_nothing_imported(api: Api, user: User) -> None:
    task = _ingest(api, user, (",".join(HEADER) + "\n").encode())
    assert task["status"] == "done" and task["rows_read"] == 0
