"""The CSV operations (dedupe, unique, filter) against what a user would do instead, on the same
file in the same run: pandas (drop_duplicates, value_counts, a boolean filter) and the shell
(sort -u, awk '!seen[$0]++', cut | sort | uniq -c, awk on a field). Each run is a process of its
own (bench/csv_ops_child.py, or /usr/bin/time for the shell), so its peak memory is its own.

Marquee's figure is the worker's code on a local file: the reader, the operation with its
spills, the result written out; not the gRPC transfer from and to the upload service.
The file is TMDB rows (quoted commas and line breaks in overviews) where 3 rows in 10 repeat
an earlier row, so dedupe has work to do."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.csv_ops_child import FILTER_AT_LEAST, FILTER_COLUMN, UNIQUE_COLUMN
from bench.datagen import _template

SHELL = {
    "dedupe": [("sort -u", "sort -u {f}"), ("awk !seen[$0]++", "awk '!seen[$0]++' {f}")],
    "unique": [("cut | sort | uniq -c", "cut -d, -f{u} {f} | sort | uniq -c | sort -rn")],
    "filter": [("awk -F, $N>=v", "awk -F, 'NR==1 || ${n}>={v}' {f}")],
}


def write_file(path: Path, min_bytes: int) -> int:
    """TMDB rows until `min_bytes`; row i repeats row i // 2 when i % 10 < 3. Its size."""
    header, rests = _template()
    size = 0
    with open(path, "w", encoding="utf-8", newline="") as f:
        size += f.write(header)
        i = 0
        while size < min_bytes:
            j = i // 2 if i % 10 < 3 else i
            size += f.write(f"{j},{rests[j % len(rests)]}")
            i += 1
    return path.stat().st_size


def _child(tool: str, operation: str, path: Path) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-m", "bench.csv_ops_child", tool, operation,
                          str(path)], check=True, capture_output=True, text=True)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def _shell(command: str) -> dict[str, Any]:
    """Seconds, peak MB (GNU time's %M of the pipeline's largest process) and output lines."""
    started = time.perf_counter()
    out = subprocess.run(["/usr/bin/time", "-f", "%M", "sh", "-c", f"{command} | wc -l"],
                         check=True, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    return {"seconds": round(seconds, 3),
            "peak_mb": round(int(out.stderr.strip().splitlines()[-1]) / 1024, 1),
            "lines_out": int(out.stdout.strip())}


def measure(sizes: list[int], work: Path, log: Callable[[str], None]) -> list[dict[str, Any]]:
    header = _template()[0].strip().split(",")
    u, n = header.index(UNIQUE_COLUMN) + 1, header.index(FILTER_COLUMN) + 1
    entries = []
    for size in sizes:
        path = work / f"csvops-{size >> 20}mib.csv"
        actual = write_file(path, size)
        for operation in ("dedupe", "unique", "filter"):
            marquee = _child("marquee", operation, path)
            pandas = _child("pandas", operation, path)
            rows = marquee["rows_in"]
            entry: dict[str, Any] = {
                "operation": operation, "file_bytes": actual, "rows": rows,
                "marquee": {**marquee, "rows_per_s": round(rows / marquee["seconds"])},
                "pandas": {**pandas, "rows_per_s": round(rows / pandas["seconds"])},
                # Against a pandas script as a user runs it, its import counted; Marquee's
                # worker has its code loaded, and the dialect from the upload.
                "speed_vs_pandas": round(
                    (pandas["load_seconds"] + pandas["seconds"]) / marquee["seconds"], 2),
                # On a shared machine the wall clock swings by a third; CPU seconds far less.
                "cpu_speed_vs_pandas": round(
                    (pandas["load_cpu_seconds"] + pandas["cpu_seconds"])
                    / marquee["cpu_seconds"], 2),
                # The work alone, neither's loading counted.
                "compute_cpu_speed_vs_pandas": round(
                    pandas["cpu_seconds"] / marquee["cpu_seconds"], 2),
                "memory_vs_pandas": round(marquee["peak_mb"] / pandas["peak_mb"], 2),
                "shell": {}}
            for name, template in SHELL[operation]:
                shell = _shell(template.format(f=path, u=u, n=n, v=FILTER_AT_LEAST))
                shell["rows_per_s"] = round(rows / shell["seconds"])
                # Lines, not rows: a quoted line break splits a row, a quoted comma a field.
                shell["speed_vs_marquee"] = round(marquee["seconds"] / shell["seconds"], 2)
                entry["shell"][name] = shell
            log(f"csvops {operation} {actual >> 20} MiB: {json.dumps(entry)}")
            entries.append(entry)
        path.unlink()
    return entries
