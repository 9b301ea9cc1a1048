"""upload, tasks, task, errors, cancel: files in, and the tasks that read them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from marquee.task.v1 import task_pb2, task_pb2_grpc
from marquee_cli.connection import Connection
from marquee_cli.context import connection, say, stdout
from marquee_cli.errors import CliError
from marquee_cli.exit_codes import ExitCode
from marquee_cli.formatting import human_bytes, task_details, tasks_table
from marquee_cli.listing import show_page
from marquee_cli.live import TERMINAL, upload_file, watch_task
from marquee_cli.output_file import write_stream
from marquee_cli.proto_json import to_plain

JSON_HELP = "Print JSON (for scripts) instead of a table."
LIMIT_HELP = "How many per page (the server's default when left out)."
PAGE_TOKEN_HELP = "Continue from a previous page (its token is printed under the table)."


def watch_to_end(conn: Connection, task_id: str) -> task_pb2.Task:
    """Watches the task to its end. Ctrl-C stops watching, not the task."""
    try:
        return watch_task(conn, task_id)
    except KeyboardInterrupt:
        raise CliError(
            f"stopped watching; task {task_id} goes on. Follow it again with "
            f"`marquee task {task_id} --watch`, or stop it with "
            f"`marquee cancel {task_id}`",
            ExitCode.INTERRUPTED,
        ) from None


def require_done(task: task_pb2.Task) -> None:
    """A waited-for task that did not end `done` is a failure scripts can see (exit code 8)."""
    if task.status != "done":
        why = f": {task.error}" if task.error else ""
        raise CliError(f"task {task.task_id} {task.status}{why}", ExitCode.TASK_FAILED)


def upload(
    ctx: typer.Context,
    file: Annotated[
        Path,
        typer.Argument(
            metavar="FILE",
            exists=True,
            dir_okay=False,
            readable=True,
            help="The movie CSV to upload.",
        ),
    ],
    no_wait: Annotated[
        bool,
        typer.Option("--no-wait", help="Print the task id once the file is stored; do not watch."),
    ] = False,
) -> None:
    """Upload a movie CSV, then watch the import live.

    A byte bar shows the file streaming to the server; then a live bar follows the ingestion
    task (rows/s, imported, rejected, ETA) until it ends. Ctrl-C stops watching; the import
    goes on. Exit code 8 when the task fails or is cancelled.

    \b
    Examples:
      marquee upload tmdb-top10k.csv
      TASK=$(marquee upload movies.csv --no-wait)
      marquee errors "$TASK" > rejected.csv
    """
    conn = connection(ctx)
    try:
        stored = upload_file(conn, file)
    except KeyboardInterrupt:
        raise CliError("upload interrupted: nothing was stored", ExitCode.INTERRUPTED) from None
    say(
        f"Uploaded {file.name} ({human_bytes(stored.size_bytes)}, sha256 "
        f"{stored.sha256[:12]}...): task [bold]{stored.task_id}[/bold]"
    )
    if no_wait:
        stdout.print(stored.task_id, highlight=False)
        return
    task = watch_to_end(conn, stored.task_id)
    stdout.print(task_details(task))
    if task.rows_rejected or task.rows_skipped:
        say(f"Rejected rows: `marquee errors {task.task_id} > rejected.csv`")
    require_done(task)


def tasks(
    ctx: typer.Context,
    limit: Annotated[
        int | None, typer.Option("--limit", "-l", min=1, max=100, help=LIMIT_HELP)
    ] = None,
    page_token: Annotated[str, typer.Option("--page-token", help=PAGE_TOKEN_HELP)] = "",
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
) -> None:
    """List your tasks, newest first.

    \b
    Examples:
      marquee tasks
      marquee tasks --limit 5 --json
    """
    conn = connection(ctx)
    page = conn.call(
        conn.stub(task_pb2_grpc.TaskServiceStub).ListTasks,
        task_pb2.ListTasksRequest(page_size=limit or 0, page_token=page_token),
    )
    show_page("tasks", page.tasks, page.next_page_token, as_json=as_json, table=tasks_table,
              empty="No tasks yet: `marquee upload FILE` starts one.")


def task(
    ctx: typer.Context,
    task_id: Annotated[
        str, typer.Argument(metavar="TASK_ID", help="The task's id (from `marquee tasks`).")
    ],
    watch: Annotated[
        bool,
        typer.Option(
            "--watch", "-w", help="Follow it live until it ends (exit code 8 unless done)."
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
) -> None:
    """Show one task: status, counts, pace, error.

    \b
    Examples:
      marquee task 6b04225e63c051c198122c51
      marquee task 6b04225e63c051c198122c51 --watch
    """
    conn = connection(ctx)
    stub = conn.stub(task_pb2_grpc.TaskServiceStub)
    found = conn.call(stub.GetTask, task_pb2.GetTaskRequest(task_id=task_id))
    if watch and found.status not in TERMINAL:
        found = watch_to_end(conn, task_id)
    if as_json:
        stdout.print_json(json.dumps(to_plain(found)))
    else:
        stdout.print(task_details(found))
    if watch:
        require_done(found)


def errors(
    ctx: typer.Context,
    task_id: Annotated[
        str, typer.Argument(metavar="TASK_ID", help="The task whose rejected rows to export.")
    ],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", dir_okay=False, help="Write to this file instead of stdout."
        ),
    ] = None,
) -> None:
    """Export a task's rejected rows as CSV (line, reason, raw).

    \b
    Examples:
      marquee errors 6b04225e63c051c198122c51 > rejected.csv
      marquee errors 6b04225e63c051c198122c51 -o rejected.csv
    """
    conn = connection(ctx)
    bodies = conn.stream(
        conn.stub(task_pb2_grpc.TaskServiceStub).ExportTaskErrors,
        task_pb2.ExportTaskErrorsRequest(task_id=task_id),
    )
    written = write_stream((b.data for b in bodies), output)
    if output is not None:
        say(f"Wrote {human_bytes(written)} to {output}")


def cancel(
    ctx: typer.Context,
    task_id: Annotated[
        str, typer.Argument(metavar="TASK_ID", help="The pending or processing task to stop.")
    ],
) -> None:
    """Ask a task to stop; what it imported stays.

    \b
    Example:
      marquee cancel 6b04225e63c051c198122c51
    """
    conn = connection(ctx)
    found = conn.call(
        conn.stub(task_pb2_grpc.TaskServiceStub).CancelTask,
        task_pb2.CancelTaskRequest(task_id=task_id),
    )
    if found.status in TERMINAL:
        say(f"Task {task_id} is {found.status}.")
    else:
        say(f"Cancellation requested: task {task_id} stops after its current batch.")


def register_commands(app: typer.Typer) -> None:
    for command in (upload, tasks, task, errors, cancel):
        app.command(command.__name__)(command)
