"""CatalogService over gRPC, and the REST JSON shape of a movie."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

import grpc
from google.api import httpbody_pb2

from marquee.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from services.catalog.service import CatalogService, MovieQuery, validate
from services.common.access import Access
from services.common.errors import InvalidArgument
from services.common.rest import json_body

_S = "/marquee.catalog.v1.CatalogService/"
POLICY = {_S + "ImportMovies": Access.INTERNAL}
_OPTIONAL = ("popularity", "vote_average", "vote_count")
_TEXT = ("title", "original_language", "overview")


def _query(request: catalog_pb2.ListMoviesRequest) -> MovieQuery:
    def opt(name: str) -> int | None:
        return getattr(request, name) if request.HasField(name) else None

    return validate(page=opt("page"), limit=opt("limit"), year=opt("year"),
                    language=request.language, sort_field=request.sort_field,
                    sort_order=request.sort_order, page_token=request.page_token)


def doc_from_proto(movie: catalog_pb2.Movie) -> dict[str, Any]:
    release = None
    if movie.release_date:
        try:
            release = datetime.fromisoformat(movie.release_date)
        except ValueError:
            raise InvalidArgument(f"movie {movie.id}: release_date must be ISO 8601") from None
    doc: dict[str, Any] = {
        "_id": movie.id,
        **{f: getattr(movie, f) for f in _TEXT},
        "original_language": movie.original_language.lower(),
        "genre": list(movie.genre),
        "release_date": release,
        "release_year": release.year if release else None,
        **{f: getattr(movie, f) if movie.HasField(f) else None for f in _OPTIONAL},
    }
    if movie.extra:
        doc["extra"] = dict(movie.extra)
    return doc


def proto_from_doc(doc: dict[str, Any]) -> catalog_pb2.Movie:
    release = doc.get("release_date")
    movie = catalog_pb2.Movie(
        id=doc["_id"],
        **{f: doc.get(f) or "" for f in _TEXT},
        genre=doc.get("genre") or [],
        release_date=release.isoformat() if release else "",
        extra=doc.get("extra") or {},
    )
    for f in _OPTIONAL:
        if doc.get(f) is not None:
            setattr(movie, f, doc[f])
    return movie


def rest_json(doc: dict[str, Any]) -> dict[str, Any]:
    """A movie document as the REST contract shows it: `_id`, ISO `release_date`, other fields."""
    release = doc.get("release_date")
    out = {k: v for k, v in doc.items() if k not in ("release_year", "extra")}
    out["release_date"] = release.isoformat() if release else None
    for key, value in (doc.get("extra") or {}).items():
        out.setdefault(key, value)
    return out


class CatalogServicer(catalog_pb2_grpc.CatalogServiceServicer):
    def __init__(self, service: CatalogService) -> None:
        self._service = service

    def ListMovies(self, request: catalog_pb2.ListMoviesRequest, context: grpc.ServicerContext
                   ) -> catalog_pb2.ListMoviesResponse:
        page = self._service.browse(_query(request), with_total=True)
        return catalog_pb2.ListMoviesResponse(
            movies=[proto_from_doc(d) for d in page.movies],
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
        return json_body([rest_json(d) for d in page.movies])

    def GetMovie(self, request: catalog_pb2.GetMovieRequest, context: grpc.ServicerContext
                 ) -> catalog_pb2.Movie:
        return proto_from_doc(self._service.get(request.movie_id))

    def GetMovieJson(self, request: catalog_pb2.GetMovieRequest, context: grpc.ServicerContext
                     ) -> httpbody_pb2.HttpBody:
        return json_body(rest_json(self._service.get(request.movie_id)))

    def ImportMovies(self, request_iterator: Iterator[catalog_pb2.ImportMoviesRequest],
                     context: grpc.ServicerContext) -> Iterator[catalog_pb2.ImportMoviesResponse]:
        for batch in request_iterator:
            inserted, updated = self._service.import_batch([doc_from_proto(m) for m in
                                                            batch.movies])
            yield catalog_pb2.ImportMoviesResponse(inserted=inserted, updated=updated)
