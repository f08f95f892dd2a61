"""``python3 -m pgfleet_probe [--once] CONFIG.json``: the exporter, or one measurement printed as JSON."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from types import FrameType

from .config import ProbeConfig
from .exporter import Stopped, run, serve


def _stop(signum: int, frame: FrameType | None) -> None:
    raise Stopped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pgfleet-probe", description="pgvector recall probe: a Prometheus exporter")
    parser.add_argument("--once", action="store_true",
                        help="measure every watch once, print the results as JSON, exit 1 if any failed")
    parser.add_argument("config", help="the JSON file the deploy writes (e.g. /etc/pgfleet/probe.json)")
    args = parser.parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        config = ProbeConfig.load(args.config)
    except (OSError, ValueError, TypeError) as e:
        print(f"pgfleet-probe: {args.config}: {e}", file=sys.stderr)
        return 2
    if args.once:
        outcomes = [run(w) for w in config.watches]
        print(json.dumps({"watches": [o.report() for o in outcomes]}, indent=1))
        return 0 if all(o.ok for o in outcomes) else 1
    signal.signal(signal.SIGTERM, _stop)
    try:
        serve(config)
    except (Stopped, KeyboardInterrupt):
        logging.getLogger("pgfleet_probe").info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
