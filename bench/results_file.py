"""Writing a benchmark's figures: one JSON file per benchmark in bench/results/, with the machine.

Figures only; nothing passes or fails on them.
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    return {"cpus": os.cpu_count(), "mem_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
            "kernel": platform.release()}


def write(name: str, result: dict[str, Any]) -> Path:
    """Add when/machine to ``result``, write bench/results/<name>.json, print it."""
    doc = {**result, "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "machine": machine()}
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{name}.json"
    out.write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps(doc, indent=2))
    return out


def timed_cli(*args: str) -> tuple[float, str]:
    """Run ``pgfleet ARGS`` from the repository root (failure raises); (seconds, stdout)."""
    import subprocess
    import sys

    t = time.monotonic()
    cp = subprocess.run([sys.executable, "-m", "pgfleet.cli", *args], check=True, cwd=RESULTS.parent.parent,
                        stdout=subprocess.PIPE, text=True)
    return round(time.monotonic() - t, 2), cp.stdout
