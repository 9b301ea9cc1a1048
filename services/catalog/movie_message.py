"""A movie as the catalog's proto message and back: what the ingestion worker sends and what
the catalog answers with."""

from __future__ import annotations

from datetime import datetime

from marquee.catalog.v1 import catalog_pb2
from services.catalog.records import Movie
from services.common.errors import InvalidArgument

_OPTIONAL = ("popularity", "vote_average", "vote_count")


def movie_message(movie: Movie) -> catalog_pb2.Movie:
    message = catalog_pb2.Movie(
        id=movie.id, title=movie.title, genre=movie.genre,
        original_language=movie.original_language, overview=movie.overview,
        release_date=movie.release_date.isoformat() if movie.release_date else "",
        extra=movie.extra, upvotes=movie.upvotes, downvotes=movie.downvotes,
    )
    for name in _OPTIONAL:  # unset, not 0, when unknown
        if (value := getattr(movie, name)) is not None:
            setattr(message, name, value)
    if (p := movie.provenance) is not None:
        message.imported_by = p.imported_by
        message.updated_at = p.updated_at.isoformat() if p.updated_at else ""
        message.updated_by = p.updated_by
    return message


def movie_from_message(message: catalog_pb2.Movie) -> Movie:
    """The movie a message carries; its provenance fields and vote counts are not read: the
    catalog records who imports a movie from the import's importer and keeps the counts the
    ratings service sends, never what a message claims."""
    release = None
    if message.release_date:
        try:
            release = datetime.fromisoformat(message.release_date)
        except ValueError:
            raise InvalidArgument(f"movie {message.id}: release_date must be ISO 8601") from None
    return Movie(
        id=message.id, title=message.title, original_language=message.original_language.lower(),
        overview=message.overview, genre=list(message.genre), release_date=release,
        popularity=message.popularity if message.HasField("popularity") else None,
        vote_average=message.vote_average if message.HasField("vote_average") else None,
        vote_count=message.vote_count if message.HasField("vote_count") else None,
        extra=dict(message.extra),
    )
