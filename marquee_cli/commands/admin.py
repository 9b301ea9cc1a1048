"""admin ...: users, roles, accounts, everyone's tasks, movies. The server checks that the
caller is an enabled administrator (PERMISSION_DENIED, exit code 6, otherwise)."""

from __future__ import annotations

import sys
from enum import StrEnum
from typing import Annotated

import typer

from marquee.auth.v1 import auth_pb2, auth_pb2_grpc
from marquee.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from marquee.task.v1 import task_pb2, task_pb2_grpc
from marquee_cli.commands.tasks import JSON_HELP, LIMIT_HELP, PAGE_TOKEN_HELP
from marquee_cli.context import connection, say, stdout
from marquee_cli.errors import CliError
from marquee_cli.exit_codes import ExitCode
from marquee_cli.formatting import tasks_table, user_details, users_table
from marquee_cli.listing import next_page_hint, print_json_page, show_page


class Role(StrEnum):
    admin = "admin"
    user = "user"


class Status(StrEnum):
    pending = "pending"
    processing = "processing"
    done = "done"
    failed = "failed"
    cancelled = "cancelled"


admin_app = typer.Typer(
    no_args_is_help=True,
    help="""Administration (administrators only).

\b
Examples:
  marquee admin users --search alice
  marquee admin set-role 64f0c0ffee admin
  marquee admin disable 64f0c0ffee
  marquee admin tasks --status failed
  marquee admin delete-movie 278 --yes
""",
)


@admin_app.command("users")
def users(
    ctx: typer.Context,
    search: Annotated[
        str, typer.Option("--search", "-s", help="Part of a username or email.")
    ] = "",
    limit: Annotated[
        int | None, typer.Option("--limit", "-l", min=1, max=100, help=LIMIT_HELP)
    ] = None,
    page_token: Annotated[str, typer.Option("--page-token", help=PAGE_TOKEN_HELP)] = "",
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
) -> None:
    """List users, by username.

    \b
    Example:
      marquee admin users --search example.com
    """
    conn = connection(ctx)
    page = conn.call(
        conn.stub(auth_pb2_grpc.AuthServiceStub).ListUsers,
        auth_pb2.ListUsersRequest(search=search, page_size=limit or 0, page_token=page_token),
    )
    if as_json:
        print_json_page("users", page.users, page.next_page_token, total_size=page.total_size)
        return
    stdout.print(users_table(page.users))
    say(f"[dim]{page.total_size:,} users match[/dim]")
    next_page_hint(page.next_page_token)


def _update(ctx: typer.Context, request: auth_pb2.UpdateUserRequest, done: str) -> None:
    conn = connection(ctx)
    profile = conn.call(conn.stub(auth_pb2_grpc.AuthServiceStub).UpdateUser, request)
    stdout.print(user_details(profile))
    say(done)


UserId = Annotated[
    str, typer.Argument(metavar="USER_ID", help="The user's id (`marquee admin users`).")
]


@admin_app.command("set-role")
def set_role(
    ctx: typer.Context,
    user_id: UserId,
    role: Annotated[Role, typer.Argument(metavar="ROLE", help="admin or user.")],
) -> None:
    """Make a user an administrator, or an ordinary user again.

    It takes effect at the user's next token refresh at the latest.

    \b
    Example:
      marquee admin set-role 64f0c0ffee admin
    """
    _update(
        ctx,
        auth_pb2.UpdateUserRequest(user_id=user_id, role=role.value),
        f"Role set to {role.value}.",
    )


@admin_app.command("disable")
def disable(ctx: typer.Context, user_id: UserId) -> None:
    """Disable an account: it cannot log in, and its sessions end.

    \b
    Example:
      marquee admin disable 64f0c0ffee
    """
    _update(
        ctx,
        auth_pb2.UpdateUserRequest(user_id=user_id, disabled=True),
        "Disabled; the account's sessions have ended.",
    )


@admin_app.command("enable")
def enable(ctx: typer.Context, user_id: UserId) -> None:
    """Enable a disabled account again.

    \b
    Example:
      marquee admin enable 64f0c0ffee
    """
    _update(ctx, auth_pb2.UpdateUserRequest(user_id=user_id, disabled=False), "Enabled.")


@admin_app.command("tasks")
def all_tasks(
    ctx: typer.Context,
    user: Annotated[
        str, typer.Option("--user", "-u", help="Only this user's tasks (their id).")
    ] = "",
    status: Annotated[
        Status | None, typer.Option("--status", help="Only tasks in this status.")
    ] = None,
    limit: Annotated[
        int | None, typer.Option("--limit", "-l", min=1, max=100, help=LIMIT_HELP)
    ] = None,
    page_token: Annotated[str, typer.Option("--page-token", help=PAGE_TOKEN_HELP)] = "",
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
) -> None:
    """List every user's tasks, newest first.

    \b
    Examples:
      marquee admin tasks --status processing
      marquee admin tasks --user 64f0c0ffee --json
    """
    conn = connection(ctx)
    page = conn.call(
        conn.stub(task_pb2_grpc.TaskServiceStub).ListAllTasks,
        task_pb2.ListAllTasksRequest(
            user_id=user,
            status=status.value if status else "",
            page_size=limit or 0,
            page_token=page_token,
        ),
    )
    show_page("tasks", page.tasks, page.next_page_token, as_json=as_json,
              table=lambda tasks: tasks_table(tasks, with_owner=True), empty="No tasks match.")


@admin_app.command("delete-movie")
def delete_movie(
    ctx: typer.Context,
    movie_id: Annotated[str, typer.Argument(metavar="MOVIE_ID", help="The movie's id.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete a movie from the catalog (and its votes).

    \b
    Example:
      marquee admin delete-movie 278 --yes
    """
    if not yes:
        if not sys.stdin.isatty():
            raise CliError(
                "deleting a movie needs --yes when not run at a terminal", ExitCode.USAGE
            )
        typer.confirm(f"Delete movie {movie_id} and its votes?", abort=True)
    conn = connection(ctx)
    answer = conn.call(
        conn.stub(catalog_pb2_grpc.CatalogServiceStub).DeleteMovie,
        catalog_pb2.DeleteMovieRequest(movie_id=movie_id),
    )
    say(answer.message or f"Deleted movie {movie_id}.")


def register_commands(app: typer.Typer) -> None:
    app.add_typer(admin_app, name="admin")
