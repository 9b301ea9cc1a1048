"""What every command needs from the root: where the gateway is and the session store, and
one connection to it made when a command first calls."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

import typer
from rich.console import Console

from marquee_cli.connection import Connection
from marquee_cli.endpoint import Endpoint
from marquee_cli.token_store import TokenStore

# Results (tables, JSON, ids) on stdout; messages, progress and errors on stderr. Tables get a
# wide page when stdout is not a terminal, so that a redirect does not cut columns short.
stdout = Console() if sys.stdout.isatty() else Console(width=200)
stderr = Console(stderr=True)


@dataclass
class CliState:
    endpoint: Endpoint
    store: TokenStore
    _connection: Connection | None = field(default=None)

    def connection(self) -> Connection:
        if self._connection is None:
            self._connection = Connection(self.endpoint, self.store)
        return self._connection

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()


def connection(ctx: typer.Context) -> Connection:
    state: CliState = ctx.find_root().obj
    return state.connection()


def say(message: str) -> None:
    """A note for the person at the terminal (stderr)."""
    stderr.print(message, highlight=False)
