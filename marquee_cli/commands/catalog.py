"""movies, rate, recommend: the catalog as a user browses and votes on it."""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Annotated, Any

import grpc
import typer

from marquee.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from marquee.ratings.v1 import ratings_pb2, ratings_pb2_grpc
from marquee.recommendations.v1 import recommendations_pb2, recommendations_pb2_grpc
from marquee_cli.commands.tasks import JSON_HELP, PAGE_TOKEN_HELP
from marquee_cli.connection import Connection
from marquee_cli.context import connection, say, stdout
from marquee_cli.errors import CliError
from marquee_cli.exit_codes import ExitCode
from marquee_cli.formatting import movies_table, recommendations_table
from marquee_cli.listing import next_page_hint, print_json_page
from marquee_cli.live import with_spinner


class SortField(StrEnum):
    release_date = "release_date"
    rating = "rating"
    score = "score"
    relevance = "relevance"


class SortOrder(StrEnum):
    asc = "asc"
    desc = "desc"


class Vote(StrEnum):
    up = "up"
    down = "down"
    clear = "clear"


RATING_TYPES = {Vote.up: "UPVOTE", Vote.down: "DOWNVOTE"}


def movies(
    ctx: typer.Context,
    search: Annotated[
        str | None,
        typer.Option("--search", "-s", help="Words that the title or overview must all hold."),
    ] = None,
    year: Annotated[int | None, typer.Option("--year", "-y", help="Year of release.")] = None,
    language: Annotated[
        str, typer.Option("--language", "-L", help="Original language, e.g. en.")
    ] = "",
    sort: Annotated[
        SortField | None,
        typer.Option(
            "--sort", help="Sort field (default: relevance with --search, else release_date)."
        ),
    ] = None,
    order: Annotated[
        SortOrder | None, typer.Option("--order", help="asc (default) or desc.")
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", "-l", min=1, max=1000, help="Movies per page.")
    ] = 20,
    page: Annotated[
        int | None, typer.Option("--page", "-p", min=1, help="1-based page number.")
    ] = None,
    page_token: Annotated[str, typer.Option("--page-token", help=PAGE_TOKEN_HELP)] = "",
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
) -> None:
    """Browse the catalog: filter, search, sort, page.

    \b
    Examples:
      marquee movies --year 1994 --sort rating --order desc --limit 5
      marquee movies --search "space station" --language en
      marquee movies --json --limit 100 | jq '.movies[].title'
    """
    conn = connection(ctx)
    request = catalog_pb2.ListMoviesRequest(
        limit=limit,
        language=language,
        page_token=page_token,
        sort_field=sort.value if sort else "",
        sort_order=order.value if order else "",
    )
    if year is not None:
        request.year = year
    if search is not None:
        request.search = search
    if page is not None:
        request.page = page
    answer = conn.call(conn.stub(catalog_pb2_grpc.CatalogServiceStub).ListMovies, request)
    if as_json:
        print_json_page("movies", answer.movies, answer.next_page_token,
                        total_size=answer.total_size)
        return
    if not answer.movies:
        say("No movies match.")
        return
    stdout.print(movies_table(answer.movies))
    first = (page - 1) * limit + 1 if page and not page_token else None
    shown = (
        f"{first}-{first + len(answer.movies) - 1} of " if first else f"{len(answer.movies)} of "
    )
    say(f"[dim]{shown}{answer.total_size:,} movies[/dim]")
    next_page_hint(answer.next_page_token)


def _own_rating(conn: Connection, movie_id: str) -> ratings_pb2.Rating | None:
    """The caller's rating of the movie, if any (the list filtered by movie_id)."""
    found = conn.call(
        conn.stub(ratings_pb2_grpc.RatingsServiceStub).ListRatings,
        ratings_pb2.ListRatingsRequest(movie_id=movie_id, page_size=1),
    )
    return found.ratings[0] if found.ratings else None


