"""A service's periodic job: runs on a daemon thread while the service serves."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


def every(interval: float, job: Callable[[], object], stop: threading.Event, name: str,
          first_now: bool = False) -> None:
    """Runs `job` every `interval` seconds until `stop` is set; a failed round is logged and
    the next one runs as planned."""
    def loop() -> None:
        wait = 0.0 if first_now else interval
        while not stop.wait(wait):
            wait = interval
            try:
                job()
            except Exception:
                log.exception("periodic job failed; trying again next round",
                              extra={"job": name})

    threading.Thread(target=loop, name=name, daemon=True).start()
