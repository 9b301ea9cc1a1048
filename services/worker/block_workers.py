"""Processes that parse a file's blocks beside the process that reads it.

csv.reader's C loop holds the GIL, so one process parses at pandas' speed at best. An operation
on a big file shares its blocks out to OPERATION_PROCESSES processes: the job's own process
reads and cuts the blocks (in the file's bytes, for UTF-8 and one-byte encodings, so it never
decodes them) and adds up what each block's step returned; the processes decode and parse them
and run the step (services/worker/csv_source.py, stepped_blocks). Results come back in the
order the blocks were sent: each process is sent every n-th group and answers in turn.

Each process is `python -m services.worker.block_workers`, started with subprocess: Celery's
pool processes are daemons, which multiprocessing does not let start children. Over its stdin
and stdout, between two processes of one job, messages are pickled, each after its size; a
group of blocks is its sizes, then the blocks' bytes as they are. A thread of the child reads
its stdin, so the parent never waits to send a group while the child waits for its last result
to be read; the parent sends at most DEPTH groups ahead to each.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import os
import pickle
import queue
import subprocess
import sys
import threading
from typing import IO, TYPE_CHECKING, Any, NamedTuple

from services.worker.csv_source import (
    Block,
    BlockJob,
    InProcess,
    Parsed,
    Parser,
    cut_as_bytes,
    parse_blocks,
)

if TYPE_CHECKING:
    from services.common.settings import Settings

GROUP_BLOCKS = 8  # blocks per message: 512 KiB of text, which a pipe of 1 MiB holds
DEPTH = 4  # groups sent ahead to each process, so that none waits for work
_SIZE_BYTES = 8
_TEXT_WIRE = "utf-16-le"  # how blocks cut as text travel to the children
_IOV_MAX = 1024  # buffers one writev takes
PIPE_BYTES = 2 << 20  # a group's text and more; capped at /proc/sys/fs/pipe-max-size (1 MiB)
_EXIT_SECONDS = 5


class Parallelism(NamedTuple):
    """How many processes parse an operation's blocks (OPERATION_PROCESSES; 1: the job's own),
    for a file of at least `min_bytes` (OPERATION_PARALLEL_MIN_BYTES, 512 MiB). Each costs
    ~0.2 s of CPU to start and holds ~30 MB: on a 100 MiB file, two took as long as the job's
    own process alone, with twice the CPU and twice the memory (BENCHMARKS.md)."""

    processes: int
    min_bytes: int

    @classmethod
    def from_settings(cls, settings: Settings) -> Parallelism:
        return cls(settings.operation_processes, settings.operation_parallel_min_bytes)

    def parser(self, job: BlockJob, encoding: str, size_bytes: int) -> Parser:
        if self.processes > 1 and size_bytes >= self.min_bytes:
            return BlockWorkers(job, encoding, self.processes)
        return InProcess(job)


class ParsingProcessLost(Exception):
    """A parsing process ended before it answered (killed, out of memory)."""


def _widen(pipe: IO[bytes]) -> None:
    """Lets the pipe hold a whole message, as far as the system allows: a message is then
    written and read in one step each. Through the 64 KiB a pipe holds by default, each piece
    waited for the child's reading thread to get the interpreter's lock from the thread that
    parses (up to 5 ms a time), and the parent waited with it."""
    try:
        with open("/proc/sys/fs/pipe-max-size") as limit:
            size = min(PIPE_BYTES, int(limit.read()))
        fcntl.fcntl(pipe.fileno(), fcntl.F_SETPIPE_SZ, size)
    except OSError:
        pass  # the default size: slower, not wrong


def _send(pipe: IO[bytes], value: Any) -> None:
    data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    pipe.write(len(data).to_bytes(_SIZE_BYTES, "little"))
    pipe.write(data)
    pipe.flush()


def _receive(pipe: IO[bytes]) -> Any:
    size = int.from_bytes(_read_exactly(pipe, _SIZE_BYTES), "little")
    return pickle.loads(_read_exactly(pipe, size))


def _read_exactly(pipe: IO[bytes], size: int) -> bytes:
    data = pipe.read(size)
    if len(data) < size:
        raise EOFError
    return data


def _write_all(fd: int, parts: list[bytes]) -> None:
    """The parts, in as few system calls as the pipe takes them in."""
    views = [memoryview(part) for part in parts if part]
    while views:
        written = os.writev(fd, views[:_IOV_MAX])
        while views and written >= len(views[0]):
            written -= len(views.pop(0))
        if views:
            views[0] = views[0][written:]


class BlockWorkers:
    """A csv_source.Parser whose blocks are parsed by `processes` child processes."""

    blocks_per_group = GROUP_BLOCKS
    reads_ahead = True

    def __init__(self, job: BlockJob, encoding: str, processes: int) -> None:
        self.job = job
        # Blocks of a file in UTF-8 (or one byte a character) are cut in its bytes, and only
        # the children decode them; others are cut as text and travel as UTF-16.
        self.cuts_bytes = cut_as_bytes(encoding)
        self._wire = encoding if self.cuts_bytes else _TEXT_WIRE
        # The children import what this process imported, from where it did.
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        self._children = [
            subprocess.Popen([sys.executable, "-m", __name__], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, env=env)
            for _ in range(processes)]
        for child in self._children:
            assert child.stdin is not None and child.stdout is not None
            _widen(child.stdin)
            _widen(child.stdout)
        self._sent = self._taken = 0
        self.peak_kib = 0  # the children's, known once they are closed
        for child in self._children:
            self._send(child, (job, self._wire, self.cuts_bytes))

    def room(self, in_flight: int) -> bool:
        return in_flight < DEPTH * len(self._children)

    def submit(self, blocks: list[Block], final: bool) -> None:
        # The blocks go after their sizes, straight from their bytes. Text goes as UTF-16:
        # pickling it would encode it as UTF-8 at twice the cost on both sides (text that is
        # not all ASCII is two bytes a character in memory), and copy it once more.
        encoded = [block if isinstance(block, bytes) else block.encode(_TEXT_WIRE, "surrogatepass")
                   for block in blocks]
        child = self._children[self._sent % len(self._children)]
        self._send(child, (final, list(map(len, encoded))))
        assert child.stdin is not None
        try:
            _write_all(child.stdin.fileno(), encoded)
        except BrokenPipeError:
            raise self._lost(child) from None
        self._sent += 1

    def take(self) -> list[Parsed | None]:
        child = self._children[self._taken % len(self._children)]
        self._taken += 1
        assert child.stdout is not None
        try:
            results: list[Parsed | None] = _receive(child.stdout)
        except EOFError:
            raise self._lost(child) from None
        return results

    def _peak_kib(self) -> int:
        """The children's peak memory (VmHWM) added up, while they run."""
        total = 0
        for child in self._children:
            try:
                with open(f"/proc/{child.pid}/status") as status:
                    total += next((int(line.split()[1]) for line in status
                                   if line.startswith("VmHWM:")), 0)
            except OSError:
                pass
        return total

    def close(self) -> None:
        """Ends the children: at the end of their input when every result was taken, else
        at once (what they were parsing is not wanted)."""
        answered = self._taken == self._sent
        if self._children:
            self.peak_kib = self._peak_kib()
        for child in self._children:
            assert child.stdin is not None and child.stdout is not None
            with contextlib.suppress(BrokenPipeError):
                child.stdin.close()
            if not answered:
                child.kill()
            try:
                child.wait(_EXIT_SECONDS)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
            child.stdout.close()
        self._children = []

    def _send(self, child: subprocess.Popen[bytes], value: Any) -> None:
        assert child.stdin is not None
        try:
            _send(child.stdin, value)
        except BrokenPipeError:
            raise self._lost(child) from None

    @staticmethod
    def _lost(child: subprocess.Popen[bytes]) -> ParsingProcessLost:
        return ParsingProcessLost(
            f"a process parsing the file ended unexpectedly (exit code {child.poll()})")


