"""How values and records read on a terminal: sizes, durations, times, and the tables of each
command. Pure functions of their input, so the unit tests can check them."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp
from rich.table import Table

from marquee.auth.v1 import auth_pb2
from marquee.catalog.v1 import catalog_pb2
from marquee.task.v1 import task_pb2
from marquee.upload.v1 import upload_pb2

STATUS_STYLE = {
    "pending": "yellow",
    "processing": "cyan",
    "done": "green",
    "failed": "red",
    "cancelled": "magenta",
}


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def human_duration(seconds: float | None) -> str:
    """1:02:03, 4:05 or 7s; a dash when unknown."""
    if seconds is None:
        return "-"
    total = round(max(0.0, seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}:{minutes:02d}:{secs:02d}"
    return f"{minutes}:{secs:02d}" if minutes else f"{secs}s"


def timestamp_text(ts: Timestamp) -> str:
    """UTC, to the second; empty when unset."""
    if not ts.seconds and not ts.nanos:
        return ""
    return ts.ToDatetime().strftime("%Y-%m-%d %H:%M:%S")


def year_of(release_date: str) -> str:
    return release_date[:4] if len(release_date) >= 4 and release_date[:4].isdigit() else ""


def status_text(status: str) -> str:
    style = STATUS_STYLE.get(status, "")
    return f"[{style}]{status}[/{style}]" if style else status


def optional_number(message: Any, field: str, digits: int = 1) -> str:
    if not message.HasField(field):
        return ""
    value = getattr(message, field)
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def task_counts(task: task_pb2.Task) -> str:
    """The counts that matter for the task's kind."""
    if task.kind in ("dedupe", "unique", "filter"):
        parts = [f"{task.rows_read:,} read", f"{task.rows_out:,} out"]
        if task.duplicates:
            parts.append(f"{task.duplicates:,} duplicates")
        if task.distinct:
            parts.append(f"{task.distinct:,} distinct")
    else:
        parts = [f"{task.rows_imported:,} imported", f"{task.rows_rejected:,} rejected"]
        if task.rows_skipped:
            parts.append(f"{task.rows_skipped:,} skipped")
    return ", ".join(parts)


def tasks_table(tasks: Iterable[task_pb2.Task], *, with_owner: bool = False) -> Table:
    table = Table(box=None, header_style="bold")
    table.add_column("TASK")
    if with_owner:
        table.add_column("USER")
    for name in ("KIND", "STATUS", "FILE", "PROGRESS", "CREATED (UTC)"):
        table.add_column(name)
    for t in tasks:
        row = [t.task_id]
        if with_owner:
            row.append(t.user or t.user_id)
        done = f"{t.percent:.0f}%" if t.status == "processing" else task_counts(t)
        row += [t.kind, status_text(t.status), t.original_name, done, timestamp_text(t.created_at)]
        table.add_row(*row)
    return table


def task_details(task: task_pb2.Task) -> Table:
    table = Table(box=None, show_header=False)
    table.add_column(style="bold")
    table.add_column()
    rows: list[tuple[str, str]] = [
        ("task", task.task_id),
        ("kind", task.kind),
        ("status", status_text(task.status)),
        ("file", f"{task.original_name} ({task.file_id})"),
        ("progress", f"{task.percent:.1f}% of {human_bytes(task.bytes_total)}"),
        ("rows", f"{task.rows_read:,} read; {task_counts(task)}"),
    ]
    if task.status == "processing":
        rows.append(
            ("pace", f"{task.rows_per_second:,.0f} rows/s, ETA {human_duration(task.eta_seconds)}")
        )
    if task.error:
        rows.append(("error", f"[red]{task.error}[/red]"))
    if task.cancel_requested and task.status not in ("done", "failed", "cancelled"):
        rows.append(("cancel", "requested"))
    if task.HasField("operation"):
        rows.append(("operation", operation_text(task.operation)))
    if task.HasField("result"):
        r = task.result
        rows.append(
            (
                "result",
                f"{human_bytes(r.size_bytes)} {r.content_type}: `marquee result {task.task_id}`",
            )
        )
    for label, ts in (
        ("created", task.created_at),
        ("started", task.started_at),
        ("finished", task.finished_at),
    ):
        if text := timestamp_text(ts):
            rows.append((label, text + " UTC"))
    if task.file_deleted:
        rows.append(("file", "deleted after the retention period"))
    for label, value in rows:
        table.add_row(label, value)
    return table


