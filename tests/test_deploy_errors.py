"""A deploy refuses bad input before touching hosts, and stops at a failed step naming host, step and output."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pgfleet import ROOT
from pgfleet import lab as lab_mod

PGFLEET = [str(Path(sys.executable).with_name("pgfleet"))]


def pgfleet(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PGFLEET, *args], capture_output=True, text=True, timeout=900)


@pytest.mark.parametrize("command", [["deploy"], ["up"], ["status"], ["dsn"]])
def test_bad_stack_is_refused_before_any_host_is_touched(command: list[str], tmp_path: Path) -> None:
    doc = yaml.safe_load((ROOT / "stacks" / "Pulumi.lab.yaml").read_text())
    doc["config"]["pgfleet:clusters"][0]["server_type"] = "cx22"
    bad = tmp_path / "Pulumi.lab.yaml"
    bad.write_text(yaml.safe_dump(doc))
    r = pgfleet(*command, str(bad))
    assert r.returncode == 2, r.stdout + r.stderr
    assert "pgfleet:clusters[0].server_type: 'cx22'" in r.stderr and "cx23" in r.stderr
    # refused before pyinfra (or SSH) ever started
    assert "Starting operation" not in r.stderr + r.stdout and "Connecting" not in r.stderr + r.stdout
    assert "Traceback" not in r.stderr


@pytest.mark.lab
def test_failed_step_stops_the_deploy_and_names_host_step_and_output(deployed, lab_spec):  # type: ignore[no-untyped-def]
    host = "lab-main-3"
    lab_mod.run(lab_spec, host, "systemctl stop pgbouncer@1 && systemctl mask pgbouncer@1")
    try:
        r = pgfleet("deploy", "lab", "--limit", host)
        assert r.returncode != 0
        err = r.stderr
        assert "deploy of lab failed at step" in err and "PgBouncer 1 running" in err, err[-3000:]
        assert host in err.split("failed at step", 1)[1]
        assert "masked" in err, "the failing command's own output is shown"
        # the deploy stopped there: HAProxy, which comes after PgBouncer, was not reached on that host
        after = err.split("--> Starting operation: ", )[-1]
        assert "HAProxy" not in after.splitlines()[0]
    finally:
        lab_mod.run(lab_spec, host, "systemctl unmask pgbouncer@1 && systemctl start pgbouncer@1")
    assert pgfleet("deploy", "lab", "--limit", host).returncode == 0


def test_down_of_a_cloud_stack_needs_yes() -> None:
    r = pgfleet("down", "prod")
    assert r.returncode == 1
    assert "destroys every server of prod" in r.stderr and "--yes" in r.stderr
