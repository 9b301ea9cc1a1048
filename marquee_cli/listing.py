"""A page of a list command: JSON for scripts (the items under their name, the next page's
token and any totals), else a table, a line when there is nothing, and how to ask for more."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from google.protobuf.message import Message
from rich.table import Table

from marquee_cli.context import say, stdout
from marquee_cli.proto_json import to_plain


def next_page_hint(token: str) -> None:
    if token:
        say(f"[dim]more: --page-token {token}[/dim]")


def print_json_page(name: str, items: Sequence[Message], next_page_token: str,
                    **extra: Any) -> None:
    stdout.print_json(json.dumps({name: [to_plain(item) for item in items], **extra,
                                  "next_page_token": next_page_token}))


def show_page(name: str, items: Sequence[Any], next_page_token: str, *, as_json: bool,
              table: Callable[[Sequence[Any]], Table], empty: str) -> None:
    if as_json:
        print_json_page(name, items, next_page_token)
    elif not items:
        say(empty)
    else:
        stdout.print(table(items))
        next_page_hint(next_page_token)
