"""CatalogService over gRPC, and the REST JSON shape of a movie."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
from google.api import httpbody_pb2

from marquee.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from services.catalog.movie_message import movie_from_message, movie_message
from services.catalog.records import Importer, Movie, Provenance
from services.catalog.repository import movie_document
from services.catalog.service import CatalogService, MovieQuery, validate
from services.common.rest import json_body

# Stored fields the REST JSON leaves out or shows in another form.
_NOT_SHOWN = ("release_year", "extra", "imported_by_id", "imported_by", "updated_at",
              "updated_by")


def _query(request: catalog_pb2.ListMoviesRequest) -> MovieQuery:
    def opt(name: str) -> int | None:
        return getattr(request, name) if request.HasField(name) else None

    return validate(page=opt("page"), limit=opt("limit"), year=opt("year"),
                    language=request.language, sort_field=request.sort_field,
                    sort_order=request.sort_order, page_token=request.page_token,
                    search=request.search if request.HasField("search") else None)


def rest_json(movie: Movie) -> dict[str, Any]:
    """A movie as the REST contract shows it, the stored document: `_id`, ISO `release_date`,
    its vote counts, the extra columns beside the fields, and its provenance: who imported it
    first (a username: the owner's user id stays inside) and when and by whom it last changed
    (null for a movie stored before the catalog kept them). The fields only search reads (its
    words, the weighted rating) are not shown."""
    doc = movie_document(movie)
    out = {k: v for k, v in doc.items() if k not in _NOT_SHOWN}
    out["release_date"] = movie.release_date.isoformat() if movie.release_date else None
    out["upvotes"] = movie.upvotes
    out["downvotes"] = movie.downvotes
    p = movie.provenance or Provenance()
    out["imported_by"] = p.imported_by or None
    out["updated_at"] = p.updated_at.isoformat() if p.updated_at else None
    out["updated_by"] = p.updated_by or None
    for key, value in movie.extra.items():
        out.setdefault(key, value)
    return out


class CatalogServicer(catalog_pb2_grpc.CatalogServiceServicer):
    def __init__(self, service: CatalogService) -> None:
        self._service = service

    def ListMovies(self, request: catalog_pb2.ListMoviesRequest, context: grpc.ServicerContext
                   ) -> catalog_pb2.ListMoviesResponse:
        page = self._service.browse(_query(request), with_total=True)
        return catalog_pb2.ListMoviesResponse(
            movies=[movie_message(m) for m in page.movies],
            total_size=page.total_size or 0,
            next_page_token=page.next_page_token,
        )

    def ListMoviesJson(self, request: catalog_pb2.ListMoviesRequest,
                       context: grpc.ServicerContext) -> httpbody_pb2.HttpBody:
        page = self._service.browse(_query(request), with_total=False)
        headers = [("x-cache", "hit" if page.cached else "miss")]
        if page.next_page_token:
            headers.append(("x-next-page-token", page.next_page_token))
        context.send_initial_metadata(headers)
        return json_body([rest_json(m) for m in page.movies])

    def GetMovie(self, request: catalog_pb2.GetMovieRequest, context: grpc.ServicerContext
                 ) -> catalog_pb2.Movie:
        return movie_message(self._service.get(request.movie_id))

    def GetMovieJson(self, request: catalog_pb2.GetMovieRequest, context: grpc.ServicerContext
                     ) -> httpbody_pb2.HttpBody:
        return json_body(rest_json(self._service.get(request.movie_id)))

    def ImportMovies(self, request_iterator: Iterator[catalog_pb2.ImportMoviesRequest],
                     context: grpc.ServicerContext) -> Iterator[catalog_pb2.ImportMoviesResponse]:
        for batch in request_iterator:
            importer = Importer(user_id=batch.importer.user_id,
                                username=batch.importer.username,
                                is_admin=batch.importer.is_admin)
            result = self._service.import_batch([movie_from_message(m) for m in batch.movies],
                                                importer)
            yield catalog_pb2.ImportMoviesResponse(
                inserted=result.inserted, updated=result.replaced,
                skipped=[catalog_pb2.SkippedMovie(movie_id=movie_id, owner=owner)
                         for movie_id, owner in result.skipped.items()])

    def DeleteMovie(self, request: catalog_pb2.DeleteMovieRequest,
                    context: grpc.ServicerContext) -> catalog_pb2.DeleteMovieResponse:
        self._service.delete(request.movie_id)
        return catalog_pb2.DeleteMovieResponse(movie_id=request.movie_id,
                                               message=f"movie {request.movie_id} deleted")

    def CheckMovies(self, request: catalog_pb2.CheckMoviesRequest, context: grpc.ServicerContext
                    ) -> catalog_pb2.CheckMoviesResponse:
        return catalog_pb2.CheckMoviesResponse(
            existing_ids=self._service.check_movies(list(request.movie_ids)))

    def SetVoteCounts(self, request: catalog_pb2.SetVoteCountsRequest,
                      context: grpc.ServicerContext) -> catalog_pb2.SetVoteCountsResponse:
        return catalog_pb2.SetVoteCountsResponse(applied=self._service.set_vote_counts(
            request.movie_id, request.upvotes, request.downvotes, request.version))

