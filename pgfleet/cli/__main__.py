"""``python -m pgfleet.cli``: the same command line as ``pgfleet``."""

from pgfleet.cli import main

main()
