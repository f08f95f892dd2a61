#!/usr/bin/env python3
"""How long `pgfleet deploy` takes: on fresh lab hosts, and again with nothing to change.

Runs the real CLI (root only): lab down, lab up (fresh hosts from the cached
image), `pgfleet deploy lab` (bare Debian 13 -> HA cluster), `pgfleet deploy
lab` again (must change nothing), then lab down. Writes
bench/results/deploy.json. Figures only; nothing passes or fails on them.

    .venv/bin/python bench/deploy.py [--stack lab] [--trials 1]
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
from pathlib import Path

import results_file  # bench/results_file.py (this script's own folder is on sys.path)

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "pgfleet.cli"]


timed = results_file.timed_cli


def changes(summary: str) -> int:
    m = re.search(r"changed (\d+) \(operation, host\)", summary)
    return int(m.group(1)) if m else 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stack", default="lab")
    ap.add_argument("--trials", type=int, default=1)
    ap.add_argument("--series", default=None,
                    help="keep these runs as a named series beside earlier ones (e.g. before/after a change); "
                         "run with PYTHONPATH=<other checkout> to measure another version of pgfleet")
    a = ap.parse_args()

    runs: list[dict[str, object]] = []
    try:
        for trial in range(a.trials):
            timed("lab", "down", "--stack", a.stack)
            up_s, _ = timed("lab", "up", "--stack", a.stack)
            full_s, full_out = timed("deploy", a.stack)
            again_s, again_out = timed("deploy", a.stack)
            runs.append({"trial": trial + 1, "lab_up_s": up_s, "full_deploy_s": full_s, "full_deploy_changes": changes(full_out),
                         "no_change_redeploy_s": again_s, "no_change_redeploy_changes": changes(again_out)})
    finally:
        subprocess.run([*CLI, "lab", "down", "--stack", a.stack], check=True, cwd=ROOT)

    series: dict[str, object] = {}
    if a.series:
        import json

        old = results_file.RESULTS / "deploy.json"
        series = json.loads(old.read_text()).get("series", {}) if old.exists() else {}
        series[a.series] = {"runs": runs, "median_full_deploy_s": statistics.median(r["full_deploy_s"] for r in runs),
                            "median_no_change_redeploy_s": statistics.median(r["no_change_redeploy_s"] for r in runs),
                            "pgfleet": str(Path(__import__("pgfleet").__file__).parent)}
    result = {
        "benchmark": "pgfleet deploy",
        "stack": a.stack,
        "what": "fresh lab hosts (Debian 13, packages through the lab's apt proxy) -> 3-node HA cluster; then the same deploy again",
        "peer_reference": {"autobase_cold_deploy_s": 391, "autobase_reapply_no_change_s": 115},
        "runs": runs,
        **({"series": series} if series else {}),
    }
    results_file.write("deploy", result)


if __name__ == "__main__":
    main()
