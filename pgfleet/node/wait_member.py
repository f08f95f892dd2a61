"""wait-member SECONDS: wait until this node's Patroni member runs PostgreSQL and the cluster has a leader.

A Patroni that keeps crashing will not come up by waiting: after three
restarts by systemd it fails at once, with Patroni's log.
"""

from __future__ import annotations

import subprocess
import sys
import time

from . import patroni
from .config import NodeConfig
from .patroni import Member

#: systemd restarts after which waiting longer is pointless
MAX_RESTARTS = 3


def decide(healthy: bool, members: list[Member], restarts: int, restarts_at_start: int) -> str:
    """``done`` (running, a leader exists), ``failing`` (systemd keeps restarting Patroni) or ``wait``."""
    if healthy and patroni.leader(members) is not None:
        return "done"
    if restarts >= restarts_at_start + MAX_RESTARTS:
        return "failing"
    return "wait"


def _restarts(unit: str) -> int:
    out = subprocess.run(["systemctl", "show", "-p", "NRestarts", "--value", unit], capture_output=True, text=True).stdout
    return int(out.strip() or 0)


def _journal(unit: str) -> None:
    subprocess.run(["journalctl", "-u", unit, "-n", "30", "--no-pager"], stdout=sys.stderr, check=False)


def _observe(api: patroni.Client) -> tuple[bool, list[Member]]:
    try:
        if api.status("/health") != 200:
            return False, []
        return True, api.cluster()
    except (OSError, patroni.PatroniError):
        return False, []


def main(argv: list[str], cfg: NodeConfig) -> int:
    timeout = int(argv[0]) if argv else 300
    api = patroni.Client(cfg.patroni_url, ca_file=cfg.ca_file)
    deadline = time.time() + timeout
    start = _restarts(cfg.patroni_unit)
    while time.time() < deadline:
        what = decide(*_observe(api), _restarts(cfg.patroni_unit), start)
        if what == "done":
            print("member running, cluster has a leader")
            return 0
        if what == "failing":
            print(f"{cfg.patroni_unit} keeps failing:", file=sys.stderr, flush=True)
            _journal(cfg.patroni_unit)
            return 1
        time.sleep(2)
    print(f"timed out after {timeout}s waiting for this member; Patroni says:", file=sys.stderr)
    try:
        print(api.request("GET", "/patroni")[1], file=sys.stderr, flush=True)
    except OSError:
        pass
    _journal(cfg.patroni_unit)
    return 1
