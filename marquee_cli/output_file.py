"""Where a streamed body goes: a file (written beside its final name and renamed into place, so
that an interrupted download never leaves half a file under the real name) or stdout."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from pathlib import Path

from marquee_cli.errors import CliError
from marquee_cli.exit_codes import ExitCode


def write_stream(chunks: Iterable[bytes], target: Path | None) -> int:
    """Writes the chunks to `target`, or to stdout when it is None or `-`; returns the bytes
    written."""
    written = 0
    if target is None or str(target) == "-":
        out = sys.stdout.buffer
        for chunk in chunks:
            out.write(chunk)
            written += len(chunk)
        out.flush()
        return written
    partial = target.with_name(f".{target.name}.part")
    try:
        with partial.open("wb") as f:
            for chunk in chunks:
                f.write(chunk)
                written += len(chunk)
        os.replace(partial, target)
    except OSError as exc:
        raise CliError(f"cannot write {target}: {exc.strerror or exc}", ExitCode.REFUSED) from None
    finally:
        partial.unlink(missing_ok=True)
    return written
