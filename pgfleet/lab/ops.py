"""The lab's operations: up, down, status and the fault tools for drills.

`up` is desired state: it creates what is missing, boots what is down and
leaves running hosts alone. `down` finds what a lab left behind from the state
dir *and* from the system (processes, veths, the bridge, overlay mounts), so
it also cleans up after a crash, and then checks that nothing remains.
"""

from __future__ import annotations

import fcntl
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pgfleet import state
from pgfleet.errors import LabError
from pgfleet.inventory import Inventory, InventoryHost
from pgfleet.lab import aptproxy, hosts, image, network, objectstore, ssh
from pgfleet.lab.layout import LabHost, Layout
from pgfleet.lab.system import mounts_under, preflight, systemd_is_init, tool, wait_reaped
from pgfleet.lab.system import run as run_cmd
from pgfleet.spec import Spec


@contextmanager
def _locked(layout: Layout) -> Iterator[None]:
    """One lab operation at a time per machine (two `up`s would race for the image and the bridge)."""
    state.private_dir(state.root())
    with open(state.root() / ".lab.lock", "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LabError(f"another pgfleet lab command is running (lock {state.root() / '.lab.lock'}); wait for it") from None
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _lab_layout(spec: Spec) -> Layout:
    """The lab of ``spec`` (a lab stack: :mod:`pgfleet.providers.lab` hands out only those)."""
    return Layout.of(spec)


def inventory_of(layout: Layout) -> Inventory:
    """The lab's hosts in the shape the Pulumi program exports (addresses are known in advance)."""
    return Inventory(
        stack=layout.stack, provider="lab",
        hosts=[InventoryHost(name=h.name, cluster=h.plan.cluster, roles=list(h.plan.roles), public_ip=h.address,
                             private_ip=h.address, ssh_user="root", server_type=h.plan.server_type) for h in layout.hosts],
        ssh_key_file=str(layout.ssh_key), known_hosts_file=str(layout.known_hosts),
    )


@dataclass(frozen=True)
class UpReport:
    inventory: Inventory
    image_built: bool
    booted: list[str]
    seconds: float


def up(spec: Spec, *, ssh_timeout: float = 180) -> UpReport:
    """Bring every host of the lab up and answering SSH; change nothing that already is."""
    started = time.monotonic()
    preflight()
    layout = _lab_layout(spec)
    with _locked(layout):
        return _up(spec, layout, started, ssh_timeout)


def _up(spec: Spec, layout: Layout, started: float, ssh_timeout: float) -> UpReport:
    network.check_free(layout)
    layout.create()
    network.ensure_bridge(layout)
    aptproxy.ensure(layout)
    if spec.backups.enabled:
        objectstore.ensure(spec, layout)
    base, built = image.ensure(layout.proxy_url)
    ssh.ensure_client_key(layout)
    for h in layout.hosts:
        state.private_dir(h.dir)
        ssh.ensure_host_key(h)
    ssh.write_known_hosts(layout)
    # ControlMaster sockets left by an interrupted run make hosts look unreachable.
    ssh.clear_masters(layout)
    booted = [h.name for h in layout.hosts if not hosts.power(h).up]
    systemd_init = systemd_is_init()
    for name in booted:
        _boot(layout, layout.host(name), base, systemd_init)
    for h in layout.hosts:
        ssh.wait(layout, h, ssh_timeout, h.console_log)
    return UpReport(inventory_of(layout), built, booted, time.monotonic() - started)


def _boot(layout: Layout, host: LabHost, base: Path, systemd_init: bool) -> None:
    p = hosts.power(host)
    if p.nspawn is not None:  # nspawn without a host init: a half-dead host, power it off first
        hosts.hard_kill(host)
    hosts.mount(host, base)
    hosts.configure(layout, host)
    hosts.boot(layout, host, systemd_init)
    veth = hosts.wait_link(layout, host)
    if not network.link_up(veth):
        network.set_link(veth, True, host.name)


def start(spec: Spec, name: str, *, ssh_timeout: float = 180) -> None:
    """Boot one host that was killed (its disk is kept); no-op if it is up."""
    preflight()
    layout = _lab_layout(spec)
    host = layout.host(name)
    with _locked(layout):
        if not hosts.power(host).up:
            ssh.close_master(layout, host)
            _boot(layout, host, image.require_built(), systemd_is_init())
    ssh.wait(layout, host, ssh_timeout, host.console_log)


def kill(spec: Spec, name: str) -> bool:
    """Hard power-off, as real as a power loss: the link goes first, then SIGKILL of the host's PID 1.

    A dying kernel closes every socket and would send resets to every peer; a
    machine that loses power sends nothing. Cutting the link first keeps those
    resets inside the host, so clients and members find out the way they would
    on a real power loss: by their own timeouts.
    """
    preflight()
    layout = _lab_layout(spec)
    host = layout.host(name)
    p = hosts.power(host)
    if p.up and p.init is not None:
        veth = network.host_veth(p.init)
        if veth is not None:
            network.set_link(veth, False, name)
    was_up = hosts.hard_kill(host)
    ssh.close_master(layout, host)
    return was_up


def _veth(layout: Layout, name: str) -> str:
    host = layout.host(name)
    p = hosts.power(host)
    if not p.up:
        raise LabError(f"{name} is not running: start it with 'pgfleet lab start {name}'")
    veth = network.host_veth(p.init)  # type: ignore[arg-type]
    if veth is None:
        raise LabError(f"{name}: cannot find its veth on bridge {layout.bridge}")
    return veth


def partition(spec: Spec, name: str) -> str:
    """Cut the host's network link (bridge-side veth down); the host keeps running."""
    preflight()
    layout = _lab_layout(spec)
    veth = _veth(layout, name)
    network.set_link(veth, False, name)
    ssh.close_master(layout, layout.host(name))
    return veth


def heal(spec: Spec, name: str) -> str:
    preflight()
    layout = _lab_layout(spec)
    veth = _veth(layout, name)
    network.set_link(veth, True, name)
    return veth


def exec_on(spec: Spec, name: str, command: str, *, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a shell command inside a running host's namespaces, like its console.

    Unlike SSH this needs no network: it reaches a partitioned host, which is
    how drills check that an isolated old primary refuses writes.
    """
    preflight()
    layout = _lab_layout(spec)
    p = hosts.power(layout.host(name))
    if not p.up or p.init is None:
        raise LabError(f"{name} is not running: start it with 'pgfleet lab start {name}'")
    argv = [tool("nsenter"), f"--target={p.init}", "--mount", "--uts", "--ipc", "--net", "--pid", "--root", "--wd",
            "--", "/bin/sh", "-c", command]
    return run_cmd(argv, what=f"{name}: {command}", check=check, timeout=timeout)


@dataclass(frozen=True)
class HostStatus:
    name: str
    address: str
    roles: tuple[str, ...]
    running: bool
    link: str  # "up", "down" (partitioned) or "-" (no link: host off)
    ssh: bool


def status(spec: Spec) -> list[HostStatus]:
    layout = _lab_layout(spec)
    out = []
    for h in layout.hosts:
        p = hosts.power(h)
        veth = network.host_veth(p.init) if p.init is not None else None
        link = "-" if veth is None else ("up" if network.link_up(veth) else "down")
        ok = p.up and link == "up" and layout.ssh_key.exists() and ssh.reachable(layout, h)
        out.append(HostStatus(h.name, h.address, h.plan.roles, p.up, link, ok))
    return out


def run(spec: Spec, name: str, command: str, *, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a shell command on a lab host over SSH; LabError names the host and output on failure."""
    layout = _lab_layout(spec)
    return ssh.exec_(layout, layout.host(name), [command], timeout=timeout, check=check)


def leftovers(spec: Spec) -> list[str]:
    """Everything of this lab still present on the machine (empty after a clean `down`)."""
    layout = _lab_layout(spec)
    found = [f"systemd-nspawn pid {pid} ({d})" for pid, d in hosts.nspawn_pids(layout.dir).items()]
    found += [f"interface {i}" for i in network.lab_interfaces(layout)]
    found += [f"mount {m}" for m in mounts_under(layout.dir)]
    found += [f"apt-cacher-ng pid {pid}" for pid in aptproxy.running_pids(layout)]
    found += [f"object store pid {pid}" for pid in objectstore.running_pids(spec, layout)]
    return found


def down(spec: Spec, *, purge: bool = False) -> list[str]:
    """Remove every host, mount, interface and process of the lab; verify none is left.

    Returns what was removed. ``purge`` also deletes the image and apt caches.
    """
    preflight()
    layout = _lab_layout(spec)
    with _locked(layout):
        return _down(spec, layout, purge)


def _down(spec: Spec, layout: Layout, purge: bool) -> list[str]:
    removed: list[str] = []
    ssh.clear_masters(layout)
    nspawns = list(hosts.nspawn_pids(layout.dir))
    for pid, d in hosts.nspawn_pids(layout.dir).items():
        host = next((h for h in layout.hosts if h.root == d), None)
        label = host.name if host else str(d)
        hosts.power_off(pid, label)
        removed.append(f"host {label} (nspawn pid {pid})")
    for mp in mounts_under(layout.dir):
        hosts.unmount(Path(mp))
        removed.append(f"mount {mp}")
    for ifname in network.lab_interfaces(layout):
        removed.append(f"interface {ifname}")
    network.remove(layout)
    pids = aptproxy.stop(layout)
    removed += [f"apt-cacher-ng pid {pid}" for pid in pids]
    store = objectstore.stop(spec, layout)
    removed += [f"object store pid {pid}" for pid in store]
    pids += store
    wait_reaped(nspawns + pids)
    left = leftovers(spec)
    if left:
        raise LabError(f"lab {layout.stack}: still present after down: {'; '.join(left)}")
    for d in (layout.hosts_dir, layout.control_dir, layout.proxy_dir, layout.dir / "objectstore"):
        if d.exists():
            shutil.rmtree(d)
    layout.known_hosts.unlink(missing_ok=True)
    if purge:
        image.purge()
        aptproxy.purge()
        removed.append("image and apt caches")
    return removed
