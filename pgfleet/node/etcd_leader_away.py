"""Keep etcd's raft leader off the PostgreSQL primary's node.

Losing the node that runs both the primary and etcd's leader costs twice:
etcd first elects a new leader, and a new etcd leader *extends every lease by
its full TTL* (etcd's lessor renews all leases on promotion, so no client
loses a lease to an election). Patroni's leader key lives on such a lease, so
failover then waits a whole ``ttl`` after the election instead of the rest of
the dead primary's lease: ~5 s more in the lab's drills. Moving etcd's
leadership to another member whenever this node is both removes that case;
losing a replica's node (etcd leader or not) never delays a failover.

Runs as root on every node that is an etcd member *and* a Patroni member
(``pgfleet-etcd-leader-away.service``, launcher ``etcd-leader-away``) with a
0600 JSON config (etcd's root password: moving leadership is an admin call). Every
``interval`` seconds: ask the local Patroni whether it is the primary and the
local etcd member whether it leads; if both, transfer leadership to another
started member. Failures are logged and retried; they never touch PostgreSQL.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from typing import Any

from . import etcd, patroni
from .config import NodeConfig, json_argument


def targets(status: Mapping[str, Any], members: list[Mapping[str, Any]]) -> list[str]:
    """Members to hand etcd's leadership to, in the order to try; empty when this member does not lead.

    ``status`` is this member's ``/v3/maintenance/status`` answer, ``members``
    the ``/v3/cluster/member/list`` members (ids are decimal strings in etcd's
    JSON gateway): the started voting members other than this one, lowest id
    first, so repeated runs agree. A member that is down refuses the transfer
    and the next one is tried (after a failover the old primary's node is
    usually the one that is down).
    """
    me = str(status.get("header", {}).get("member_id", ""))
    if not me or str(status.get("leader", "")) != me:
        return []
    return sorted((str(m["ID"]) for m in members
                   if str(m.get("ID")) != me and m.get("name") and not m.get("isLearner")), key=int)


class Client:
    """The local etcd member and Patroni, over HTTPS with this host's certificate."""

    def __init__(self, cfg: Mapping[str, Any]) -> None:
        self.cfg = cfg
        self.etcd = etcd.Gateway(cfg["etcd"], cfg["ca_file"], cfg["cert_file"], cfg["key_file"], timeout=5)
        self.patroni = patroni.Client(cfg["patroni"], ca_file=cfg["ca_file"], cert=(cfg["cert_file"], cfg["key_file"]), timeout=3)

    def _post(self, path: str, body: Mapping[str, Any], token: str | None = None) -> dict[str, Any]:
        answer = self.etcd(path, body, token)
        if etcd.error(answer):
            raise OSError(f"etcd {path}: {etcd.error(answer)}")
        return answer

    def is_primary(self) -> bool:
        return self.patroni.status("/primary") == 200

    def status(self) -> dict[str, Any]:
        return self._post("/v3/maintenance/status", {})

    def members(self) -> list[dict[str, Any]]:
        return list(self._post("/v3/cluster/member/list", {}).get("members", []))

    def move_leader(self, to: str) -> None:
        token = etcd.authenticate(self.etcd, self.cfg["root_password"])
        self._post("/v3/maintenance/transfer-leadership", {"targetID": to}, token=token)


def once(c: Client) -> str | None:
    """One check; the member leadership was moved to, if it was."""
    if not c.is_primary():
        return None
    errors = []
    for to in targets(c.status(), c.members()):
        try:
            c.move_leader(to)
            return to
        except OSError as e:
            errors.append(f"{int(to):x}: {e}")
    if errors:
        raise OSError(f"no member took etcd's leadership: {'; '.join(errors)}")
    return None


def main(argv: list[str], node: NodeConfig | None = None) -> int:
    """``etcd-leader-away CONFIG.json``: its own 0600 file (etcd's root password; the local member's address)."""
    cfg = json_argument(argv, "etcd-leader-away", "CONFIG.json")
    if cfg is None:
        return 2
    c = Client(cfg)
    print(f"etcd-leader-away: watching {cfg['etcd']} and {cfg['patroni']} every {cfg['interval']} s", flush=True)
    while True:
        try:
            to = once(c)
            if to:
                print(f"this node runs the PostgreSQL primary and led etcd: leadership moved to member {int(to):x}", flush=True)
        except (OSError, ValueError, KeyError) as e:
            print(f"etcd-leader-away: check failed, retrying: {e}", file=sys.stderr, flush=True)
        time.sleep(cfg["interval"])

