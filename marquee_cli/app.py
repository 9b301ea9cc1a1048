"""The `marquee` command: the root options, every command, and the entry point."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import grpc
import typer

from marquee_cli.commands import account, admin, catalog, files, tasks
from marquee_cli.context import CliState
from marquee_cli.endpoint import DEFAULT_URL, URL_ENV, parse_endpoint
from marquee_cli.errors import CliError, rpc_failure
from marquee_cli.exit_codes import EXIT_CODES_HELP, ExitCode
from marquee_cli.token_store import TokenStore

DEBUG_ENV = "MARQUEE_DEBUG"

app = typer.Typer(
    name="marquee",
    no_args_is_help=True,
    add_completion=False,
    # click's plain help layout: it rewraps paragraphs to the terminal and keeps the
    # examples' lines (after \b) as written.
    rich_markup_mode=None,
    # Errors are one line (CliError); a traceback would only help the CLI's own developers.
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    help=f"""Marquee from the command line: upload movie CSVs and watch them import, browse
and rate the catalog, get recommendations, run CSV operations, administer.

It talks native gRPC to the gateway (`make run` starts one at {DEFAULT_URL}).

\b
Start here:
  marquee register alice --email alice@example.com
  marquee upload tmdb-top10k.csv
  marquee movies --year 1994 --sort rating --order desc
  marquee rate 278 up
  marquee recommend --genre Drama

\b
{EXIT_CODES_HELP}
""",
)


@app.callback()
def root(
    ctx: typer.Context,
    url: Annotated[
        str,
        typer.Option(
            "--url",
            envvar=URL_ENV,
            show_envvar=True,
            help="The gateway's address (http://host:port, https://...).",
        ),
    ] = DEFAULT_URL,
) -> None:
    try:
        endpoint = parse_endpoint(url)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--url") from None
    state = CliState(endpoint, TokenStore())
    ctx.obj = state
    ctx.call_on_close(state.close)


for area in (account, tasks, catalog, files, admin):
    area.register_commands(app)


def main() -> None:
    try:
        app()
    except CliError as err:
        err.show()
        sys.exit(err.exit_code)
    except grpc.RpcError as err:  # a call that did not go through Connection: still one line
        failure = rpc_failure(err, DEFAULT_URL)
        failure.show()
        sys.exit(failure.exit_code)
    except KeyboardInterrupt:
        sys.exit(ExitCode.INTERRUPTED)
    except Exception as exc:
        # A bug of the CLI's own: one line for the user, the traceback on request.
        if os.environ.get(DEBUG_ENV):
            raise
        print(
            f"error: unexpected failure: {exc!r} (set {DEBUG_ENV}=1 to see where)", file=sys.stderr
        )
        sys.exit(ExitCode.REFUSED)
