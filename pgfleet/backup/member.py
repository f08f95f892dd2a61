#!/usr/bin/python3
"""Which member takes the cluster's backups: a healthy standby, the leader only when none is.

One rule for the scheduled units and ``pgfleet backup``. pgBackRest copies
the data files from the member it runs on when that member is a standby
(``backup-standby=prefer``; the primary only starts and stops the backup over
pgBackRest's TLS server), so the backup member is chosen among the streaming
replicas: an asynchronous one first (a backup's I/O then never slows the
synchronous standby's commits), then the one with the least lag, then by
name, so every member computes the same answer from Patroni's view. Without a
streaming replica the leader backs up itself.

Stdlib only: the deploy installs this file on every database node as
``/usr/local/lib/pgfleet/backup-member``, the guard in front of the scheduled
backup units::

    backup-member MEMBER COMMAND [ARGS...]   # run COMMAND if MEMBER (this node's Patroni name) is the backup member
    backup-member --which                    # print the backup member's name
"""

from __future__ import annotations

import json
import os
import ssl
import sys
import urllib.request
from collections.abc import Iterable, Mapping
from typing import Any

CA_FILE = "/etc/pgfleet/tls/ca.crt"
CLUSTER_URL = "https://127.0.0.1:8008/cluster"
LEADER_ROLES = ("leader", "standby_leader")
REPLICA_ROLES = ("replica", "sync_standby", "quorum_standby")


class NoLeader(Exception):
    """The cluster has no leader: no member can take a consistent backup."""


def _lag(m: Mapping[str, Any]) -> int:
    lag = m.get("lag", 0)
    return lag if isinstance(lag, int) else 2**62


def choose(members: Iterable[Mapping[str, Any]]) -> str:
    """The backup member's name from Patroni's ``/cluster`` members (dicts with name, role, state, lag)."""
    ms = list(members)
    if not any(m.get("role") in LEADER_ROLES and m.get("state") == "running" for m in ms):
        raise NoLeader(f"the cluster has no running leader: {[(m.get('name'), m.get('role'), m.get('state')) for m in ms]}")
    standbys = [m for m in ms if m.get("role") in REPLICA_ROLES and m.get("state") == "streaming"]
    if standbys:
        best = min(standbys, key=lambda m: (m.get("role") != "replica", _lag(m), m["name"]))
        return str(best["name"])
    return str(next(m["name"] for m in ms if m.get("role") in LEADER_ROLES))


def cluster_members(url: str = CLUSTER_URL, ca_file: str = CA_FILE) -> list[dict[str, Any]]:
    ctx = ssl.create_default_context(cafile=ca_file)
    with urllib.request.urlopen(url, context=ctx, timeout=5) as r:
        return list(json.load(r).get("members", []))


def main(argv: list[str]) -> int:
    if argv[:1] != ["--which"] and len(argv) < 2:
        print("usage: backup-member MEMBER COMMAND [ARGS...] | --which", file=sys.stderr)
        return 2
    try:
        ms = cluster_members()
    except OSError as e:
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


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
