"""Lab hosts: an overlay of the base image per host, booted by systemd-nspawn.

A host's disk is its overlay upper dir (kept while the lab exists, like a
server's disk). Its identity — hostname, address, host key, machine-id, the
lab's SSH key, the apt proxy — is written into the overlay before boot.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from pgfleet import state
from pgfleet.errors import LabError
from pgfleet.lab import network
from pgfleet.lab.layout import LabHost, Layout
from pgfleet.lab.system import children, kill_pid, mounts_under, nspawn_flags, processes, read_pid, run, tool, wait_gone
from pgfleet.templating import render


# --------------------------------------------------------------------------- disk


def mount(host: LabHost, base: Path) -> None:
    """Mount the host's overlay (base image read-only, host's upper dir on top)."""
    if str(host.root) in mounts_under(host.root):
        return
    for d in (host.upper, host.work, host.root):
        d.mkdir(parents=True, exist_ok=True)
    host.dir.chmod(0o700)
    run([tool("mount"), "-t", "overlay", "overlay", "-o", f"lowerdir={base},upperdir={host.upper},workdir={host.work}", str(host.root)],
        what=f"{host.name}: mounting its overlay root")


def unmount(path: Path) -> None:
    """Unmount everything at or under ``path``."""
    for mp in mounts_under(path):
        run([tool("umount"), mp], what=f"unmounting {mp}")


def _write(root: Path, rel: str, text: str, mode: int = 0o644) -> None:
    path = root / rel.lstrip("/")
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_symlink():
        path.unlink()
    path.write_text(text)
    path.chmod(mode)


def configure(layout: Layout, host: LabHost) -> None:
    """Write the host's identity into its (mounted) root; idempotent."""
    r = host.root
    _write(r, "/etc/hostname", f"{host.name}\n")
    _write(r, "/etc/hosts", render("lab/hosts.j2", hosts=[{"name": h.name, "address": h.address} for h in layout.hosts]))
    _write(r, "/etc/systemd/network/10-lab.network", render("lab/10-lab.network.j2", address=host.address, prefixlen=host.prefixlen))
    _write(r, "/etc/apt/apt.conf.d/01pgfleet-lab-proxy", render("lab/apt-proxy.conf.j2", proxy_url=layout.proxy_url))
    _write(r, "/etc/ssh/sshd_config.d/10-pgfleet-lab.conf", render("lab/sshd.conf.j2"))
    _write(r, "/etc/ssh/ssh_host_ed25519_key", host.host_key.read_text(), 0o600)
    _write(r, "/etc/ssh/ssh_host_ed25519_key.pub", Path(f"{host.host_key}.pub").read_text())
    ssh_dir = r / "root" / ".ssh"
    ssh_dir.mkdir(parents=True, exist_ok=True)
    ssh_dir.chmod(0o700)
    _write(r, "/root/.ssh/authorized_keys", Path(f"{layout.ssh_key}.pub").read_text(), 0o600)
    machine_id = r / "etc" / "machine-id"
    if not (machine_id.exists() and machine_id.read_text().strip()):
        _write(r, "/etc/machine-id", secrets.token_hex(16) + "\n", 0o444)


# --------------------------------------------------------------------------- processes


@dataclass(frozen=True)
class Power:
    """What is running for a host: its systemd-nspawn and the host's PID 1 (None when off)."""

    nspawn: int | None
    init: int | None

    @property
    def up(self) -> bool:
        return self.nspawn is not None and self.init is not None


def nspawn_pids(path: Path) -> dict[int, Path]:
    """systemd-nspawn processes booting a directory at or under ``path``: {pid: directory}."""
    prefix = str(path).rstrip("/") + "/"
    found = {}
    for p in processes():
        if not p.argv or not p.argv[0].endswith("systemd-nspawn"):
            continue
        for i, a in enumerate(p.argv):
            d = a[len("--directory="):] if a.startswith("--directory=") else (p.argv[i + 1] if a in ("-D", "--directory") and i + 1 < len(p.argv) else None)
            if d and (d + "/").startswith(prefix):
                found[p.pid] = Path(d)
    return found


def init_of(nspawn_pid: int) -> int | None:
    """The host's PID 1: the child of systemd-nspawn that lives in a new PID namespace."""
    for child in children(nspawn_pid):
        try:
            status = Path(f"/proc/{child}/status").read_text()
        except FileNotFoundError:
            continue
        for line in status.splitlines():
            if line.startswith("NSpid:") and line.split()[-1] == "1" and len(line.split()) > 2:
                return child
    return None


def power(host: LabHost) -> Power:
    recorded = read_pid(host.pid_file)
    pids = [pid for pid, d in nspawn_pids(host.dir).items() if d == host.root]
    if recorded is not None and recorded in pids:
        pids = [recorded]
    if not pids:
        return Power(None, None)
    return Power(pids[0], init_of(pids[0]))


def boot(layout: Layout, host: LabHost, systemd_init: bool) -> int:
    """Start systemd-nspawn for the host in the background; returns its PID."""
    argv = [tool("systemd-nspawn"), "--quiet", f"--directory={host.root}", f"--machine={host.name}", "--boot",
            *nspawn_flags(systemd_init), f"--network-bridge={layout.bridge}", "--resolv-conf=off", "--timezone=off",
            "--link-journal=no", "--console=read-only"]
    log = open(host.console_log, "ab")
    log.write(f"\n==> {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(argv)}\n".encode())
    log.flush()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True, close_fds=True)
    log.close()
    state.write_private(host.pid_file, f"{proc.pid}\n")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise LabError(f"{host.name}: systemd-nspawn exited {proc.returncode} while booting: {console_tail(host)}")
        if init_of(proc.pid) is not None:
            return proc.pid
        time.sleep(0.1)
    raise LabError(f"{host.name}: systemd-nspawn (pid {proc.pid}) started no host init within 30 s: {console_tail(host)}")


def console_tail(host: LabHost, lines: int = 25) -> str:
    if not host.console_log.exists():
        return "(no console output)"
    return "\n".join(host.console_log.read_text(errors="replace").splitlines()[-lines:])


def power_off(nspawn_pid: int, label: str) -> None:
    """SIGKILL the host's PID 1 (every process in it dies at once), then let nspawn exit.

    Killing nspawn itself would leave the host's init and services running.
    """
    init = init_of(nspawn_pid)
    if init is not None:
        try:
            os.kill(init, signal.SIGKILL)
        except ProcessLookupError:
            pass
    # nspawn notices its child died, removes the veth and exits on its own.
    if not wait_gone(nspawn_pid, 15):
        kill_pid(nspawn_pid, what=f"{label}: stopping systemd-nspawn")


def hard_kill(host: LabHost) -> bool:
    """Power the host off hard. True if it was running."""
    p = power(host)
    if p.nspawn is None:
        return False
    power_off(p.nspawn, host.name)
    host.pid_file.unlink(missing_ok=True)
    return True


def wait_link(layout: Layout, host: LabHost, timeout: float = 10) -> str:
    """The host's bridge-side veth, once nspawn has created it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        p = power(host)
        if p.init is not None:
            veth = network.host_veth(p.init)
            if veth:
                return veth
        time.sleep(0.1)
    raise LabError(f"{host.name}: no veth on bridge {layout.bridge} after {timeout:.0f} s: {console_tail(host)}")
