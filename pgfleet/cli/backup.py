"""``pgfleet backup | backups | restore | check-backups``: the command line of :mod:`pgfleet.backup.commands`."""

from __future__ import annotations

from typing import Annotated

import typer

from pgfleet.backup import commands
from pgfleet.cli.options import ClusterOpt, StackArg, yes_option

TypeOpt = Annotated[str, typer.Option("--type", help="full | diff | incr")]
ToOpt = Annotated[str, typer.Option("--to", help="ISO 8601 time with zone, or 'latest'")]
YesReplace = yes_option("really replace the cluster's data")


def backup(stack: StackArg, type_: TypeOpt = "full", cluster: ClusterOpt = None) -> None:
    """Take a backup now on the backup member: a streaming standby, the leader when none is (as the scheduled units do)."""
    commands.backup(stack, type_, cluster)


def backups(stack: StackArg, cluster: ClusterOpt = None) -> None:
    """The repository's backups (times, sizes, WAL range) and the restorable window."""
    commands.backups(stack, cluster)


def restore(stack: StackArg, to: ToOpt, yes: YesReplace = False, cluster: ClusterOpt = None) -> None:  # type: ignore[valid-type]
    """Point-in-time restore of the whole cluster in place; every member is rebuilt."""
    commands.restore(stack, to, yes, cluster)


def check_backups(stack: StackArg, cluster: ClusterOpt = None) -> None:
    """Archiving flowing, repository reachable, newest backup recent enough; exit 1 with the reasons otherwise."""
    commands.check_backups(stack, cluster)


COMMANDS = (backup, backups, restore, check_backups)
