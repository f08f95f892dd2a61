"""The ``pgfleet`` command line: one module per command group, registered here.

- :mod:`pgfleet.cli.stack`: ``validate``, ``inventory``
- :mod:`pgfleet.cli.cluster`: ``up``, ``down``, ``deploy``, ``status``, ``dsn``
- :mod:`pgfleet.cli.backup`: ``backup``, ``backups``, ``restore``, ``check-backups``
- :mod:`pgfleet.cli.drill`: ``drill``
- :mod:`pgfleet.cli.monitoring`: ``monitoring``, ``alerts``, ``top``
- :mod:`pgfleet.cli.lab`: ``lab …``
- :mod:`pgfleet.cli.vector`: ``vector advise``
- :mod:`pgfleet.cli.env`: ``env create``, ``env list``, ``env destroy``, ``env gc``

Every command that takes a STACK opens it with :meth:`pgfleet.stack.Stack.open`,
which validates the stack file first and stops, naming every problem, before
any host or cloud resource is touched.
"""

from __future__ import annotations

import sys

import typer
from rich.console import Console

from pgfleet.cli import backup, cluster, drill, env, lab, monitoring, stack, vector
from pgfleet.errors import PgfleetError, SpecError

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Highly available PostgreSQL + pgvector fleets.")
err = Console(stderr=True)

for _group in (stack, cluster, backup, drill, monitoring):
    for _command in _group.COMMANDS:
        app.command()(_command)
app.add_typer(lab.lab_app, name="lab")
app.add_typer(vector.vector_app, name="vector")
app.add_typer(env.env_app, name="env")


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
