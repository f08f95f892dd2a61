"""The Pulumi program: one spec in, the fleet's resources and two outputs out.

``inventory`` has exactly the shape of :class:`pgfleet.inventory.Inventory`
(what ``pgfleet inventory`` and the deploy read); ``secrets`` has the shape of
:class:`pgfleet.secrets.Secrets` and is a Pulumi secret.
"""

from __future__ import annotations

import pulumi

from pgfleet.cluster import published_endpoints
from pgfleet.errors import PgfleetError
from pgfleet.fleet import policy
from pgfleet.fleet.components import (
    ClusterLoadBalancer,
    ClusterSecrets,
    DatabaseCluster,
    MonitoringHost,
    EtcdNodes,
    FleetAccess,
    FleetNetwork,
)
from pgfleet import providers
from pgfleet.inventory import ROLE_ETCD, ROLE_MONITOR, HostPlan, Inventory, InventoryHost, plan
from pgfleet.spec import Spec


def build(spec: Spec, stack: str) -> dict[str, pulumi.Output]:
    """Create the stack's resources; returns the outputs to export, by name."""
    provider = providers.get(stack, spec)
    refusal = provider.pulumi_refusal()
    if refusal is not None:
        raise PgfleetError(refusal)
    if provider.pulumi_builds_hosts:
        policy.check_hcloud(spec)  # refuse before anything is created
    secrets = ClusterSecrets("secrets", spec, stack)
    if provider.pulumi_builds_hosts:
        inventory: pulumi.Output = _hcloud_fleet(spec, stack)
    else:
        # The machines exist already; only the secrets need the stack's encrypted state.
        inventory = pulumi.Output.from_input(provider.inventory().model_dump())
    # what clients need, without secrets: each endpoint's DSN (dead-peer detection included) and the CA to verify
    endpoints = inventory.apply(lambda inv: published_endpoints(spec, Inventory.model_validate(inv)))
    return {"inventory": inventory, "secrets": secrets.value, "endpoints": endpoints, "ca_cert": secrets.ca_cert.cert_pem}


def run(spec: Spec, stack: str) -> None:
    """Build the stack and export its outputs (what ``__main__.py`` calls)."""
    for name, value in build(spec, stack).items():
        pulumi.export(name, value)


def _hcloud_fleet(spec: Spec, stack: str) -> pulumi.Output:
    hosts = plan(spec)
    network = FleetNetwork("network", spec)
    access = FleetAccess("access", spec)
    public_ips: dict[str, pulumi.Output[str]] = {}
    load_balancers: dict[str, pulumi.Output[str]] = {}
    for i, c in enumerate(spec.clusters):
        db = DatabaseCluster(c.name, spec, [h for h in hosts if h.cluster == c.name], access, network)
        public_ips.update({n: s.ipv4_address for n, s in db.servers.items()})
        if spec.load_balancer.enabled:
            load_balancers[c.name] = ClusterLoadBalancer(f"{c.name}-lb", spec, i, network, db.servers).address
    etcd_hosts = [h for h in hosts if h.cluster is None and ROLE_ETCD in h.roles]
    if etcd_hosts:
        etcd = EtcdNodes("etcd", spec, etcd_hosts, access, network)
        public_ips.update({n: s.ipv4_address for n, s in etcd.servers.items()})
    monitor_hosts = [h for h in hosts if ROLE_MONITOR in h.roles]
    if monitor_hosts:
        monitor = MonitoringHost("monitoring", spec, monitor_hosts, access, network)
        public_ips.update({n: s.ipv4_address for n, s in monitor.servers.items()})
    addresses = pulumi.Output.from_input({"public": public_ips, "load_balancers": load_balancers})
    return addresses.apply(lambda a: _inventory(spec, stack, hosts, a["public"], a["load_balancers"]))


def _inventory(spec: Spec, stack: str, hosts: list[HostPlan], public: dict[str, str], load_balancers: dict[str, str]) -> dict:
    """The validated inventory, as plain JSON data for the stack output."""
    return Inventory(
        stack=stack,
        provider=spec.provider,
        hosts=[InventoryHost(name=h.name, cluster=h.cluster, roles=list(h.roles), public_ip=public[h.name],
                             private_ip=h.private_ip, ssh_user=spec.ssh_user, server_type=h.server_type)
               for h in hosts],
        load_balancers=load_balancers,
    ).model_dump()
