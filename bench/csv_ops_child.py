"""One measured run of a CSV operation, in a process of its own so that its peak memory is its
own: `python -m bench.csv_ops_child marquee|pandas dedupe|unique|filter FILE`. Prints one JSON
object: seconds and cpu_seconds of the operation, load_seconds and load_cpu_seconds of what
comes before it (the imports; for Marquee also the dialect, which its upload detects), peak_mb
(VmHWM; for Marquee with its parsing processes' added, children_peak_mb), rows_in, rows_out
(dedupe, filter) or distinct (unique). CPU seconds count the parsing processes'. The result is
written to /dev/null, as a download would be consumed."""

from __future__ import annotations

import json
import resource
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

# What every run asks: the bench's files are TMDB rows (csv_ops.py writes them).
UNIQUE_COLUMN = "original_language"
FILTER_COLUMN, FILTER_AT_LEAST = "vote_average", "7.5"


def _chunks(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            yield chunk


Run = Callable[[str, Path], dict[str, Any]]


def marquee(path: Path) -> Run:
    """The worker's own code, loaded (a running worker has it), with the file's dialect as its
    upload detected it (services/upload/csv_header.py): the reader, the parsing processes
    (OPERATION_PROCESSES, 2 by default) and the operation with its spills, the result's
    bytes."""
    from services.common.settings import Settings
    from services.worker.block_workers import BlockWorkers, Parallelism
    from services.worker.csv_source import (
        ByteStream,
        CsvLimits,
        detect_dialect,
        is_utf8,
        stepped_blocks,
    )
    from services.worker.operation_job import FileOperation
    from services.worker.operation_spec import Condition, OperationSpec

    limits = CsvLimits(max_row_chars=1 << 20, max_header_chars=1 << 16, max_columns=256)
    parallelism = Parallelism.from_settings(Settings.from_env())
    dialect = detect_dialect(ByteStream(_chunks(path)), lambda: is_utf8(_chunks(path)))

    def run(operation: str, path: Path) -> dict[str, Any]:
        spec = {"dedupe": OperationSpec("dedupe"),
                "unique": OperationSpec("unique", column=UNIQUE_COLUMN),
                "filter": OperationSpec("filter", conditions=(
                    Condition(FILTER_COLUMN, "gte", FILTER_AT_LEAST),))}[operation]
        rows_in = 0
        with tempfile.TemporaryDirectory() as spill, open("/dev/null", "wb") as sink:
            run = FileOperation(spec, path.stat().st_size, Path(spill), parallelism)
            for parsed in stepped_blocks(ByteStream(_chunks(path)), lambda: True, limits,
                                         dialect, run.begin):
                rows_in += parsed.records
                op = run.add(parsed)
            for chunk in op.result(run.header, lambda: None):
                sink.write(chunk)
        children_kib = run.parser.peak_kib if isinstance(run.parser, BlockWorkers) else 0
        return {"rows_in": rows_in, "rows_out": op.tally.rows_out,
                "distinct": op.tally.distinct, "children_peak_mb": round(children_kib / 1024, 1)}

    return run


def pandas(path: Path) -> Run:
    """What a user would do instead: every value as text, as read (no NaN guessing)."""
    import pandas as pd

    def run(operation: str, path: Path) -> dict[str, Any]:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        if operation == "dedupe":
            out = frame.drop_duplicates()
            out.to_csv("/dev/null", index=False)
            return {"rows_in": len(frame), "rows_out": len(out)}
        if operation == "unique":
            counts = frame[UNIQUE_COLUMN].value_counts()
            with open("/dev/null", "w") as sink:
                json.dump({"values": [{"value": v, "count": int(n)}
                                      for v, n in counts.items()]}, sink)
            return {"rows_in": len(frame), "distinct": len(counts)}
        numbers = pd.to_numeric(frame[FILTER_COLUMN], errors="coerce")
        out = frame[numbers >= float(FILTER_AT_LEAST)]
        out.to_csv("/dev/null", index=False)
        return {"rows_in": len(frame), "rows_out": len(out)}

    return run


def _peak_kib() -> int:
    """This process's peak RSS: VmHWM, which starts afresh at exec. ru_maxrss keeps the peak of
    the process it was forked from (the bench, ~90 MB), which hid what a small run uses."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _children_cpu() -> float:
    """CPU seconds of the child processes that ended (Marquee's parsing processes)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    tool, operation, path = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    started, cpu_started = time.perf_counter(), time.process_time()
    run = {"marquee": marquee, "pandas": pandas}[tool](path)
    loaded, cpu_loaded = time.perf_counter(), time.process_time()
    children_cpu = _children_cpu()
    counts = run(operation, path)
    # CPU seconds as well: on a shared machine they vary far less than the wall clock. The
    # parsing processes' count, in CPU and in memory.
    seconds = time.perf_counter() - loaded
    cpu_seconds = time.process_time() - cpu_loaded + _children_cpu() - children_cpu
    peak_mb = _peak_kib() / 1024 + counts.get("children_peak_mb", 0)
    print(json.dumps({"seconds": round(seconds, 3), "cpu_seconds": round(cpu_seconds, 3),
                      "load_seconds": round(loaded - started, 3),
                      "load_cpu_seconds": round(cpu_loaded - cpu_started, 3),
                      "peak_mb": round(peak_mb, 1), **counts}))


if __name__ == "__main__":
    main()