def operation_text(op: task_pb2.Operation) -> str:
    if op.operation == "dedupe":
        return "dedupe on " + (", ".join(op.columns) or "all columns")
    if op.operation == "unique":
        return f"unique values of {op.column}"
    if op.operation == "filter":
        joined = f" {op.match or 'all'}: " if len(op.conditions) > 1 else " "
        return (
            "filter"
            + joined
            + "; ".join(f"{c.column} {c.op} {c.value}".rstrip() for c in op.conditions)
        )
    return op.operation


def movies_table(movies: Sequence[catalog_pb2.Movie]) -> Table:
    table = Table(box=None, header_style="bold")
    for name, justify in (
        ("ID", "left"),
        ("TITLE", "left"),
        ("YEAR", "left"),
        ("LANG", "left"),
        ("RATING", "right"),
        ("VOTES", "right"),
        ("UP/DOWN", "right"),
        ("GENRES", "left"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for m in movies:
        table.add_row(
            m.id,
            m.title,
            year_of(m.release_date),
            m.original_language,
            optional_number(m, "vote_average"),
            optional_number(m, "vote_count"),
            f"{m.upvotes}/{m.downvotes}",
            ", ".join(m.genre),
        )
    return table


def recommendations_table(items: Sequence[dict[str, Any]]) -> Table:
    table = Table(box=None, header_style="bold")
    for name in ("#", "ID", "TITLE", "YEAR", "RATING", "SCORE", "WHY"):
        table.add_column(name)
    for rank, m in enumerate(items, 1):
        rating = m.get("vote_average")
        table.add_row(
            str(rank),
            str(m.get("_id", "")),
            str(m.get("title", "")),
            year_of(str(m.get("release_date") or "")),
            "" if rating is None else f"{rating:.1f}",
            f"{float(m.get('score', 0)):.3f}",
            "; ".join(m.get("reasons", [])),
        )
    return table


def files_table(files: Iterable[upload_pb2.FileInfo]) -> Table:
    table = Table(box=None, header_style="bold")
    for name in ("FILE", "NAME", "SIZE", "COLUMNS", "UPLOADED (UTC)", "TASK"):
        table.add_column(name)
    for f in files:
        name = f"{f.original_name} [dim](deleted)[/dim]" if f.deleted else f.original_name
        columns = (
            f"[red]{f.header_error}[/red]"
            if f.header_error
            else f"{len(f.columns)}: {', '.join(f.columns[:4])}"
            + (", ..." if len(f.columns) > 4 else "")
        )
        table.add_row(
            f.file_id,
            name,
            human_bytes(f.size_bytes),
            columns,
            timestamp_text(f.uploaded_at),
            f.task_id,
        )
    return table


def users_table(users: Iterable[auth_pb2.UserProfile]) -> Table:
    table = Table(box=None, header_style="bold")
    for name in ("ID", "USERNAME", "EMAIL", "NAME", "ROLE", "STATE", "CREATED"):
        table.add_column(name)
    for u in users:
        table.add_row(
            u.id,
            u.username,
            u.email,
            u.name,
            u.role,
            "[red]disabled[/red]" if u.disabled else "enabled",
            u.created_at,
        )
    return table


def user_details(user: auth_pb2.UserProfile) -> Table:
    table = Table(box=None, show_header=False)
    table.add_column(style="bold")
    table.add_column()
    for label, value in (
        ("username", user.username),
        ("id", user.id),
        ("email", user.email),
        ("name", user.name),
        ("role", user.role),
        ("created", user.created_at),
        ("state", "disabled" if user.disabled else "enabled"),
    ):
        table.add_row(label, value)
    return table
