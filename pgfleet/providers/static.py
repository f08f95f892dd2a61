"""Provider ``static``: machines that exist already (e.g. Hetzner Robot bare metal), listed in the spec.

Pulumi holds only the stack's secrets (``pgfleet up`` runs the program for them); no machine is created, and nothing can
power a machine off. Isolation uses the member's own nftables over SSH.
"""

from __future__ import annotations

from pgfleet.errors import NotPossible
from pgfleet.inventory import Inventory, InventoryHost, plan
from pgfleet.providers.pulumi_stack import PulumiStackProvider
from pgfleet.spec import Spec


def from_static(spec: Spec, stack: str) -> Inventory:
    """The hosts the spec lists, with the planner's roles."""
    listed = [h for c in spec.clusters for h in c.hosts] + ([spec.monitoring.host] if spec.monitoring.host else [])
    public = {h.name: str(h.public_ip) for h in listed}
    hosts = [
        InventoryHost(name=p.name, cluster=p.cluster, roles=list(p.roles), public_ip=public.get(p.name, p.private_ip),
                      private_ip=p.private_ip, ssh_user=spec.ssh_user, server_type=p.server_type)
        for p in plan(spec)
    ]
    return Inventory(stack=stack, provider="static", hosts=hosts)


class StaticProvider(PulumiStackProvider):
    def inventory(self) -> Inventory:
        return from_static(self.spec, self.stack)

    def power_off(self, inv: Inventory, member: str) -> None:
        raise NotPossible(f"powering a member off on provider {self.spec.provider!r} is not possible from pgfleet: "
                          "static hosts have no API for it (node-loss runs in the lab and on Hetzner stacks)")

    power_on = power_off
