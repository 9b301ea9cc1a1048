"""`python -m marquee_cli`, the same as `.venv/bin/marquee`."""

from marquee_cli.app import main

main()
