"""What the monitoring tests share: the spec they generate from, and promtool/amtool that must be installed."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from pgfleet import spec as spec_mod
from pgfleet.schema import Spec

INSTALL_HINT = ("apt-get install -y --no-install-recommends prometheus prometheus-alertmanager "
                "(./bootstrap setup does it, with policy-rc.d keeping the daemons stopped)")
WATCH = {"database": "app", "table": "items", "column": "embedding", "operator": "<=>", "k": 10, "sample_size": 50, "target_recall": 0.95}


def lab_spec(**monitoring: object) -> Spec:
    """The lab stack, with one watched vector index and ``monitoring`` settings on top."""
    doc = yaml.safe_load(spec_mod.stack_path("lab").read_text())
    data = spec_mod.config_from_yaml(yaml.safe_dump(doc), "lab")
    data["environment"] = "lab"
    data["monitoring"] = {"vector_indexes": [WATCH], **monitoring}
    return spec_mod.parse(data, "lab")


def tool(name: str) -> str:
    """The path of promtool/amtool; a missing one fails the test (never skips) with how to install it."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: {INSTALL_HINT}", pytrace=False)
    return path


def run(name: str, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([tool(name), *map(str, args)], capture_output=True, text=True, timeout=120)
