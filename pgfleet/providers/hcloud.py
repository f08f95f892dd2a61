"""Provider ``hcloud``: Hetzner Cloud servers made by the Pulumi program (``pulumi up`` through the Automation API).

Power goes through Hetzner's API (:mod:`pgfleet.providers.hetzner`), isolation
through the member's own nftables over SSH on its public address.
"""

from __future__ import annotations

from pgfleet.inventory import Inventory
from pgfleet.providers import hetzner
from pgfleet.providers.pulumi_stack import PulumiStackProvider


class HcloudProvider(PulumiStackProvider):
    pulumi_builds_hosts = True

    def inventory(self) -> Inventory:
        """The ``inventory`` output of the deployed Pulumi stack."""
        return Inventory.model_validate(self.output("inventory"))

    def power_off(self, inv: Inventory, member: str) -> None:
        hetzner.Api(hetzner.token()).action(member, "poweroff")

    def power_on(self, inv: Inventory, member: str) -> None:
        hetzner.Api(hetzner.token()).action(member, "poweron")
