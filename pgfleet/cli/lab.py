"""``pgfleet lab …``: bring the lab up and down, look at it, and break it on purpose."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from pgfleet import lab
from pgfleet import spec as spec_mod
from pgfleet.providers import lab as lab_provider
from pgfleet.stack import Stack

lab_app = typer.Typer(no_args_is_help=True, help="The local multi-host lab (Debian 13 in systemd-nspawn).")
console = Console()

StackOpt = Annotated[str, typer.Option("--stack", "-s", help="lab stack (stacks/Pulumi.STACK.yaml)")]
Node = Annotated[str, typer.Argument(help="host name, e.g. lab-main-1")]


def _spec(stack: str) -> spec_mod.Spec:
    """The validated spec of a lab stack (LabError for another provider's stack)."""
    st = Stack.open(stack)
    lab_provider.require(st.name, st.spec)
    return st.spec


@lab_app.command()
def up(stack: StackOpt = "lab") -> None:
    """Create and boot every host; returns when all answer SSH. Safe to run again."""
    r = lab.up(_spec(stack))
    what = f"booted {', '.join(r.booted)}" if r.booted else "all hosts already up"
    console.print(f"[green]lab {stack} up[/green] in {r.seconds:.1f} s ({what}{'; built the base image' if r.image_built else ''})")
    for h in r.inventory.hosts:
        console.print(f"  {h.name:<16} {h.private_ip:<14} {','.join(h.roles)}")


@lab_app.command()
def down(stack: StackOpt = "lab",
         purge: Annotated[bool, typer.Option("--purge", help="also delete the base image and the apt cache")] = False) -> None:
    """Remove every host, mount, interface and process of the lab (also after a crash)."""
    removed = lab.down(_spec(stack), purge=purge)
    console.print(f"[green]lab {stack} down[/green]: " + (", ".join(removed) if removed else "nothing was running"))


@lab_app.command()
def status(stack: StackOpt = "lab") -> None:
    """Hosts, addresses, power, link and whether SSH answers."""
    t = Table("host", "address", "roles", "power", "link", "ssh")
    for s in lab.status(_spec(stack)):
        t.add_row(s.name, s.address, ",".join(s.roles), "[green]up[/green]" if s.running else "[red]down[/red]",
                  {"up": "up", "down": "[red]cut[/red]"}.get(s.link, "-"), "[green]ok[/green]" if s.ssh else "[red]no[/red]")
    console.print(t)


@lab_app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def ssh(node: Node, command: Annotated[list[str] | None, typer.Argument(help="command to run (default: a shell)")] = None,
        stack: StackOpt = "lab") -> None:
    """SSH to a host as root (recorded host keys, the lab key)."""
    from pgfleet.lab import ssh as lab_ssh
    from pgfleet.lab.layout import Layout

    st = Stack.open(stack)
    lab_provider.require(st.name, st.spec).require_reachable()  # with the lab down its addresses route off the machine
    layout = Layout.of(st.spec)
    argv = lab_ssh.argv(layout, layout.host(node), command or None, tty=not command)
    os.execv(argv[0], argv)


@lab_app.command("exec", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def exec_(node: Node, command: Annotated[list[str], typer.Argument(help="shell command to run inside the host")],
          stack: StackOpt = "lab") -> None:
    """Run a command inside a host without the network (works on a partitioned host)."""
    cp = lab.exec_on(_spec(stack), node, " ".join(command), check=False)
    sys.stdout.write(cp.stdout)
    sys.stderr.write(cp.stderr)
    raise typer.Exit(cp.returncode)


@lab_app.command()
def kill(node: Node, stack: StackOpt = "lab") -> None:
    """Hard power-off: the link is cut, then the host's PID 1 is SIGKILLed (no reset reaches any peer)."""
    was_up = lab.kill(_spec(stack), node)
    console.print(f"{node}: {'killed' if was_up else 'was not running'}")


@lab_app.command()
def start(node: Node, stack: StackOpt = "lab") -> None:
    """Boot a host that was killed (its disk is kept); returns when it answers SSH."""
    lab.start(_spec(stack), node)
    console.print(f"{node}: up")


@lab_app.command()
def partition(node: Node, stack: StackOpt = "lab") -> None:
    """Cut a host's network link while it keeps running."""
    veth = lab.partition(_spec(stack), node)
    console.print(f"{node}: link {veth} cut")


@lab_app.command()
def heal(node: Node, stack: StackOpt = "lab") -> None:
    """Restore a partitioned host's network link."""
    veth = lab.heal(_spec(stack), node)
    console.print(f"{node}: link {veth} restored")
