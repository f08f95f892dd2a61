"""Provider ``hcloud``: Hetzner Cloud servers made by the Pulumi program (``pulumi up``).

Power goes through Hetzner's API (:mod:`pgfleet.providers.hetzner`), isolation
through the member's own nftables over SSH on its public address.
"""

from __future__ import annotations

import subprocess

from pgfleet.errors import PgfleetError
from pgfleet.inventory import Inventory
from pgfleet.providers import hetzner
from pgfleet.providers.pulumi_stack import PulumiStackProvider
from pgfleet.pulumi_cli import stack_output


class HcloudProvider(PulumiStackProvider):
    pulumi_builds_hosts = True

    def inventory(self) -> Inventory:
        """The ``inventory`` output of the deployed Pulumi stack."""
        return Inventory.model_validate(stack_output(self.stack, "inventory"))

    def create_hosts(self) -> None:
        try:
            subprocess.run(["pulumi", "up", "--stack", self.stack], check=True)
        except (OSError, subprocess.CalledProcessError) as e:
            raise PgfleetError(f"'pulumi up --stack {self.stack}' failed: {e}") from None

    def power_off(self, inv: Inventory, member: str) -> None:
        hetzner.Api(hetzner.token()).action(member, "poweroff")

    def power_on(self, inv: Inventory, member: str) -> None:
        hetzner.Api(hetzner.token()).action(member, "poweron")
