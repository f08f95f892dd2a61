"""Which member takes the cluster's backups: a healthy standby, the leader only when none is.

One rule for the scheduled units and ``pgfleet backup``. pgBackRest copies
the data files from the member it runs on when that member is a standby
(``backup-standby=prefer``; the primary only starts and stops the backup over
pgBackRest's TLS server), so the backup member is chosen among the streaming
replicas: an asynchronous one first (a backup's I/O then never slows the
synchronous standby's commits), then the one with the least lag, then by
name, so every member computes the same answer from Patroni's view. Without a
streaming replica the leader backs up itself.

On every database node the launcher ``backup-member`` is the guard in front
of the scheduled backup units::

    backup-member MEMBER COMMAND [ARGS...]   # run COMMAND if MEMBER (this node's Patroni name) is the backup member
    backup-member --which                    # print the backup member's name
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable

from . import patroni
from .config import NodeConfig
from .patroni import Member


class NoLeader(Exception):
    """The cluster has no leader: no member can take a consistent backup."""


def choose(members: Iterable[Member]) -> str:
    """The backup member's name from Patroni's members."""
    ms = list(members)
    if not any(m.is_leader and m.state == "running" for m in ms):
        raise NoLeader(f"the cluster has no running leader: {[(m.name, m.role, m.state) for m in ms]}")
    standbys = [m for m in ms if m.is_replica and m.state == "streaming"]
    if standbys:
        # lag unknown sorts last
        return min(standbys, key=lambda m: (m.is_sync, 2**62 if m.lag is None else m.lag, m.name)).name
    return next(m.name for m in ms if m.is_leader)


def main(argv: list[str], cfg: NodeConfig) -> int:
    if argv[:1] != ["--which"] and len(argv) < 2:
        print("usage: backup-member MEMBER COMMAND [ARGS...] | --which", file=sys.stderr)
        return 2
    try:
        ms = patroni.Client(cfg.patroni_url, ca_file=cfg.ca_file, timeout=5).cluster()
    except (OSError, patroni.PatroniError) as e:
        print(f"backup-member: Patroni REST API on this host does not answer: {e}", file=sys.stderr)
        return 1
    try:
        chosen = choose(ms)
    except NoLeader as e:
        print(f"backup-member: {e}", file=sys.stderr)
        return 1
    if argv[:1] == ["--which"]:
        print(chosen)
        return 0
    me, argv = argv[0], argv[1:]
    if chosen != me:
        print(f"skipped here: {chosen} is the backup member and takes it")
        return 0
    print(f"{me} is the backup member: running {' '.join(argv)}", flush=True)
    os.execvp(argv[0], argv)
    return 1  # not reached
