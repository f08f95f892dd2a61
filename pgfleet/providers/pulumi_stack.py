"""What the Pulumi-backed providers (``hcloud``, ``static``) share: ``pulumi up`` through the Automation API,
secrets in the stack's encrypted state, ``pulumi destroy`` behind ``--yes``, isolation by the member's own nftables."""

from __future__ import annotations

from typing import Any

from pgfleet import spec as spec_mod
from pgfleet.automation import Output, PulumiError, Workspace
from pgfleet.errors import PgfleetError
from pgfleet.inventory import Inventory
from pgfleet.providers import hetzner
from pgfleet.providers.base import Provider, run_on
from pgfleet.secrets import Secrets, user_secret_names


class PulumiStackProvider(Provider):
    #: outputs of the stack, once read (or just returned by ``pulumi up``: no second round trip)
    _outputs: dict[str, Output] | None = None

    def _workspace(self, *, quiet: bool = False) -> Workspace:
        return Workspace(echo=(lambda _line: None)) if quiet else Workspace()

    def _config_file(self) -> Any:
        return self.file or spec_mod.stack_path(self.stack)

    def output(self, key: str) -> Any:
        """An output of the deployed stack (secret ones in clear: for pgfleet's own use only)."""
        if self._outputs is None:
            self._outputs = self._workspace(quiet=True).outputs(self.stack)
        if key not in self._outputs:
            raise PulumiError(f"stack {self.stack!r} has no output {key!r} (outputs: {', '.join(self._outputs) or 'none'}): "
                              f"run 'pgfleet up {self.stack}'")
        return self._outputs[key].value

    def create_hosts(self) -> None:
        """``pulumi up``: the servers (hcloud) and, for every Pulumi stack, the secrets."""
        self._outputs = self._workspace().up(self.stack, self._config_file(), user_secrets=user_secret_names(self.spec))

    def secrets(self) -> Secrets:
        return Secrets.model_validate(self.output("secrets"))

    def destroy_hosts(self, *, yes: bool) -> list[str]:
        name, s = self.stack, self.spec
        if not yes:
            raise PgfleetError(f"'pgfleet down {name}' destroys every server of {name} and the data on it "
                               f"({sum(c.nodes for c in s.clusters)} database node(s)); backups in object storage stay. "
                               "Run it again with --yes to confirm")
        if s.production:
            raise PgfleetError(f"stack {name!r} is marked production (pgfleet:production: true): pgfleet down never destroys "
                               f"it. If you really mean to, set production: false in its stack file first, or run "
                               f"'pulumi destroy -s {name}' yourself")
        self._workspace().destroy(name, self._config_file())
        self._outputs = None
        return [f"Pulumi stack {name} (its resources and the stack itself)"]

    # SSH keeps working over the public interface: only the private network is cut

    def isolate(self, inv: Inventory, member: str) -> None:
        run_on(inv, member, ["sh", "-c", hetzner.partition_script(self.spec.network.ip_range)])

    def heal(self, inv: Inventory, member: str) -> None:
        run_on(inv, member, ["sh", "-c", hetzner.heal_script()])

    def run_isolated(self, inv: Inventory, member: str, command: str, *, what: str, timeout: float = 30) -> str:
        return run_on(inv, member, ["sh", "-c", command], timeout=timeout)
