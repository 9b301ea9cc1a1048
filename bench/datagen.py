"""Movie CSVs of any size from the shared TMDB file: its rows repeated under fresh ids."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

DATA = Path(os.environ.get("MARQUEE_TEST_DATA",
                           Path(__file__).resolve().parents[2] / "shared" / "data"))
TMDB = DATA / "tmdb-top10k.csv"


def _template() -> tuple[str, list[str]]:
    """The header line and each movie row rendered as CSV text without its id field."""
    with open(TMDB, newline="", encoding="utf-8") as f:
        source = list(csv.reader(f))
    header, body = source[0], source[2:]  # source[1] is the file's junk placeholder row
    assert header[0] == "id", header
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(header)
    rests = []
    for row in body:
        line = io.StringIO()
        csv.writer(line, lineterminator="\n").writerow(row[1:])
        rests.append(line.getvalue())
    return out.getvalue(), rests


def write_csv(path: Path, *, id_base: int, rows: int | None = None,
              min_bytes: int | None = None) -> tuple[int, int]:
    """Writes `rows` movies (or as many as reach `min_bytes`) with ids id_base, id_base+1, ...
    Returns (rows, bytes)."""
    header, rests = _template()
    written = 0
    size = 0
    with open(path, "w", encoding="utf-8", newline="") as f:
        size += f.write(header)
        buffer: list[str] = []
        while (rows is None or written < rows) and (min_bytes is None or size < min_bytes):
            line = f"{id_base + written},{rests[written % len(rests)]}"
            buffer.append(line)
            size += len(line.encode()) if not line.isascii() else len(line)
            written += 1
            if len(buffer) >= 10_000:
                f.write("".join(buffer))
                buffer.clear()
        f.write("".join(buffer))
    return written, path.stat().st_size
