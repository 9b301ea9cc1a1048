"""Unit tests for services/upload/service.py display_name: a client's file name, display only."""

from __future__ import annotations

import pytest

from services.upload.service import display_name


@pytest.mark.parametrize(("client_name", "shown"), [
    ("movies.csv", "movies.csv"),
    ("../../etc/passwd", "passwd"),
    ("/etc/passwd", "passwd"),
    ("..\\..\\Windows\\win.ini", "win.ini"),
    ("C:\\Users\\ana\\Top 10k movies.csv", "Top 10k movies.csv"),
    ("mixed/dirs\\and/movies.csv", "movies.csv"),
    ("mov\x00ies\r\n.csv", "movies.csv"),
    ("\x1b[31mred.csv", "[31mred.csv"),
    ("evil\u202ecsv.exe", "evilcsv.exe"),  # right-to-left override removed
    ("  spaced name.csv  ", "spaced name.csv"),
    ("Amélie \u2013 films.csv", "Amélie \u2013 films.csv"),
])
def test_display_name(client_name: str, shown: str) -> None:
    assert display_name(client_name) == shown


@pytest.mark.parametrize("client_name", ["", "   ", "dir/", "a\\b\\", "\x00\x01\n", "../"])
def test_nothing_left_falls_back_to_upload_csv(client_name: str) -> None:
    assert display_name(client_name) == "upload.csv"


def test_long_names_are_cut_to_255_characters() -> None:
    name = display_name("x" * 300 + ".csv")
    assert len(name) == 255
    assert name == "x" * 255


def test_result_never_contains_separators_or_control_characters() -> None:
    hostile = "a/b\\c\x00d\te\nf\x7fg\u0085h.csv"
    name = display_name(hostile)
    assert "/" not in name and "\\" not in name
    assert all(ch.isprintable() for ch in name)
    assert name == "cdefgh.csv"
