"""Starts a Celery worker for Marquee's jobs: `python -m services.worker`."""

from __future__ import annotations

import os

from services.worker.app import app


def main() -> None:
    app.worker_main([
        "worker",
        "--loglevel", os.environ.get("LOG_LEVEL", "INFO"),
        "--concurrency", os.environ.get("WORKER_CONCURRENCY", "1"),
        "--hostname", os.environ.get("WORKER_NAME", "marquee@%h"),
        "--without-gossip", "--without-mingle",
    ])


if __name__ == "__main__":
    main()
