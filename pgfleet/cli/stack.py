"""``pgfleet validate | inventory``: the stack file and the hosts it describes."""

from __future__ import annotations

from rich.console import Console

from pgfleet.cli.options import StackArg
from pgfleet.stack import Stack

console = Console()


def validate(stack: StackArg) -> None:
    """Check a stack file and print every problem at once."""
    s = Stack.open(stack).spec
    nodes = sum(c.nodes for c in s.clusters)
    console.print(f"[green]ok[/green] {stack}: provider {s.provider}, {len(s.clusters)} cluster(s), {nodes} database node(s)")


def inventory(stack: StackArg) -> None:
    """Print the stack's hosts as JSON (the same shape for every provider)."""
    print(Stack.open(stack).inventory(reachable=False).to_json())


COMMANDS = (validate, inventory)
