"""Commands on inventory hosts over SSH: the one way pgfleet's commands reach a node.

The inventory says how (user, port, key, known_hosts: the lab and static
stacks pin host keys, cloud stacks use the Pulumi-made key); callers turn a
failure into their own error with the step that failed.
"""

from __future__ import annotations

import shlex
import subprocess
import time
from collections.abc import Callable, Sequence

from pgfleet.errors import ClusterError
from pgfleet.inventory import Inventory, InventoryHost


def ssh_argv(inv: Inventory, h: InventoryHost, command: str) -> list[str]:
    """``ssh … user@host command``: batch mode, a short connect timeout, pinned host keys when the inventory has them."""
    argv = ["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR", "-p", str(h.ssh_port)]
    if inv.ssh_key_file:
        argv += ["-i", inv.ssh_key_file, "-o", "IdentitiesOnly=yes"]
    if inv.known_hosts_file:
        argv += ["-o", f"UserKnownHostsFile={inv.known_hosts_file}", "-o", "StrictHostKeyChecking=yes"]
    return [*argv, f"{h.ssh_user}@{h.public_ip}", command]


def command_line(command: str | Sequence[str]) -> str:
    return command if isinstance(command, str) else shlex.join(command)


def run(inv: Inventory, h: InventoryHost, command: str | Sequence[str], *, timeout: float) -> subprocess.CompletedProcess[str]:
    """Run ``command`` (a shell line, or argv to quote) on ``h``; raises subprocess.TimeoutExpired after ``timeout``."""
    return subprocess.run(ssh_argv(inv, h, command_line(command)), capture_output=True, text=True, timeout=timeout)


def wait_ssh(inv: Inventory, *, timeout: float = 300, interval: float = 5, echo: Callable[[str], object] = lambda _s: None) -> None:
    """Until every host answers ``true`` over SSH: new cloud servers boot and run cloud-init for a minute or two
    after Pulumi reports them created. ClusterError naming the hosts still silent and their last answer."""
    waiting = {h.name: "no answer yet" for h in inv.hosts}
    deadline = time.monotonic() + timeout
    while True:
        for h in [h for h in inv.hosts if h.name in waiting]:
            try:
                p = run(inv, h, "true", timeout=15)
                if p.returncode == 0:
                    del waiting[h.name]
                    echo(f"{h.name} ({h.public_ip}): SSH answers")
                else:
                    waiting[h.name] = p.stderr.strip() or f"exit {p.returncode}"
            except subprocess.TimeoutExpired:
                waiting[h.name] = "timed out"
        if not waiting:
            return
        if time.monotonic() > deadline:
            raise ClusterError(f"no SSH after {timeout:.0f} s on {', '.join(f'{n} ({why})' for n, why in waiting.items())}: "
                               "check admin_cidrs covers this machine's address and the SSH key is loaded")
        time.sleep(interval)