def rate(
    ctx: typer.Context,
    movie_id: Annotated[
        str, typer.Argument(metavar="MOVIE", help="The movie's id (`marquee movies`).")
    ],
    vote: Annotated[
        Vote, typer.Argument(metavar="VOTE", help="up, down, or clear to take your vote back.")
    ],
) -> None:
    """Vote a movie up or down, or clear your vote.

    \b
    Examples:
      marquee rate 278 up
      marquee rate 278 down
      marquee rate 278 clear
    """
    conn = connection(ctx)
    ratings = conn.stub(ratings_pb2_grpc.RatingsServiceStub)
    existing = _own_rating(conn, movie_id)
    if vote is Vote.clear:
        if existing is None:
            say(f"You have no vote on movie {movie_id}: nothing to clear.")
            return
        conn.call(ratings.DeleteRating, ratings_pb2.DeleteRatingRequest(rating_id=existing.id))
        say(f"Cleared your vote on movie {movie_id}.")
        return
    wanted = RATING_TYPES[vote]
    if existing is None:
        try:
            conn.call(
                ratings.CreateRating,
                ratings_pb2.CreateRatingRequest(
                    rating=ratings_pb2.Rating(movie_id=movie_id, rating_type=wanted)
                ),
            )
            say(f"Voted {vote.value} on movie {movie_id}.")
            return
        except CliError as err:
            # Another client voted between the look-up and now: change that vote instead.
            if err.status != grpc.StatusCode.ALREADY_EXISTS:
                raise
            existing = _own_rating(conn, movie_id)
            if existing is None:
                raise
    if existing.rating_type == wanted:
        say(f"Your vote on movie {movie_id} is already {vote.value}.")
        return
    conn.call(
        ratings.UpdateRating,
        ratings_pb2.UpdateRatingRequest(
            rating_id=existing.id, rating=ratings_pb2.Rating(rating_type=wanted)
        ),
    )
    say(f"Changed your vote on movie {movie_id} to {vote.value}.")


def _json_body(body: Any) -> dict[str, Any]:
    try:
        value = json.loads(body.data or b"{}")
    except ValueError as exc:
        raise CliError(f"the server answered something that is not JSON: {exc}") from None
    return value if isinstance(value, dict) else {}


def recommend(
    ctx: typer.Context,
    genre: Annotated[
        list[str] | None,
        typer.Option("--genre", "-g", help="A genre; repeat for several (any of them)."),
    ] = None,
    year: Annotated[
        str, typer.Option("--year", "-y", help="A year or a range: 2001, 1990-2010.")
    ] = "",
    rating: Annotated[
        str, typer.Option("--rating", "-r", help="A rating or a range: 8, 7.5-9.")
    ] = "",
    language: Annotated[
        str, typer.Option("--language", "-L", help="Original language, e.g. en.")
    ] = "",
    limit: Annotated[
        int | None,
        typer.Option("--limit", "-l", min=1, max=100, help="How many (server default 10)."),
    ] = None,
    timeout: Annotated[
        float, typer.Option("--timeout", help="Seconds to wait for the computation.")
    ] = 300,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
) -> None:
    """Recommend movies, with the reasons for each.

    Options left out come from your stored preferences. The computation runs as a background
    task; this waits for it with a spinner.

    \b
    Examples:
      marquee recommend
      marquee recommend --genre Drama --genre Crime --year 1990-2010 --rating 8-10 --limit 5
    """
    conn = connection(ctx)
    stub = conn.stub(recommendations_pb2_grpc.RecommendationsServiceStub)
    request = recommendations_pb2.GetRecommendationsRequest(
        genre=genre or [], year=year, rating=rating, language=language
    )
    if limit is not None:
        request.limit = limit
    answer = _json_body(conn.call(stub.GetRecommendations, request))
    if "task_id" in answer:
        task_id = str(answer["task_id"])

        def poll() -> dict[str, Any] | None:
            state = _json_body(
                conn.call(
                    stub.GetRecommendationStatus,
                    recommendations_pb2.GetRecommendationStatusRequest(task_id=task_id),
                )
            )
            return state if state.get("status") in ("completed", "failed") else None

        try:
            final = with_spinner("Computing recommendations...", poll, timeout=timeout)
        except KeyboardInterrupt:
            raise CliError(
                f"stopped waiting; the computation (task {task_id}) goes on", ExitCode.INTERRUPTED
            ) from None
        if final is None:
            raise CliError(
                f"recommendations not ready after {timeout:.0f} s (task {task_id})",
                ExitCode.UNAVAILABLE,
            )
        if final["status"] == "failed":
            raise CliError(
                f"the recommendation task {task_id} failed: "
                f"{final.get('error', 'no reason given')}",
                ExitCode.TASK_FAILED,
            )
        answer = final
    items = list(answer.get("recommendations") or [])
    if as_json:
        stdout.print_json(json.dumps({"recommendations": items}))
        return
    if not items:
        say("Nothing to recommend for these constraints.")
        return
    stdout.print(recommendations_table(items))


def register_commands(app: typer.Typer) -> None:
    for command in (movies, rate, recommend):
        app.command(command.__name__)(command)
