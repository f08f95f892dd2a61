#!/usr/bin/env python3
"""How long `pgfleet lab up` takes: cold (no base image cached) and warm.

Runs the real CLI (root only), always ends with the lab down, and writes
bench/results/lab_up.json. Figures only; nothing passes or fails on them.

    .venv/bin/python bench/lab_up.py [--stack lab] [--trials 1] [--purge-apt]

--purge-apt also empties the apt proxy's cache before the cold run (the
cold image build then downloads every package from deb.debian.org).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import results_file  # bench/results_file.py (this script's own folder is on sys.path)

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "pgfleet.cli"]


def timed(*args: str) -> float:
    t = time.monotonic()
    subprocess.run([*CLI, *args], check=True, cwd=ROOT)
    return round(time.monotonic() - t, 2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stack", default="lab")
    ap.add_argument("--trials", type=int, default=1)
    ap.add_argument("--purge-apt", action="store_true")
    a = ap.parse_args()

    sys.path.insert(0, str(ROOT))
    from pgfleet.lab import aptproxy, image
    from pgfleet.stack import Stack

    n_hosts = len(Stack.open(a.stack).inventory(reachable=False).hosts)
    runs: list[dict[str, object]] = []
    try:
        for trial in range(a.trials):
            timed("lab", "down", "--stack", a.stack)
            image.purge()
            if a.purge_apt:
                aptproxy.purge()
            cold = timed("lab", "up", "--stack", a.stack)
            again = timed("lab", "up", "--stack", a.stack)
            down = timed("lab", "down", "--stack", a.stack)
            warm = timed("lab", "up", "--stack", a.stack)
            runs.append({"trial": trial + 1, "cold_up_s": cold, "up_again_while_up_s": again, "down_s": down, "warm_up_s": warm})
    finally:
        subprocess.run([*CLI, "lab", "down", "--stack", a.stack], check=True, cwd=ROOT)

    result = {
        "benchmark": "pgfleet lab up",
        "stack": a.stack,
        "hosts": n_hosts,
        "apt_cache": "purged before cold run" if a.purge_apt else "kept (cold = no base image only)",
        "runs": runs,
    }
    results_file.write("lab_up", result)


if __name__ == "__main__":
    main()
