"""A stack, opened: the validated spec, its provider, and (loaded when first asked) inventory and secrets.

:meth:`Stack.open` is the one way a command gets at a stack: the stack file is
validated first, so every problem is named before any host or cloud resource
is touched.
"""

from __future__ import annotations

from pathlib import Path

from pgfleet import providers
from pgfleet import spec as spec_mod
from pgfleet.inventory import Inventory
from pgfleet.providers import Provider
from pgfleet.secrets import Secrets
from pgfleet.spec import ClusterSpec, Spec


class Stack:
    """``name`` is the stack's name (Pulumi stack, state directory); ``spec`` is validated."""

    def __init__(self, name: str, spec: Spec, file: Path | None = None) -> None:
        self.name = name
        self.spec = spec
        self._file = file
        self.provider: Provider = providers.get(name, spec, file)
        self._inventory: Inventory | None = None
        self._reachable = False
        self._secrets: Secrets | None = None

    @classmethod
    def open(cls, stack: str) -> Stack:
        """``stack``: a name (``stacks/Pulumi.<name>.yaml``) or a stack file's path; SpecError lists every problem."""
        return cls(spec_mod.stack_name(stack), spec_mod.load(stack), spec_mod.stack_path(stack))

    @property
    def file(self) -> Path:
        """The stack file (given to :meth:`open`, or ``stacks/Pulumi.<name>.yaml``)."""
        if self._file is None:
            self._file = spec_mod.stack_path(self.name)
        return self._file

    def inventory(self, *, reachable: bool = True) -> Inventory:
        """The stack's hosts. ``reachable``: the caller will send traffic to them, so a provider whose hosts
        cannot be reached now (a lab that is not running) refuses here. Commands that only print pass False."""
        if reachable and not self._reachable:
            self.provider.require_reachable()
            self._reachable = True
        if self._inventory is None:
            self._inventory = self.provider.inventory()
        return self._inventory

    @property
    def secrets(self) -> Secrets:
        if self._secrets is None:
            self._secrets = self.provider.secrets()
        return self._secrets

    def cluster(self, name: str | None = None) -> ClusterSpec:
        """The cluster called ``name``, or the stack's first."""
        return self.spec.cluster(name) if name else self.spec.clusters[0]
