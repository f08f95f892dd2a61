"""Commands on inventory hosts over SSH: the one way pgfleet's commands reach a node.

The inventory says how (user, port, key, known_hosts: the lab and static
stacks pin host keys, cloud stacks use the Pulumi-made key); callers turn a
failure into their own error with the step that failed.
"""

from __future__ import annotations

import shlex
import subprocess
from collections.abc import Sequence

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
