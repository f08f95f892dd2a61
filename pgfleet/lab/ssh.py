"""SSH into lab hosts with recorded host keys, never trust-on-first-use.

Each host's key is generated here before it boots and written to the lab's
known_hosts, so every connection runs with StrictHostKeyChecking=yes.
ControlMaster sockets live in the lab state dir and are cleared on up/down
(stale ones from an interrupted run make hosts look unreachable).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

from pgfleet import state
from pgfleet.errors import LabError
from pgfleet.lab.layout import LabHost, Layout
from pgfleet.lab.system import run, tool

#: unix socket paths hold 107 bytes; ssh adds a 17-byte temporary suffix while creating one.
_SOCKET_MAX = 107 - 17


def ensure_client_key(layout: Layout) -> Path:
    """The lab's root login key (ed25519), created once per lab state dir."""
    if not layout.ssh_key.exists():
        state.private_dir(layout.ssh_dir)
        run([tool("ssh-keygen"), "-q", "-t", "ed25519", "-N", "", "-C", f"pgfleet-lab-{layout.stack}", "-f", str(layout.ssh_key)],
            what="creating the lab SSH key")
    return layout.ssh_key


def ensure_host_key(host: LabHost) -> str:
    """The host's ed25519 host key, made on this machine; returns the public key line."""
    if not host.host_key.exists():
        run([tool("ssh-keygen"), "-q", "-t", "ed25519", "-N", "", "-C", f"root@{host.name}", "-f", str(host.host_key)],
            what=f"{host.name}: creating its SSH host key")
    return Path(f"{host.host_key}.pub").read_text().strip()


def known_hosts_lines(entries: list[tuple[str, str, str]]) -> str:
    """``name,address keytype key`` per host: (name, address, public key line)."""
    out = []
    for name, address, pub in entries:
        keytype, key = pub.split()[:2]
        out.append(f"{name},{address} {keytype} {key}\n")
    return "".join(out)


def write_known_hosts(layout: Layout) -> None:
    entries = [(h.name, h.address, Path(f"{h.host_key}.pub").read_text().strip()) for h in layout.hosts if h.host_key.exists()]
    state.write_private(layout.known_hosts, known_hosts_lines(entries))


def control_path(layout: Layout) -> str | None:
    """``<state>/ssh/cm/%h`` (one lab, one user, one port: the address is unique).

    None (no multiplexing) when the state dir is too deep for a unix socket path.
    """
    path = str(layout.control_dir / "%h")
    return path if len(path) - 2 + len("255.255.255.255") <= _SOCKET_MAX else None


def options(layout: Layout, connect_timeout: int = 5) -> list[str]:
    opts = ["-i", str(layout.ssh_key), "-o", "IdentitiesOnly=yes", "-o", f"UserKnownHostsFile={layout.known_hosts}",
            "-o", "GlobalKnownHostsFile=/dev/null", "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes",
            "-o", f"ConnectTimeout={connect_timeout}", "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3",
            "-o", "LogLevel=ERROR"]
    cp = control_path(layout)
    if cp:
        opts += ["-o", "ControlMaster=auto", "-o", f"ControlPath={cp}", "-o", "ControlPersist=60"]
    return opts


def argv(layout: Layout, host: LabHost, command: list[str] | None = None, *, tty: bool = False) -> list[str]:
    """The ssh command line for ``host`` (by address: the name is only in known_hosts)."""
    return [tool("ssh"), *options(layout), *(["-t"] if tty else []), f"root@{host.address}", *(command or [])]


def exec_(layout: Layout, host: LabHost, command: list[str], *, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``command`` (joined by the remote shell) on ``host``; LabError names the host and output on failure."""
    return run(argv(layout, host, command), what=f"{host.name}: ssh {' '.join(command)}", timeout=timeout, check=check)


def reachable(layout: Layout, host: LabHost, timeout: int = 3) -> bool:
    try:
        cp = subprocess.run([tool("ssh"), *options(layout, timeout), f"root@{host.address}", "true"],
                            capture_output=True, text=True, timeout=timeout + 5)
    except subprocess.TimeoutExpired:
        return False
    return cp.returncode == 0


def wait(layout: Layout, host: LabHost, timeout: float = 180, console: Path | None = None) -> None:
    """Block until ``host`` runs a command over SSH, or raise with the last error and console."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            cp = subprocess.run([tool("ssh"), *options(layout, 3), f"root@{host.address}", "true"],
                                capture_output=True, text=True, timeout=15)
            if cp.returncode == 0:
                return
            last = (cp.stdout + cp.stderr).strip()
        except subprocess.TimeoutExpired:
            last = "ssh timed out"
        time.sleep(0.5)
    tail = ""
    if console is not None and console.exists():
        tail = "\nconsole (last lines):\n" + "\n".join(console.read_text(errors="replace").splitlines()[-25:])
    raise LabError(f"{host.name} ({host.address}) does not answer SSH after {timeout:.0f} s: {last or '(no output)'}{tail}")


def close_master(layout: Layout, host: LabHost) -> None:
    """End the ControlMaster to ``host``, if any (after a kill it would hang on a dead peer)."""
    cp = control_path(layout)
    if not cp or not layout.control_dir.exists():
        return
    subprocess.run([tool("ssh"), *options(layout), "-O", "exit", f"root@{host.address}"],
                   capture_output=True, text=True, timeout=10)


def clear_masters(layout: Layout) -> None:
    """Close every ControlMaster of this lab and remove stale sockets."""
    if not layout.control_dir.exists():
        return
    for host in layout.hosts:
        close_master(layout, host)
    shutil.rmtree(layout.control_dir)
    state.private_dir(layout.control_dir)
