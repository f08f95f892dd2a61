"""What the Pulumi-backed providers (``hcloud``, ``static``) share: secrets in the stack's
encrypted state, ``pulumi destroy`` behind ``--yes``, isolation by the member's own nftables."""

from __future__ import annotations

import subprocess

from pgfleet.errors import PgfleetError
from pgfleet.inventory import Inventory
from pgfleet.providers import hetzner
from pgfleet.providers.base import Provider, run_on
from pgfleet.pulumi_cli import stack_output
from pgfleet.secrets import Secrets


class PulumiStackProvider(Provider):
    def secrets(self) -> Secrets:
        return Secrets.model_validate(stack_output(self.stack, "secrets", show_secrets=True))

    def destroy_hosts(self, *, yes: bool) -> list[str]:
        name, s = self.stack, self.spec
        if not yes:
            raise PgfleetError(f"'pgfleet down {name}' destroys every server of {name} and the data on it "
                               f"({sum(c.nodes for c in s.clusters)} database node(s)); backups in object storage stay. "
                               "Run it again with --yes to confirm")
        try:
            subprocess.run(["pulumi", "destroy", "--stack", name, "--yes"], check=True)
        except (OSError, subprocess.CalledProcessError) as e:
            raise PgfleetError(f"'pulumi destroy --stack {name}' failed: {e}") from None
        return []

    # SSH keeps working over the public interface: only the private network is cut

    def isolate(self, inv: Inventory, member: str) -> None:
        run_on(inv, member, ["sh", "-c", hetzner.partition_script(self.spec.network.ip_range)])

    def heal(self, inv: Inventory, member: str) -> None:
        run_on(inv, member, ["sh", "-c", hetzner.heal_script()])

    def run_isolated(self, inv: Inventory, member: str, command: str, *, what: str, timeout: float = 30) -> str:
        return run_on(inv, member, ["sh", "-c", command], timeout=timeout)
