"""Provider ``lab``: Debian 13 hosts in systemd-nspawn on this machine (:mod:`pgfleet.lab`).

The lab owns its inventory (addresses are known before any host exists) and
its secrets (a 0600 file in the stack's state directory); power and isolation
are the lab's own fault tools, and an isolated host is reached through its
namespaces rather than the network.
"""

from __future__ import annotations

from pgfleet import lab
from pgfleet import secrets as secrets_mod
from pgfleet.errors import ClusterError, LabError
from pgfleet.inventory import Inventory
from pgfleet.lab import network
from pgfleet.lab.layout import Layout
from pgfleet.lab.ops import inventory_of
from pgfleet.providers.base import Provider
from pgfleet.secrets import Secrets
from pgfleet.spec import Spec


class LabProvider(Provider):
    drills_need_yes = False
    pulumi_state = False
    # the lab's object store has a certificate from the cluster CA
    object_store_uses_cluster_ca = True

    def inventory(self) -> Inventory:
        return inventory_of(Layout.of(self.spec))

    def secrets(self) -> Secrets:
        """Created once into the stack's state directory, then kept; missing passwords are added."""
        return secrets_mod.load_or_create_local(self.stack, self.spec)

    def require_reachable(self) -> None:
        """Stop before any packet is sent when the lab is not up: ``the lab is not running: pgfleet lab up``."""
        layout = Layout.of(self.spec)
        why = network.not_running(layout, [h.address for h in layout.hosts])
        if why is not None:
            raise LabError(f"the lab is not running: pgfleet lab up ({why}; stack {self.spec.environment!r})")

    def create_hosts(self) -> None:
        lab.up(self.spec)

    def destroy_hosts(self, *, yes: bool) -> list[str]:
        """The lab's hosts and daemons (nothing of value: no confirmation)."""
        return lab.down(self.spec)

    def pulumi_refusal(self) -> str | None:
        return (f"stack {self.stack!r} uses provider lab, which the Pulumi program does not build: "
                "its hosts run on this machine. Use 'pgfleet lab up' (or 'pgfleet up lab') instead")

    def power_off(self, inv: Inventory, member: str) -> None:
        if not lab.kill(self.spec, member):
            raise ClusterError(f"{member} was not running, so it could not be powered off")

    def power_on(self, inv: Inventory, member: str) -> None:
        lab.start(self.spec, member)

    def isolate(self, inv: Inventory, member: str) -> None:
        lab.partition(self.spec, member)

    def heal(self, inv: Inventory, member: str) -> None:
        lab.heal(self.spec, member)

    def run_isolated(self, inv: Inventory, member: str, command: str, *, what: str, timeout: float = 30) -> str:
        """The host's console (its namespaces), which needs no network."""
        cp = lab.exec_on(self.spec, member, command, timeout=timeout, check=False)
        if cp.returncode != 0:
            raise ClusterError(f"{member}: {what} failed: {(cp.stderr or cp.stdout).strip()}")
        return cp.stdout


def require(stack: str, spec: Spec) -> LabProvider:
    """The lab provider of a stack; LabError for a stack of another provider."""
    from pgfleet import providers

    if not issubclass(providers.provider_class(spec), LabProvider):
        raise LabError(f"stack {spec.environment!r} uses provider {spec.provider!r}, not the lab")
    return LabProvider(stack, spec)


def inventory(spec: Spec) -> Inventory:
    """The lab's hosts (LabError for a stack that is not a lab stack)."""
    return require(spec.environment, spec).inventory()
