"""Starts a Celery worker for Marquee's jobs: `python -m services.worker`."""

from __future__ import annotations

from services.worker.app import app, settings


def main() -> None:
    app.worker_main([
        "worker",
        "--loglevel", settings.log_level,
        "--concurrency", str(settings.worker_concurrency),
        "--hostname", settings.worker_name,
        "--without-gossip", "--without-mingle",
    ])


if __name__ == "__main__":
    main()
