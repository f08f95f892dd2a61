"""Where a lab keeps its things: one dataclass of paths and names per stack.

Computing a path never creates it (``pgfleet inventory lab`` must work for a
non-root user before any lab exists); :meth:`Layout.create` makes the dirs.
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from pgfleet import state
from pgfleet.inventory import HostPlan, plan
from pgfleet.spec import Spec

#: The apt proxy's port on the bridge address (apt-cacher-ng's usual one).
APT_PROXY_PORT = 3142
#: Debian 13; the suite the image is built from.
SUITE = "trixie"
DEBIAN_MIRROR = "http://deb.debian.org/debian/"
SECURITY_MIRROR = "http://deb.debian.org/debian-security/"


@dataclass(frozen=True)
class LabHost:
    """One lab host: its plan entry plus where its disk, keys and logs live."""

    plan: HostPlan
    dir: Path
    prefixlen: int

    @property
    def name(self) -> str:
        return self.plan.name

    @property
    def address(self) -> str:
        return self.plan.private_ip

    @property
    def upper(self) -> Path:
        return self.dir / "upper"

    @property
    def work(self) -> Path:
        return self.dir / "work"

    @property
    def root(self) -> Path:
        """The overlay mount point: what systemd-nspawn boots."""
        return self.dir / "root"

    @property
    def host_key(self) -> Path:
        return self.dir / "ssh_host_ed25519_key"

    @property
    def pid_file(self) -> Path:
        """PID of this host's systemd-nspawn process."""
        return self.dir / "nspawn.pid"

    @property
    def console_log(self) -> Path:
        return self.dir / "console.log"


def bridge_name(stack: str) -> str:
    """``pgfl-<stack>``, kept under Linux's 15-character interface name limit."""
    name = f"pgfl-{stack}"
    if len(name) <= 15:
        return name
    return "pgfl-" + hashlib.sha256(stack.encode()).hexdigest()[:10]


@dataclass(frozen=True)
class Layout:
    stack: str
    subnet: ipaddress.IPv4Network
    hosts: tuple[LabHost, ...]

    @classmethod
    def of(cls, spec: Spec) -> Layout:
        subnet = ipaddress.ip_network(spec.network.subnet)
        assert isinstance(subnet, ipaddress.IPv4Network)
        base = state.root() / spec.environment / "lab"
        hosts = tuple(LabHost(p, base / "hosts" / p.name, subnet.prefixlen) for p in plan(spec))
        return cls(spec.environment, subnet, hosts)

    # ------------------------------------------------------------ names
    @property
    def bridge(self) -> str:
        return bridge_name(self.stack)

    @property
    def bridge_address(self) -> str:
        """The host side of the bridge (.1): where the apt proxy listens."""
        return str(self.subnet.network_address + 1)

    @property
    def proxy_url(self) -> str:
        return f"http://{self.bridge_address}:{APT_PROXY_PORT}/"

    def host(self, name: str) -> LabHost:
        for h in self.hosts:
            if h.name == name:
                return h
        from pgfleet.errors import LabError

        raise LabError(f"no host {name!r} in lab stack {self.stack!r} (hosts: {', '.join(h.name for h in self.hosts)})")

    # ------------------------------------------------------------ paths
    @property
    def dir(self) -> Path:
        return state.root() / self.stack / "lab"

    @property
    def hosts_dir(self) -> Path:
        return self.dir / "hosts"

    @property
    def ssh_dir(self) -> Path:
        return self.dir / "ssh"

    @property
    def ssh_key(self) -> Path:
        return self.ssh_dir / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.ssh_dir / "known_hosts"

    @property
    def control_dir(self) -> Path:
        """SSH ControlMaster sockets: here, so `lab up`/`down` can clear stale ones."""
        return self.ssh_dir / "cm"

    @property
    def proxy_dir(self) -> Path:
        """apt-cacher-ng's config, PID file and logs for this lab."""
        return self.dir / "aptproxy"

    @staticmethod
    def image_cache() -> Path:
        return state.root() / "cache" / "lab-image"

    @staticmethod
    def apt_cache() -> Path:
        return state.root() / "cache" / "apt-cacher-ng"

    def create(self) -> None:
        for d in (state.root() / self.stack, self.dir, self.hosts_dir, self.ssh_dir, self.control_dir, self.proxy_dir):
            state.private_dir(d)
        state.private_dir(state.root() / "cache")
