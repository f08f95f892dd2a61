"""on-leader COMMAND [ARGS...]: run a command only on the cluster's current leader.

Exits 0 without running it on other members (saying who applies it); fails
when the cluster has no leader, for then nobody could apply it and the deploy
must say so.
"""

from __future__ import annotations

import os
import sys

from . import patroni
from .config import NodeConfig
from .patroni import Member


def decide(is_primary: bool, members: list[Member]) -> tuple[str, str]:
    """("run", "") on the primary; ("skip", line to print) on another member; ("fail", why) without a leader."""
    if is_primary:
        return "run", ""
    names = " ".join(m.name for m in patroni.leaders(members))
    if not names:
        return "fail", "the cluster has no leader"
    return "skip", f"skipped here: {names} is the leader and applies it"


def main(argv: list[str], cfg: NodeConfig) -> int:
    if not argv:
        print("usage: on-leader COMMAND [ARGS...]", file=sys.stderr)
        return 2
    api = patroni.Client(cfg.patroni_url, ca_file=cfg.ca_file)
    try:
        primary = api.status("/primary") == 200
        what, line = decide(primary, [] if primary else api.cluster())
    except (OSError, patroni.PatroniError) as e:
        print(f"Patroni REST API on this host does not answer: {e}", file=sys.stderr)
        return 1
    if what == "run":
        sys.stdout.flush()
        os.execvp(argv[0], argv)
    print(line, file=sys.stderr if what == "fail" else sys.stdout)
    return 1 if what == "fail" else 0
