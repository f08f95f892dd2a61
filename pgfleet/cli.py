"""The ``pgfleet`` command line: ties spec, Pulumi, the lab and the deploy together.

Every command that takes a STACK validates its stack file first and stops,
naming every problem, before any host or cloud resource is touched.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.console import Console

from pgfleet.errors import PgfleetError, SpecError
from pgfleet.stack import Stack

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Highly available PostgreSQL + pgvector fleets.")
console = Console()
err = Console(stderr=True)

StackArg = Annotated[str, typer.Argument(help="stack name (stacks/Pulumi.STACK.yaml) or path to a stack file")]


@app.command()
def validate(stack: StackArg) -> None:
    """Check a stack file and print every problem at once."""
    s = Stack.open(stack).spec
    nodes = sum(c.nodes for c in s.clusters)
    console.print(f"[green]ok[/green] {stack}: provider {s.provider}, {len(s.clusters)} cluster(s), {nodes} database node(s)")


@app.command()
def inventory(stack: StackArg) -> None:
    """Print the stack's hosts as JSON (the same shape for every provider)."""
    print(Stack.open(stack).inventory(reachable=False).to_json())


# Command groups that live beside their concern register here.
# (lab: pgfleet/lab/cli.py; deploy/up/status/dsn: pgfleet/deploy_cli.py)
from pgfleet.lab.cli import lab_app  # noqa: E402
app.add_typer(lab_app, name="lab")
from pgfleet.drill.cli import drill  # noqa: E402
app.command()(drill)
from pgfleet.deploy_cli import COMMANDS as _deploy_commands  # noqa: E402

for _command in _deploy_commands:  # deploy, up, down, status, dsn
    app.command()(_command)
from pgfleet.backup.cli import COMMANDS as _backup_commands  # noqa: E402

for _command in _backup_commands:  # backup, backups, restore, check-backups
    app.command()(_command)


def main() -> None:
    try:
        app()
    except SpecError as e:
        err.print(f"[red]invalid stack[/red] {e}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except PgfleetError as e:
        err.print(f"[red]error:[/red] {e}", highlight=False, soft_wrap=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
