"""files, download, delete-file, op, result: the caller's stored files and the operations
(dedupe, unique, filter) that run on them as tasks."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from marquee.task.v1 import task_pb2, task_pb2_grpc
from marquee.upload.v1 import upload_pb2, upload_pb2_grpc
from marquee_cli.commands.tasks import (
    JSON_HELP,
    LIMIT_HELP,
    PAGE_TOKEN_HELP,
    require_done,
    watch_to_end,
)
from marquee_cli.conditions import parse_condition
from marquee_cli.connection import Connection
from marquee_cli.context import connection, say, stdout
from marquee_cli.errors import CliError
from marquee_cli.exit_codes import ExitCode
from marquee_cli.formatting import files_table, human_bytes, operation_text
from marquee_cli.listing import show_page
from marquee_cli.output_file import write_stream

OUTPUT_HELP = "Save to this file (`-` for stdout); default: print to stdout."
NO_WAIT_HELP = "Print the task id once the operation is queued; do not wait for the result."


def files(
    ctx: typer.Context,
    limit: Annotated[
        int | None, typer.Option("--limit", "-l", min=1, max=100, help=LIMIT_HELP)
    ] = None,
    page_token: Annotated[str, typer.Option("--page-token", help=PAGE_TOKEN_HELP)] = "",
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
) -> None:
    """List your uploaded files (and operation results), newest first.

    \b
    Examples:
      marquee files
      marquee files --json
    """
    conn = connection(ctx)
    page = conn.call(
        conn.stub(upload_pb2_grpc.UploadServiceStub).ListFiles,
        upload_pb2.ListFilesRequest(page_size=limit or 0, page_token=page_token),
    )
    show_page("files", page.files, page.next_page_token, as_json=as_json, table=files_table,
              empty="No files yet: `marquee upload FILE` adds one.")


def download(
    ctx: typer.Context,
    file_id: Annotated[
        str, typer.Argument(metavar="FILE_ID", help="The file's id (`marquee files`).")
    ],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            dir_okay=False,
            help="Where to save it (`-` for stdout). Default: its original "
            "name in the current directory, or stdout when piped.",
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", "-f", help="Overwrite an existing file.")
    ] = False,
) -> None:
    """Download a file's original bytes.

    \b
    Examples:
      marquee download 35eea2e69a724264ad6f73a3f21b6f90
      marquee download 35eea2e69a724264ad6f73a3f21b6f90 -o copy.csv
      marquee download 35eea2e69a724264ad6f73a3f21b6f90 | head
    """
    conn = connection(ctx)
    stub = conn.stub(upload_pb2_grpc.UploadServiceStub)
    target = output
    if target is None and sys.stdout.isatty():
        info = conn.call(stub.DescribeFile, upload_pb2.DescribeFileRequest(file_id=file_id))
        target = Path(Path(info.original_name).name or f"{file_id}.csv")
    if target is not None and str(target) != "-" and target.exists() and not force:
        raise CliError(
            f"{target} exists: pass --force to overwrite it, or -o another path", ExitCode.USAGE
        )
    bodies = conn.stream(stub.DownloadFile, upload_pb2.DownloadFileRequest(file_id=file_id))
    written = write_stream((b.data for b in bodies), target)
    if target is not None and str(target) != "-":
        say(f"Saved {human_bytes(written)} to {target}")


def delete_file(
    ctx: typer.Context,
    file_id: Annotated[
        str, typer.Argument(metavar="FILE_ID", help="The file's id (`marquee files`).")
    ],
) -> None:
    """Delete a file's bytes (its record, tasks and imported movies stay).

    \b
    Example:
      marquee delete-file 35eea2e69a724264ad6f73a3f21b6f90
    """
    conn = connection(ctx)
    conn.call(
        conn.stub(upload_pb2_grpc.UploadServiceStub).RemoveFile,
        upload_pb2.RemoveFileRequest(file_id=file_id),
    )
    say(f"Deleted file {file_id}.")


def _save_result(conn: Connection, task_id: str, output: Path | None) -> None:
    bodies = conn.stream(
        conn.stub(task_pb2_grpc.TaskServiceStub).GetTaskResult,
        task_pb2.GetTaskResultRequest(task_id=task_id),
    )
    written = write_stream((b.data for b in bodies), output)
    if output is not None and str(output) != "-":
        say(f"Saved the result ({human_bytes(written)}) to {output}")


def _run_operation(
    ctx: typer.Context,
    file_id: str,
    operation: task_pb2.Operation,
    output: Path | None,
    no_wait: bool,
) -> None:
    conn = connection(ctx)
    accepted = conn.call(
        conn.stub(upload_pb2_grpc.UploadServiceStub).StartOperation,
        upload_pb2.StartOperationRequest(file_id=file_id, operation=operation),
    )
    say(f"{operation_text(operation).capitalize()}: task [bold]{accepted.task_id}[/bold]")
    if no_wait:
        stdout.print(accepted.task_id, highlight=False)
        return
    task = watch_to_end(conn, accepted.task_id)
    require_done(task)
    _save_result(conn, accepted.task_id, output)


op_app = typer.Typer(
    no_args_is_help=True,
    help="""Run an operation on one of your files
