"""What differs by provider, behind one interface (Patroni's ``AbstractDCS`` is the model).

A :class:`Provider` knows where a stack's hosts and secrets come from, how its
hosts are created and destroyed, how a member is powered off and on or cut off
the network, and whom the object store's certificate is signed by. Callers get
one from :func:`pgfleet.providers.get` and never ask which one they have.
"""

from __future__ import annotations

import shlex
import subprocess
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path

from pgfleet import remote
from pgfleet.errors import ClusterError, NotPossible
from pgfleet.inventory import Inventory
from pgfleet.secrets import Secrets
from pgfleet.spec import Spec


class Provider(ABC):
    """One stack's provider. ``stack`` is the stack's name (Pulumi stack, state directory)."""

    #: drills on this provider's stacks break real servers: ``pgfleet drill`` wants ``--yes``
    drills_need_yes: bool = True
    #: the Pulumi program creates this provider's servers (not only its secrets)
    pulumi_builds_hosts: bool = False
    #: the stack's secrets (and, with hosts, its inventory) live in Pulumi's encrypted state
    pulumi_state: bool = True
    #: the object store's TLS certificate comes from the cluster CA (else: system trust)
    object_store_uses_cluster_ca: bool = False

    def __init__(self, stack: str, spec: Spec, file: Path | None = None) -> None:
        self.stack = stack
        self.spec = spec
        #: the stack file (Pulumi reads its config from it); None: ``stacks/Pulumi.<stack>.yaml``
        self.file = file

    # ---- hosts and secrets

    @abstractmethod
    def inventory(self) -> Inventory:
        """The stack's hosts, in the one shape every provider produces."""

    @abstractmethod
    def secrets(self) -> Secrets:
        """Passwords and the cluster CA."""

    def require_reachable(self) -> None:
        """Refuse before any packet is sent when the hosts cannot be reached (the lab when it is down)."""

    @abstractmethod
    def create_hosts(self) -> None:
        """Make the stack's hosts exist (``pgfleet up``); no change for hosts that do."""

    @abstractmethod
    def destroy_hosts(self, *, yes: bool) -> list[str]:
        """Remove the stack's hosts (``pgfleet down``); returns what was removed, when known."""

    def pulumi_refusal(self) -> str | None:
        """Why the Pulumi program does not build this stack at all (None: it does)."""
        return None

    # ---- faults (drills)

    @abstractmethod
    def power_off(self, inv: Inventory, member: str) -> None: ...

    @abstractmethod
    def power_on(self, inv: Inventory, member: str) -> None: ...

    @abstractmethod
    def isolate(self, inv: Inventory, member: str) -> None:
        """Cut the member off the cluster's network while it keeps running."""

    @abstractmethod
    def heal(self, inv: Inventory, member: str) -> None: ...

    @abstractmethod
    def run_isolated(self, inv: Inventory, member: str, command: str, *, what: str, timeout: float = 30) -> str:
        """Run a shell command as root on an isolated member (through a channel the isolation leaves open)."""


def run_on(inv: Inventory, member: str, argv: Sequence[str], timeout: float = 30.0) -> str:
    """``argv`` as root on ``member`` over SSH; stdout, or ClusterError naming member, command and output."""
    try:
        p = remote.run(inv, inv.host(member), argv, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise ClusterError(f"{member}: {shlex.join(argv)} did not finish within {timeout:.0f}s") from None
    if p.returncode != 0:
        raise ClusterError(f"{member}: {shlex.join(argv)} failed ({p.returncode}): {p.stderr.strip()}")
    return p.stdout


__all__ = ["NotPossible", "Provider", "run_on"]
