"""The `marquee` command line, end to end against the session stack: the installed script in a
subprocess (as a user runs it), with its own config directory."""

from __future__ import annotations

import csv
import io
import json
import os
import stat
import subprocess
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from devstack.stack import ROOT, Stack, free_ports
from marquee_cli.app import app
from marquee_cli.exit_codes import ExitCode
from tests.integration.conftest import ADMIN_PASSWORD, ADMIN_USERNAME

MARQUEE = ROOT / ".venv" / "bin" / "marquee"
MARK = uuid.uuid4().hex[:8]
# Two good rows (ids no other module uses) and one without a title, which is rejected.
CSV_BYTES = (
    "id,title,release_date,vote_average,vote_count,original_language,genre\n"
    f"97100001,Cli Movie {MARK} One,1998-01-01,7.5,1200,en,Drama\n"
    f"97100002,Cli Movie {MARK} Two,1999-06-01,6.5,800,en,\"Drama, Comedy\"\n"
    "97100003,,2000-01-01,5.0,10,en,Drama\n"
    f"97100001,Cli Movie {MARK} One,1998-01-01,7.5,1200,en,Drama\n"
).encode()


@dataclass
class Run:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


Cli = Callable[..., Run]


def _env(url: str, config: Path) -> dict[str, str]:
    env = {**os.environ, "MARQUEE_URL": url, "XDG_CONFIG_HOME": str(config), "COLUMNS": "200"}
    env.pop("MARQUEE_DEBUG", None)
    return env


def _checked(args: tuple[str, ...], code: int, out: str, err: str, ok: bool) -> Run:
    assert "Traceback" not in err, err
    result = Run(code, out, err)
    if ok:
        assert code == 0, (args, result)
    return result


def _cli(url: str, config: Path) -> Cli:
    def run(*args: str, stdin: str = "", ok: bool = True, timeout: float = 300) -> Run:
        done = subprocess.run([str(MARQUEE), *args], input=stdin, capture_output=True,
                              text=True, env=_env(url, config), timeout=timeout, check=False)
        return _checked(args, done.returncode, done.stdout, done.stderr, ok)
    return run


def _in_parallel(url: str, config: Path, *commands: tuple[str, ...]) -> list[Run]:
    """Runs the commands at once (the test stack deletes a file seconds after its task ends,
    so the operations on one must start together) and waits for them all."""
    started = [(args, subprocess.Popen([str(MARQUEE), *args], stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, text=True,
                                       env=_env(url, config)))
               for args in commands]
    results = []
    for args, process in started:
        out, err = process.communicate(timeout=300)
        results.append(_checked(args, process.returncode, out, err, ok=True))
    return results


@dataclass
class Account:
    username: str
    password: str
    cli: Cli
    config: Path


def _account(stack: Stack, tmp_path_factory: pytest.TempPathFactory, prefix: str) -> Account:
    config = tmp_path_factory.mktemp(f"cli-{prefix}")
    username = f"{prefix}{uuid.uuid4().hex[:8]}"
    password = "s3cret-" + uuid.uuid4().hex[:6]
    cli = _cli(stack.gateway_url, config)
    cli("register", username, "--email", f"{username}@example.com", "--password-stdin",
        stdin=password + "\n")
    return Account(username, password, cli, config)