(dedupe, unique, filter) as a background task, wait for it, and save or print the result.

\b
Examples:
  marquee op dedupe FILE_ID --column title --column release_date -o deduped.csv
  marquee op unique FILE_ID original_language
  marquee op filter FILE_ID --where "vote_average >= 8" --where "original_language = en"
""",
)

Output = Annotated[Path | None, typer.Option("--output", "-o", dir_okay=False, help=OUTPUT_HELP)]
NoWait = Annotated[bool, typer.Option("--no-wait", help=NO_WAIT_HELP)]


@op_app.command("dedupe")
def op_dedupe(
    ctx: typer.Context,
    file_id: Annotated[
        str, typer.Argument(metavar="FILE_ID", help="The file's id (`marquee files`).")
    ],
    columns: Annotated[
        list[str] | None,
        typer.Option("--column", "-c", help="A key column; repeat for several (default: all)."),
    ] = None,
    output: Output = None,
    no_wait: NoWait = False,
) -> None:
    """Drop rows whose key columns repeat an earlier row (the first one stays).

    \b
    Examples:
      marquee op dedupe FILE_ID -o deduped.csv
      marquee op dedupe FILE_ID --column id
    """
    _run_operation(
        ctx, file_id, task_pb2.Operation(operation="dedupe", columns=columns or []), output, no_wait
    )


@op_app.command("unique")
def op_unique(
    ctx: typer.Context,
    file_id: Annotated[
        str, typer.Argument(metavar="FILE_ID", help="The file's id (`marquee files`).")
    ],
    column: Annotated[
        str, typer.Argument(metavar="COLUMN", help="The column whose distinct values to count.")
    ],
    output: Output = None,
    no_wait: NoWait = False,
) -> None:
    """Count the distinct values of a column (the result is JSON).

    \b
    Example:
      marquee op unique FILE_ID original_language
    """
    _run_operation(
        ctx, file_id, task_pb2.Operation(operation="unique", column=column), output, no_wait
    )


@op_app.command("filter")
def op_filter(
    ctx: typer.Context,
    file_id: Annotated[
        str, typer.Argument(metavar="FILE_ID", help="The file's id (`marquee files`).")
    ],
    where: Annotated[
        list[str],
        typer.Option(
            "--where",
            "-w",
            help="COLUMN OP [VALUE]; OP is eq ne contains startswith gt "
            "gte lt lte empty not_empty (or = != > >= < <=). "
            "Repeat for several.",
        ),
    ],
    any_match: Annotated[
        bool, typer.Option("--any", help="Keep rows matching any condition (default: all of them).")
    ] = False,
    output: Output = None,
    no_wait: NoWait = False,
) -> None:
    """Keep the rows that match conditions. Numbers compare as numbers.

    \b
    Examples:
      marquee op filter FILE_ID --where "vote_average >= 8" -o best.csv
      marquee op filter FILE_ID -w "title contains 'star wars'" -w "overview empty" --any
    """
    try:
        conditions = [parse_condition(w) for w in where]
    except ValueError as exc:
        raise CliError(str(exc), ExitCode.USAGE) from None
    _run_operation(
        ctx,
        file_id,
        task_pb2.Operation(
            operation="filter", conditions=conditions, match="any" if any_match else "all"
        ),
        output,
        no_wait,
    )


def result(
    ctx: typer.Context,
    task_id: Annotated[str, typer.Argument(metavar="TASK_ID", help="The operation's task id.")],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", dir_okay=False, help=OUTPUT_HELP)
    ] = None,
) -> None:
    """Fetch the result of an operation task that is done.

    \b
    Example:
      marquee result 6b04225e63c051c198122c51 -o result.csv
    """
    _save_result(connection(ctx), task_id, output)


def register_commands(app: typer.Typer) -> None:
    app.command("files")(files)
    app.command("download")(download)
    app.command("delete-file")(delete_file)
    app.command("result")(result)
    app.add_typer(op_app, name="op")
