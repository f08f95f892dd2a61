"""Arguments and options more than one command takes, defined once."""

from __future__ import annotations

from typing import Annotated

import typer

#: Every command that works on a stack takes it first; it is validated before anything else happens.
StackArg = Annotated[str, typer.Argument(help="stack name (stacks/Pulumi.STACK.yaml) or path to a stack file")]
#: ``pgfleet up`` and ``down`` default to the lab.
LabDefaultStackArg = Annotated[str, typer.Argument(help="stack name (default: lab)")]
ClusterOpt = Annotated[str | None, typer.Option("--cluster", help="cluster name (default: the stack's first)")]


def yes_option(what: str) -> object:
    """``--yes``: the confirmation a command needs before it does ``what``."""
    return Annotated[bool, typer.Option("--yes", help=what)]
