"""What the fleet's cloud resources say, computed from the spec in plain Python.

Firewall rules, labels, cloud-init user data, the load balancer's services and
addresses: every decision the Pulumi components turn into resources is made
here, where it can be read (and tested) without a Pulumi engine.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

import yaml

from pgfleet import contract
from pgfleet.errors import PgfleetError
from pgfleet.inventory import HostPlan, plan
from pgfleet.spec import Spec

#: Hetzner's Debian 13 (trixie) image: the OS every role is written for.
IMAGE = "debian-13"
#: Hetzner refuses more servers than this in one ``spread`` placement group.
SPREAD_GROUP_LIMIT = 10

#: HAProxy's client endpoints (rw/ro pooled, rw/ro direct): the only ports clients reach (contract.PORT_MATRIX).
CLIENT_PORTS = (contract.HAPROXY_POOLED_RW, contract.HAPROXY_DIRECT_RO)
PATRONI_PORT = contract.PATRONI_REST_PORT


@dataclass(frozen=True)
class FirewallRule:
    """One inbound TCP rule of a Hetzner firewall."""

    description: str
    port: str  # "22" or "5000-5003", as Hetzner writes ports
    sources: tuple[str, ...]


@dataclass(frozen=True)
class LbService:
    """A TCP service of the load balancer and the Patroni check that picks its targets."""

    port: int
    check_path: str


#: Read-write goes to the node Patroni calls primary, read-only to replicas.
LB_SERVICES = (LbService(contract.HAPROXY_POOLED_RW, "/primary"), LbService(contract.HAPROXY_POOLED_RO, "/replica"))
#: Seconds. Hetzner's minimum interval is 3 s; two misses take a node out, two
#: passes put the new primary in: a few seconds after Patroni promotes it.
LB_CHECK_INTERVAL = 3
LB_CHECK_TIMEOUT = 2
LB_CHECK_RETRIES = 2


def _is_whole_internet(cidr: str) -> bool:
    return ipaddress.ip_network(cidr).prefixlen == 0


def check_hcloud(spec: Spec) -> None:
    """Refuse what the spec schema allows but a Hetzner fleet must not be built with."""
    if not spec.ssh_public_key:
        raise PgfleetError("pgfleet:ssh_public_key is not set: Hetzner servers need it for the first SSH login "
                           "(without one Hetzner mails out a root password). Fix: set pgfleet:ssh_public_key: \"ssh-ed25519 AAAA… you@host\"")
    if not spec.admin_cidrs:
        raise PgfleetError("pgfleet:admin_cidrs is empty: the firewall would let no one SSH in, so the deploy could not reach "
                           "the servers. Fix: list your office/VPN/CI ranges, e.g. [203.0.113.10/32]")
    for i, cidr in enumerate(spec.client_cidrs):
        if _is_whole_internet(cidr):
            raise PgfleetError(f"pgfleet:client_cidrs[{i}]: {cidr!r} would open the database endpoints "
                               f"{CLIENT_PORTS[0]}-{CLIENT_PORTS[1]} to the whole internet. Fix: list the ranges your clients use")
    for c in spec.clusters:
        if c.nodes > SPREAD_GROUP_LIMIT:
            raise PgfleetError(f"pgfleet:clusters: cluster {c.name!r} has {c.nodes} nodes, but Hetzner's spread placement "
                               f"group holds at most {SPREAD_GROUP_LIMIT}. Fix: split it into clusters of {SPREAD_GROUP_LIMIT} or fewer")
    if spec.load_balancer.enabled:
        highest_host = max(ipaddress.ip_address(h.private_ip) for h in plan(spec))
        lowest_lb = ipaddress.ip_address(load_balancer_ip(spec, len(spec.clusters) - 1))
        if lowest_lb <= highest_host:
            raise PgfleetError(f"pgfleet:network.subnet: {spec.network.subnet} is too small for the hosts (up to {highest_host}) "
                               f"and the load balancers (from {lowest_lb} up). Fix: use a larger subnet, e.g. a /24")


def firewall_rules(spec: Spec, roles: tuple[str, ...]) -> list[FirewallRule]:
    """Inbound rules from outside the private network; anything not listed is dropped.

    The rows of :data:`pgfleet.contract.PORT_MATRIX` whose source is public (admin or client ranges)
    for hosts with ``roles``: the same matrix the hosts' nftables render. Member traffic travels on the
    private network, which Hetzner's firewall does not filter.
    """
    cidrs = {"admin": tuple(spec.admin_cidrs), "clients": tuple(spec.client_cidrs)}
    names = {"admin": "admin ranges", "clients": "client ranges"}
    return [FirewallRule(f"{r.what} from {names[r.source]}", port, cidrs[r.source])
            for r in contract.port_rules(roles, spec.backups.enabled, sources=contract.PUBLIC_SOURCES)
            if cidrs[r.source] for port in r.ports]


def labels(spec: Spec, host: HostPlan | None = None, cluster: str | None = None) -> dict[str, str]:
    """Hetzner labels: find a stack's resources in the console and by label selector.

    Environments made by ``pgfleet env create`` also carry ``owner``, ``template`` and ``expires`` (UTC, ISO 8601 basic),
    so a forgotten server can be traced to whoever made it, and found past its expiry, from Hetzner's console alone.
    """
    out = {"managed-by": "pgfleet", "environment": spec.environment}
    if spec.ephemeral is not None:
        out |= {"owner": spec.ephemeral.owner, "template": spec.ephemeral.template, "expires": spec.ephemeral.expires_label}
    cluster = host.cluster if host is not None and host.cluster else cluster
    if cluster:
        out["cluster"] = cluster
    if host is not None:
        out["role"] = "-".join(host.roles)  # e.g. "postgres-etcd"; label values allow no "+" or ","
    return out


def user_data(spec: Spec) -> str:
    """cloud-init for the first boot: SSH access, nothing else.

    No password, key or certificate goes here: Hetzner keeps user data readable
    in its API and metadata service. Everything else is the deploy's job.
    Hetzner installs the stack's SSH key for root; another ``ssh_user`` gets it
    with passwordless sudo, and root login is then disabled.
    """
    doc: dict[str, Any] = {"ssh_pwauth": False}
    if spec.ssh_user != "root":
        doc["disable_root"] = True
        doc["users"] = [{
            "name": spec.ssh_user,
            "shell": "/bin/bash",
            "groups": ["sudo"],
            "sudo": "ALL=(ALL) NOPASSWD:ALL",
            "lock_passwd": True,
            "ssh_authorized_keys": [spec.ssh_public_key],
        }]
    return "#cloud-config\n" + yaml.safe_dump(doc, sort_keys=False)


def load_balancer_ip(spec: Spec, cluster_index: int) -> str:
    """A fixed private address per cluster's load balancer, from the top of the subnet.

    :func:`pgfleet.inventory.plan` hands out hosts from .11 upwards; taking the
    load balancers' from the top keeps the two apart however the fleet grows,
    and a fixed address can go into certificates before the balancer exists.
    """
    subnet = ipaddress.ip_network(spec.network.subnet)
    return str(subnet.broadcast_address - 1 - cluster_index)
