"""Movies have owners: the catalog's import rule on an in-memory repository (who may replace a
stored movie, what is skipped and reported), the provenance a movie shows, and deleting one."""

from __future__ import annotations

from datetime import datetime
from typing import cast

import pytest
import redis

from marquee.catalog.v1 import catalog_pb2
from services.catalog.cache import QueryCache
from services.catalog.movie_message import movie_from_message, movie_message
from services.catalog.records import Importer, ImportResult, Movie
from services.catalog.server import rest_json
from services.catalog.service import CatalogService, validate
from services.common.errors import InvalidArgument, NotFound
from tests.unit.fakes import Clock, FakeMovies, FakeRedis

ALICE = Importer("u1", "alice")
BOB = Importer("u2", "bob")
ROOT = Importer("u0", "root", is_admin=True)


def _movie(movie_id: str, title: str) -> Movie:
    return Movie(movie_id, title, original_language="en", release_date=datetime(2001, 2, 3))


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def movies(clock: Clock) -> FakeMovies:
    return FakeMovies(clock)


@pytest.fixture
def catalog(movies: FakeMovies) -> CatalogService:
    service = CatalogService(movies)
    service.import_batch([_movie("1", "Alice One"), _movie("2", "Alice Two")], ALICE)
    return service


def test_a_new_movie_belongs_to_its_first_importer(catalog: CatalogService, clock: Clock
                                                   ) -> None:
    provenance = catalog.get("1").provenance
    assert provenance is not None
    assert (provenance.imported_by_id, provenance.imported_by, provenance.updated_by) == (
        "u1", "alice", "alice")
    assert provenance.updated_at == clock.now


def test_another_users_import_skips_the_movies_it_does_not_own(catalog: CatalogService
                                                               ) -> None:
    result = catalog.import_batch([_movie("1", "Bob One"), _movie("3", "Bob Three")], BOB)
    assert result == ImportResult(inserted=1, replaced=0, skipped={"1": "alice"})
    assert catalog.get("1").title == "Alice One"
    assert catalog.get("1").provenance == catalog.get("2").provenance  # untouched
    assert catalog.get("3").provenance.imported_by == "bob"  # type: ignore[union-attr]


def test_the_owner_replaces_their_own_movies(catalog: CatalogService, clock: Clock) -> None:
    clock.advance(60)
    assert catalog.import_batch([_movie("1", "Alice Again")], ALICE) == ImportResult(0, 1)
    movie = catalog.get("1")
    assert movie.title == "Alice Again"
    assert movie.provenance is not None and movie.provenance.updated_at == clock.now


def test_an_administrators_import_replaces_any_movie_and_keeps_its_owner(
        catalog: CatalogService) -> None:
    assert catalog.import_batch([_movie("1", "Fixed"), _movie("9", "Root Nine")], ROOT) == \
        ImportResult(inserted=1, replaced=1)
    fixed = catalog.get("1")
    assert fixed.title == "Fixed"
    assert fixed.provenance is not None
    assert (fixed.provenance.imported_by, fixed.provenance.updated_by) == ("alice", "root")
    # Still alice's: she may replace it, bob may not.
    assert catalog.import_batch([_movie("1", "Bob")], BOB).skipped == {"1": "alice"}
    assert catalog.import_batch([_movie("1", "Alice")], ALICE).replaced == 1


def test_a_movie_stored_before_owners_is_claimed_by_the_next_importer() -> None:
    movies = FakeMovies()
    catalog = CatalogService(movies)
    # What the catalog stored before it kept owners: the movie and when it changed.
    movies.put_document({"_id": "7", "title": "Old", "updated_at": datetime(2024, 1, 1)})
    assert catalog.get("7").provenance.imported_by == ""  # type: ignore[union-attr]
    assert catalog.import_batch([_movie("7", "Bob Seven")], BOB) == ImportResult(0, 1)
    assert catalog.import_batch([_movie("7", "Alice Seven")], ALICE).skipped == {"7": "bob"}
    assert catalog.get("7").title == "Bob Seven"


def test_an_import_names_its_importer() -> None:
    with pytest.raises(InvalidArgument, match="importer"):
        CatalogService(FakeMovies()).import_batch([_movie("1", "x")], Importer("", "nobody"))


QUERY = validate(page=None, limit=None, year=None, language="", sort_field="", sort_order="",
                 page_token="")


def test_a_batch_that_changes_nothing_keeps_the_cached_pages(catalog: CatalogService,
                                                             movies: FakeMovies) -> None:
    cached = CatalogService(movies, QueryCache(cast(redis.Redis, FakeRedis())))
    cached.browse(QUERY, with_total=False)
    cached.import_batch([_movie("1", "Bob One")], BOB)  # all skipped
    assert cached.browse(QUERY, with_total=False).cached


def test_a_deleted_movie_is_gone_and_no_cached_page_shows_it(catalog: CatalogService,
                                                              movies: FakeMovies) -> None:
    cached = CatalogService(movies, QueryCache(cast(redis.Redis, FakeRedis())))
    assert [m.id for m in cached.browse(QUERY, with_total=False).movies] == ["1", "2"]
    cached.delete("1")
    page = cached.browse(QUERY, with_total=False)
    assert not page.cached and [m.id for m in page.movies] == ["2"]
    with pytest.raises(NotFound):
        cached.get("1")
    with pytest.raises(NotFound, match="no movie with id '1'"):
        cached.delete("1")


@pytest.mark.parametrize("movie_id", ["", "x" * 101])
def test_a_movie_id_out_of_bounds_is_refused_before_the_store_is_asked(
        catalog: CatalogService, movie_id: str) -> None:
    with pytest.raises(InvalidArgument, match="movie_id"):
        catalog.delete(movie_id)


def test_rest_and_proto_show_the_owners_name_and_the_last_change(catalog: CatalogService,
                                                                 clock: Clock) -> None:
    catalog.import_batch([_movie("1", "Fixed")], ROOT)
    shown = rest_json(catalog.get("1"))
    assert (shown["imported_by"], shown["updated_by"]) == ("alice", "root")
    assert shown["updated_at"] == clock.now.isoformat()
    assert "imported_by_id" not in shown  # the owner's id stays inside
    message = movie_message(catalog.get("1"))
    assert (message.imported_by, message.updated_at, message.updated_by) == (
        "alice", clock.now.isoformat(), "root")
    unowned = rest_json(Movie("5", "Never stored"))
    assert (unowned["imported_by"], unowned["updated_at"], unowned["updated_by"]) == (
        None, None, None)


def test_provenance_in_an_imported_message_is_not_believed() -> None:
    claimed = catalog_pb2.Movie(id="1", title="T", imported_by="root", updated_by="root")
    assert movie_from_message(claimed).provenance is None
