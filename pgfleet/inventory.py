"""The inventory: one JSON shape for every provider.

:func:`plan` decides which hosts a spec has (names, clusters, roles, private
addresses); each provider (:mod:`pgfleet.providers`) fills in the addresses it
knows and produces an :class:`Inventory`. The deploy reads nothing else, so it
cannot tell the lab from Hetzner except by ``provider``.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict

from pgfleet.errors import PgfleetError
from pgfleet.spec import Spec

ROLE_POSTGRES = "postgres"  # PostgreSQL + Patroni + PgBouncer + HAProxy + pgBackRest
ROLE_ETCD = "etcd"
ROLE_CLIENT = "client"  # lab only: drills, benchmarks, the backup store's client side
ROLE_MONITOR = "monitor"  # Prometheus, Alertmanager and pgfleet's probe exporter (monitoring.enabled)


class InventoryHost(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    cluster: str | None
    roles: list[str]
    public_ip: str
    private_ip: str
    ssh_user: str = "root"
    ssh_port: int = 22
    server_type: str


class Inventory(BaseModel):
    model_config = ConfigDict(extra="forbid")

    stack: str
    provider: str
    hosts: list[InventoryHost]
    #: cluster name -> Hetzner load balancer address (private network: firewalls cannot cover LBs)
    load_balancers: dict[str, str] = {}
    #: SSH identity and recorded host keys; None means the user's own SSH setup.
    ssh_key_file: str | None = None
    known_hosts_file: str | None = None

    def by_role(self, role: str, cluster: str | None = None) -> list[InventoryHost]:
        return [h for h in self.hosts if role in h.roles and (cluster is None or h.cluster == cluster)]

    def cluster_members(self, cluster: str) -> list[InventoryHost]:
        """The database nodes of ``cluster``, in order."""
        return self.by_role(ROLE_POSTGRES, cluster)

    def etcd_hosts(self) -> list[InventoryHost]:
        return self.by_role(ROLE_ETCD)

    def host(self, name: str) -> InventoryHost:
        for h in self.hosts:
            if h.name == name:
                return h
        raise PgfleetError(f"no host {name!r} in stack {self.stack!r} (hosts: {', '.join(h.name for h in self.hosts)})")

    def to_json(self) -> str:
        return self.model_dump_json(indent=2)


@dataclass(frozen=True)
class HostPlan:
    """A host the spec asks for, before any provider has given it an address."""

    name: str
    cluster: str | None
    roles: tuple[str, ...]
    server_type: str
    private_ip: str
    index: int  # position in the whole fleet, from 0


def plan(spec: Spec) -> list[HostPlan]:
    """Every host of the spec, in a stable order, with its roles and private address.

    Private addresses are assigned from the subnet (.11, .12, …) so peer lists
    are known before any machine exists.
    """
    etcd_hosts = set(spec.etcd_names())
    subnet = ipaddress.ip_network(spec.network.subnet)
    out: list[HostPlan] = []

    def add(name: str, cluster: str | None, roles: list[str], server_type: str, private: str | None = None) -> None:
        idx = len(out)
        ip = private or str(subnet.network_address + 11 + idx)
        out.append(HostPlan(name, cluster, tuple(roles), server_type, ip, idx))

    for c in spec.clusters:
        static_hosts = {h.name: h for h in c.hosts}
        for name in spec.node_names(c):
            roles = [ROLE_POSTGRES] + ([ROLE_ETCD] if name in etcd_hosts else [])
            sh = static_hosts.get(name)
            private = str(sh.private_ip or sh.public_ip) if sh else None
            add(name, c.name, roles, c.server_type, private)
    if spec.etcd.placement == "dedicated":
        for name in spec.etcd_names():
            add(name, None, [ROLE_ETCD], spec.etcd.server_type)
    if spec.lab.client_host:  # only lab stacks have one (spec validation clears it for others)
        add(f"{spec.environment}-client", None, [ROLE_CLIENT], "cx23")
    if spec.monitoring.enabled:  # after every other host, so enabling it renumbers nobody
        m = spec.monitoring
        add(m.host.name if m.host else f"{spec.environment}-monitor", None, [ROLE_MONITOR], m.server_type,
            str(m.host.private_ip or m.host.public_ip) if m.host else None)
    return out