def main() -> None:
    # The results go out on a copy of stdout; anything else printed goes to stderr.
    out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    source = sys.stdin.buffer
    inbox: queue.Queue[tuple[list[str], list[int], bool] | None] = queue.Queue()
    try:
        job, wire, cuts_bytes = _receive(source)
        threading.Thread(target=_decode_groups, args=(source, wire, inbox), daemon=True).start()
        while (group := inbox.get()) is not None:
            texts, sizes, final = group
            results: list[Parsed | None] = [None]
            if texts:
                results = parse_blocks(job, texts, final)
            if texts and cuts_bytes:
                results = list(map(_in_bytes, results, texts, sizes, itertools.repeat(wire)))
            _send(out, results)
    except (EOFError, BrokenPipeError):
        pass  # the job's process ended first: nobody wants the rest


def _decode_groups(source: IO[bytes], wire: str,
                   inbox: queue.Queue[tuple[list[str], list[int], bool] | None]) -> None:
    """Each group as it comes in, decoded; no blocks for a group that does not decode (the
    parent reads it again, and names the error); None at the end of the input."""
    try:
        while True:
            final, sizes = _receive(source)
            data = memoryview(_read_exactly(source, sum(sizes)))
            ends = list(itertools.accumulate(sizes))
            try:
                texts = [str(data[end - size : end], wire, "surrogatepass")
                         for size, end in zip(sizes, ends, strict=True)]
            except UnicodeDecodeError:
                texts = []
            inbox.put((texts, sizes, final))
    except EOFError:
        inbox.put(None)


def _in_bytes(parsed: Parsed | None, text: str, size: int, encoding: str) -> Parsed | None:
    """A result for a block cut as bytes (`size` of them), with what it used counted in bytes
    as the block was: short of it only when a record was cut off."""
    if parsed is None:
        return None
    used = (size if parsed.used_chars == len(text)
            else len(text[: parsed.used_chars].encode(encoding)))
    return parsed._replace(used_chars=used)


if __name__ == "__main__":
    main()
