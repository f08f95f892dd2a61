"""A lab stack whose lab is not running is refused before any packet is sent.

When a lab is down its addresses (198.18.0.0/24) route through this machine's
default gateway, off the machine. Every command that talks to a lab stack's
hosts must stop first with ``the lab is not running: pgfleet lab up``. The
test uses a copy of the lab stack under another name (its own bridge, never
up), and an nftables counter on this machine's output that drops and counts
every packet to the lab range leaving through anything but a lab bridge: it
must stay at 0.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pgfleet import ROOT

TABLE = "pgfleet_guard_test"
STACK = "guardlab"


@pytest.fixture
def escapes() -> Iterator[callable]:  # type: ignore[valid-type]
    """Drop and count packets to the lab range that would leave the machine (not through a pgfl-* bridge)."""
    if os.geteuid() != 0 or shutil.which("nft") is None:
        pytest.fail("this test needs root and nftables (./bootstrap installs nftables)")
    rules = (f"table inet {TABLE} {{\n  chain out {{\n    type filter hook output priority -200; policy accept;\n"
             '    ip daddr 198.18.0.0/24 oifname != "pgfl-*" counter drop\n  }\n}\n')
    subprocess.run(["nft", "-f", "-"], input=rules, text=True, check=True)

    def packets() -> int:
        doc = json.loads(subprocess.run(["nft", "-j", "list", "table", "inet", TABLE], capture_output=True, text=True,
                                        check=True).stdout)
        return sum(e["counter"]["packets"] for item in doc["nftables"] if "rule" in item
                   for e in item["rule"]["expr"] if "counter" in e)
    try:
        yield packets
    finally:
        subprocess.run(["nft", "delete", "table", "inet", TABLE], check=False)


@pytest.fixture
def down_lab(tmp_path: Path) -> dict[str, str]:
    """A lab stack that is certainly not running: the shipped lab's settings under another name and state dir."""
    stacks = tmp_path / "stacks"
    stacks.mkdir()
    shutil.copy(ROOT / "stacks" / "Pulumi.lab.yaml", stacks / f"Pulumi.{STACK}.yaml")
    return {**os.environ, "PGFLEET_STACKS_DIR": str(stacks), "PGFLEET_STATE_DIR": str(tmp_path / "state")}


@pytest.mark.parametrize("command", [
    ["status", STACK],
    ["deploy", STACK],
    ["backups", STACK],
    ["check-backups", STACK],
    ["backup", STACK],
    ["drill", STACK, "switchover"],
    ["lab", "ssh", "lab-main-1", "--stack", STACK, "true"],
])
def test_commands_refuse_a_lab_that_is_not_running_and_send_nothing(command: list[str], escapes, down_lab) -> None:  # type: ignore[no-untyped-def]
    p = subprocess.run([sys.executable, "-m", "pgfleet.cli", *command], env=down_lab, capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 1, p.stdout + p.stderr
    assert "the lab is not running: pgfleet lab up" in p.stderr, p.stderr
    assert "Traceback" not in p.stderr
    assert escapes() == 0, "a packet to a lab address was about to leave the machine"


def test_printing_commands_still_work_without_the_lab(down_lab) -> None:  # type: ignore[no-untyped-def]
    for command in (["inventory", STACK], ["dsn", STACK]):
        p = subprocess.run([sys.executable, "-m", "pgfleet.cli", *command], env=down_lab, capture_output=True, text=True,
                           timeout=120)
        assert p.returncode == 0, p.stderr
        assert "198.18.0.11" in p.stdout


def test_the_counter_counts_what_would_leave(escapes) -> None:  # type: ignore[no-untyped-def]
    """The check can fail: a packet to the lab range sent out of the machine's default interface
    is counted (and dropped before it leaves)."""
    import socket

    default = json.loads(subprocess.run(["ip", "-j", "route", "show", "default"], capture_output=True, text=True,
                                        check=True).stdout or "[]")
    if not default:
        pytest.fail("this machine has no default route to send the probe packet out of")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, default[0]["dev"].encode())
        try:
            s.sendto(b"x", ("198.18.0.99", 9))
        except OSError:
            pass  # nft's drop may surface as EPERM: the packet was still counted
    assert escapes() >= 1


def test_vector_advise_refuses_a_lab_that_is_not_running_with_could_not_measure(escapes, down_lab) -> None:  # type: ignore[no-untyped-def]
    # exit 2 (not 1): 1 means "advice exists" for this command
    p = subprocess.run([sys.executable, "-m", "pgfleet.cli", "vector", "advise", STACK, "--json"], env=down_lab, capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 2, p.stdout + p.stderr
    assert "the lab is not running: pgfleet lab up" in p.stderr and "Traceback" not in p.stderr, p.stderr
    assert escapes() == 0, "a packet to a lab address was about to leave the machine"
