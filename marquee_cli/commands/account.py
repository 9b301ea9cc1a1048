"""register, login, logout, whoami."""

from __future__ import annotations

import sys
import time
from typing import Annotated

import typer

from marquee.auth.v1 import auth_pb2, auth_pb2_grpc
from marquee_cli.context import connection, say, stdout
from marquee_cli.errors import CliError, not_logged_in
from marquee_cli.exit_codes import ExitCode
from marquee_cli.formatting import human_duration, user_details

PASSWORD_STDIN_HELP = "Read the password from the first line of stdin (for scripts)."


def _password(from_stdin: bool, confirm: bool) -> str:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise CliError("--password-stdin: no password on stdin", ExitCode.USAGE)
        return password
    return str(typer.prompt("Password", hide_input=True, confirmation_prompt=confirm))


def register(
    ctx: typer.Context,
    username: Annotated[
        str, typer.Argument(metavar="USERNAME", help="The new account's username.")
    ],
    email: Annotated[str, typer.Option("--email", "-e", prompt=True, help="Email address.")],
    name: Annotated[
        str, typer.Option("--name", "-n", help="Display name (default: the username).")
    ] = "",
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help=PASSWORD_STDIN_HELP)
    ] = False,
) -> None:
    """Create an account and log in to it.

    \b
    Examples:
      marquee register alice --email alice@example.com
      echo "$PW" | marquee register alice -e alice@example.com --password-stdin
    """
    conn = connection(ctx)
    password = _password(password_stdin, confirm=True)
    tokens = conn.call(
        conn.stub(auth_pb2_grpc.AuthServiceStub).Register,
        auth_pb2.RegisterRequest(
            username=username, password=password, email=email, name=name or username
        ),
        auth=False,
    )
    conn.save_tokens(username, tokens)
    say(f"Registered and logged in as [bold]{username}[/bold] at {conn.url}.")


def login(
    ctx: typer.Context,
    username: Annotated[
        str | None, typer.Argument(metavar="USERNAME", help="Your username (asked when left out).")
    ] = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help=PASSWORD_STDIN_HELP)
    ] = False,
) -> None:
    """Log in; the session is kept for this --url in your config directory.

    The tokens go to $XDG_CONFIG_HOME/marquee/sessions.json (~/.config/marquee), mode 0600.
    The short-lived access token is renewed with the refresh token as needed, so a login lasts
    until the session ends on the server or you log out.

    \b
    Examples:
      marquee login alice
      echo "$PW" | marquee login alice --password-stdin
      marquee --url http://gateway.example:8000 login alice
    """
    conn = connection(ctx)
    name = username or str(typer.prompt("Username"))
    password = _password(password_stdin, confirm=False)
    tokens = conn.call(
        conn.stub(auth_pb2_grpc.AuthServiceStub).Login,
        auth_pb2.LoginRequest(username=name, password=password),
        auth=False,
    )
    conn.save_tokens(name, tokens)
    say(f"Logged in as [bold]{name}[/bold] at {conn.url}.")


def logout(
    ctx: typer.Context,
    everywhere: Annotated[
        bool, typer.Option("--all", help="End every session of your account, not just this.")
    ] = False,
) -> None:
    """End the session and forget its tokens.

    Access tokens already issued stay valid until they expire (minutes).

    \b
    Examples:
      marquee logout
      marquee logout --all
    """
    conn = connection(ctx)
    session = conn.store.get(conn.url)
    if session is None:
        say(f"Not logged in at {conn.url}.")
        return
    auth = conn.stub(auth_pb2_grpc.AuthServiceStub)
    try:
        if everywhere:
            answer = conn.call(auth.Logout, auth_pb2.LogoutRequest(all=True))
        else:
            answer = conn.call(
                auth.Logout, auth_pb2.LogoutRequest(refresh_token=session.refresh_token), auth=False
            )
    finally:
        # Forgotten locally even when the server could not be told: the user asked to log out.
        with conn.store.locked():
            conn.store.remove(conn.url)
    ended = answer.sessions_ended
    say(f"Logged out of {conn.url} ({ended} session{'s' if ended != 1 else ''} ended).")


def whoami(ctx: typer.Context) -> None:
    """Show who you are logged in as (asks the server).

    \b
    Example:
      marquee whoami
    """
    conn = connection(ctx)
    if conn.store.get(conn.url) is None:
        raise not_logged_in(conn.url)
    profile = conn.call(conn.stub(auth_pb2_grpc.AuthServiceStub).GetMe, auth_pb2.GetMeRequest())
    stdout.print(user_details(profile))
    session = conn.session()
    left = session.refresh_expires_at - time.time()
    say(f"[dim]at {conn.url}; session renewable for {human_duration(left)}[/dim]")


def register_commands(app: typer.Typer) -> None:
    app.command("register")(register)
    app.command("login")(login)
    app.command("logout")(logout)
    app.command("whoami")(whoami)