@pytest.fixture(scope="module")
def alice(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Account:
    return _account(stack, tmp_path_factory, "clialice")


@pytest.fixture(scope="module")
def uploaded(alice: Account, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The small CSV uploaded and watched to its end with `marquee upload`."""
    path = tmp_path_factory.mktemp("cli-upload") / f"cli-{MARK}.csv"
    path.write_bytes(CSV_BYTES)
    run = alice.cli("upload", str(path))
    listed = alice.cli("tasks", "--json").json()["tasks"]
    task = next(t for t in listed if t["original_name"] == path.name)
    return {"run": run, "task": task, "path": path}


def test_register_stores_the_session_privately(alice: Account) -> None:
    sessions = alice.config / "marquee" / "sessions.json"
    assert stat.S_IMODE(sessions.stat().st_mode) == 0o600
    assert stat.S_IMODE(sessions.parent.stat().st_mode) == 0o700
    assert alice.username in alice.cli("whoami").out


def test_upload_streams_then_watches_to_the_end(uploaded: dict[str, Any]) -> None:
    run, task = uploaded["run"], uploaded["task"]
    assert task["status"] == "done"
    assert task["rows_imported"] == 3 and task["rows_rejected"] == 1
    assert "done" in run.out and task["task_id"] in run.out
    assert "uploading" in run.err or "Uploaded" in run.err
    assert f"marquee errors {task['task_id']}" in run.err


def test_upload_no_wait_prints_the_task_id_and_task_watch_follows_it(
        alice: Account, tmp_path: Path) -> None:
    path = tmp_path / "again.csv"
    path.write_bytes(CSV_BYTES)
    task_id = alice.cli("upload", str(path), "--no-wait").out.strip()
    assert len(task_id) >= 12 and " " not in task_id
    watched = alice.cli("task", task_id, "--watch", "--json").json()
    assert watched["task_id"] == task_id and watched["status"] == "done"
    assert watched["bytes_total"] == len(CSV_BYTES)  # a number, not a string


def test_errors_export_to_stdout_and_to_a_file(alice: Account, uploaded: dict[str, Any],
                                               tmp_path: Path) -> None:
    task_id = uploaded["task"]["task_id"]
    rows = list(csv.reader(io.StringIO(alice.cli("errors", task_id).out)))
    assert rows[0] == ["line", "reason", "raw"]
    assert [r[0] for r in rows[1:]] == ["4"]
    target = tmp_path / "rejected.csv"
    alice.cli("errors", task_id, "-o", str(target))
    assert list(csv.reader(io.StringIO(target.read_text()))) == rows


def test_tasks_table_and_cancel_of_an_ended_task(alice: Account,
                                                 uploaded: dict[str, Any]) -> None:
    task_id = uploaded["task"]["task_id"]
    assert task_id in alice.cli("tasks").out
    assert "done" in alice.cli("task", task_id).out
    cancelled = alice.cli("cancel", task_id, ok=False)
    # Cancelling a task that has ended is refused by the server, or reported as ended.
    assert cancelled.code in (ExitCode.OK, ExitCode.REFUSED)
    assert cancelled.err.count("\n") <= 1


def test_movies_json_search_and_table(alice: Account, uploaded: dict[str, Any]) -> None:
    page = alice.cli("movies", "--search", MARK, "--sort", "release_date", "--json").json()
    assert [m["id"] for m in page["movies"]] == ["97100001", "97100002"]
    assert page["total_size"] == 2
    assert page["movies"][0]["vote_count"] == 1200
    table = alice.cli("movies", "--search", MARK, "--limit", "1")
    assert f"Cli Movie {MARK}" in table.out and "--page-token" in table.err
    token = table.err.split("--page-token", 1)[1].split()[0]
    second = alice.cli("movies", "--search", MARK, "--limit", "1", "--page-token", token,
                       "--json").json()
    assert len(second["movies"]) == 1


def _votes(cli: Cli, movie_id: str) -> tuple[int, int]:
    movies = cli("movies", "--search", MARK, "--json").json()["movies"]
    movie = next(m for m in movies if m["id"] == movie_id)
    return movie["upvotes"], movie["downvotes"]


def test_rate_up_down_clear(alice: Account, uploaded: dict[str, Any]) -> None:
    alice.cli("rate", "97100002", "up")
    assert _votes(alice.cli, "97100002") == (1, 0)
    assert "already up" in alice.cli("rate", "97100002", "up").err
    alice.cli("rate", "97100002", "down")
    assert _votes(alice.cli, "97100002") == (0, 1)
    alice.cli("rate", "97100002", "clear")
    assert _votes(alice.cli, "97100002") == (0, 0)
    assert "nothing to clear" in alice.cli("rate", "97100002", "clear").err
    missing = alice.cli("rate", "no-such-movie-" + MARK, "up", ok=False)
    assert missing.code == ExitCode.NOT_FOUND and missing.err.startswith("error: ")


def test_recommend_waits_and_prints(alice: Account, uploaded: dict[str, Any]) -> None:
    result = alice.cli("recommend", "--genre", "Drama", "--limit", "5", "--json").json()
    assert isinstance(result["recommendations"], list)
    for item in result["recommendations"]:
        assert "score" in item and "reasons" in item
    table = alice.cli("recommend", "--genre", "Drama", "--limit", "5")
    assert "SCORE" in table.out or "Nothing to recommend" in table.err


def test_files_download_and_operations(stack: Stack, alice: Account, tmp_path: Path) -> None:
    path = tmp_path / f"ops-{MARK}.csv"
    path.write_bytes(CSV_BYTES)
    task_id = alice.cli("upload", str(path), "--no-wait").out.strip()
    files = alice.cli("files", "--json").json()["files"]
    file_id = next(f["file_id"] for f in files if f["task_id"] == task_id)
    deduped, best = tmp_path / "deduped.csv", tmp_path / "best.csv"
    _, unique, _ = _in_parallel(
        stack.gateway_url, alice.config,
        ("op", "dedupe", file_id, "--column", "id", "-o", str(deduped)),
        ("op", "unique", file_id, "original_language"),
        ("op", "filter", file_id, "--where", "vote_average >= 7", "-o", str(best)))
    ids = [row[0] for row in csv.reader(io.StringIO(deduped.read_text()))][1:]
    assert ids == ["97100001", "97100002", "97100003"]
    assert "en" in unique.out
    assert [row[0] for row in csv.reader(io.StringIO(best.read_text()))][1:] == \
        ["97100001", "97100001"]
    assert file_id in alice.cli("files").out
    bad = alice.cli("op", "filter", file_id, "--where", "vote_average ~ 7", ok=False)
    assert bad.code == ExitCode.USAGE


def test_download(stack: Stack, alice: Account, tmp_path: Path) -> None:
    path = tmp_path / f"dl-{MARK}.csv"
    path.write_bytes(CSV_BYTES)
    task_id = alice.cli("upload", str(path), "--no-wait").out.strip()
    files = alice.cli("files", "--json").json()["files"]
    file_id = next(f["file_id"] for f in files if f["task_id"] == task_id)
    copy = tmp_path / "copy.csv"
    alice.cli("download", file_id, "-o", str(copy))
    assert copy.read_bytes() == CSV_BYTES
    assert "exists" in alice.cli("download", file_id, "-o", str(copy), ok=False).err
    assert alice.cli("download", file_id).out.encode() == CSV_BYTES  # piped: stdout


def test_an_expired_access_token_is_renewed_and_the_refresh_token_rotated(
        alice: Account) -> None:
    sessions = alice.config / "marquee" / "sessions.json"
    data = json.loads(sessions.read_text())
    (url, session), = data["sessions"].items()
    session["access_expires_at"] = 0
    sessions.write_text(json.dumps(data))
    alice.cli("whoami")
    renewed = json.loads(sessions.read_text())["sessions"][url]
    assert renewed["refresh_token"] != session["refresh_token"]
    assert renewed["access_expires_at"] > 0


def test_wrong_password_logout_and_login(stack: Stack, alice: Account) -> None:
    wrong = alice.cli("login", alice.username, "--password-stdin", stdin="not-it\n", ok=False)
    assert wrong.code == ExitCode.UNAUTHENTICATED
    assert wrong.err.startswith("error: ") and wrong.err.count("\n") == 1
    assert wrong.out == ""
    alice.cli("logout")
    gone = alice.cli("whoami", ok=False)
    assert gone.code == ExitCode.UNAUTHENTICATED and "marquee login" in gone.err
    alice.cli("login", alice.username, "--password-stdin", stdin=alice.password + "\n")
    assert alice.username in alice.cli("whoami").out


def test_not_found_and_unreachable(alice: Account, tmp_path: Path) -> None:
    missing = alice.cli("task", "0" * 24, ok=False)
    assert missing.code == ExitCode.NOT_FOUND and missing.err.startswith("error: ")
    nowhere = _cli(f"http://127.0.0.1:{free_ports()['gateway']}", alice.config)
    run = nowhere("login", "x", "--password-stdin", stdin="y\n", ok=False)
    assert run.code == ExitCode.UNAVAILABLE
    assert "not reachable" in run.err and "make run" in run.err


def test_admin_commands(stack: Stack, alice: Account,
                        tmp_path_factory: pytest.TempPathFactory) -> None:
    refused = alice.cli("admin", "users", ok=False)
    assert refused.code == ExitCode.FORBIDDEN
    root = _cli(stack.gateway_url, tmp_path_factory.mktemp("cli-root"))
    root("login", ADMIN_USERNAME, "--password-stdin", stdin=ADMIN_PASSWORD + "\n")
    users = root("admin", "users", "--search", alice.username, "--json").json()
    (user,) = users["users"]
    assert user["username"] == alice.username
    tasks = root("admin", "tasks", "--user", user["id"], "--status", "done", "--json").json()
    assert tasks["tasks"] and all(t["user_id"] == user["id"] for t in tasks["tasks"])
    assert "disabled" in root("admin", "disable", user["id"]).out
    disabled = alice.cli("login", alice.username, "--password-stdin",
                         stdin=alice.password + "\n", ok=False)
    assert disabled.code == ExitCode.FORBIDDEN
    root("admin", "enable", user["id"])
    alice.cli("login", alice.username, "--password-stdin", stdin=alice.password + "\n")
    assert "admin" in root("admin", "set-role", user["id"], "admin").out
    root("admin", "set-role", user["id"], "user")
    root("admin", "delete-movie", "97100002", "--yes")
    assert root("admin", "delete-movie", "97100002", "--yes", ok=False).code == \
        ExitCode.NOT_FOUND


def _commands(group: Any, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command's path, groups included (typer's click, whichever it is)."""
    found = [path]
    for name, command in getattr(group, "commands", {}).items():
        found += _commands(command, (*path, name))
    return found


def test_help_on_every_command() -> None:
    runner = CliRunner()
    root = get_command(app)
    commands = _commands(root)
    assert len(commands) > 20
    for path in commands:
        result = runner.invoke(app, [*path, "--help"])
        assert result.exit_code == 0, (path, result.output)
        assert "Usage:" in result.output
        assert "marquee " in result.output, (path, "no example")
    top = subprocess.run([str(MARQUEE), "--help"], capture_output=True, text=True, check=True,
                         timeout=60)
    assert "Exit codes" in top.stdout
    usage = subprocess.run([str(MARQUEE), "movies", "--limit", "0"], capture_output=True,
                           text=True, check=False, timeout=60)
    assert usage.returncode == ExitCode.USAGE and "Traceback" not in usage.stderr

