"""``pgfleet up | down | deploy | status | dsn``: the stack's hosts, the deploy and the running cluster."""

from __future__ import annotations

from typing import Annotated

import typer

from rich.console import Console

from pgfleet import cluster as cluster_mod
from pgfleet import deployment
from pgfleet.cli.options import ClusterOpt, LabDefaultStackArg, StackArg, yes_option
from pgfleet.errors import ClusterError, PgfleetError
from pgfleet.stack import Stack

console = Console()
YesDestroy = yes_option("confirm: destroy the stack's servers and their data")


def deploy(stack: StackArg,
           dry: Annotated[bool, typer.Option("--dry", help="show what would change, change nothing")] = False,
           limit: Annotated[str | None, typer.Option("--limit", help="only this host")] = None) -> None:
    """Make the stack's hosts into the cluster the spec describes (safe to run again: no change, no effect)."""
    result = deployment.run(Stack.open(stack), dry=dry, limit=limit)
    console.print(deployment.summary(result), highlight=False)


def up(stack: LabDefaultStackArg = "lab") -> None:
    """Create the stack's hosts (lab: nspawn hosts; cloud: pulumi up), deploy, print the DSN."""
    st = Stack.open(stack)
    st.provider.create_hosts()
    result = deployment.run(st)
    console.print(deployment.summary(result), highlight=False)
    name, s, inv, sec = st.name, st.spec, st.inventory(), st.secrets
    for c in s.clusters:
        cluster_mod.wait_healthy(inv, c, sec)
        console.print(f"cluster {c.name}: psql \"{cluster_mod.dsn(name, s, inv, sec, c)}\"", highlight=False, soft_wrap=True)
        major = local_psql_major()
        if major is not None and major < 16:
            console.print(f"cluster {c.name}, for this machine's psql {major} (libpq 15: no load_balance_hosts, every client "
                          f"enters through the first host): psql \"{cluster_mod.dsn(name, s, inv, sec, c, libpq=15)}\"",
                          highlight=False, soft_wrap=True)


def down(stack: LabDefaultStackArg = "lab", yes: YesDestroy = False) -> None:  # type: ignore[valid-type]
    """Remove the stack's hosts: the lab's hosts and daemons, or (with --yes) a cloud stack via pulumi destroy."""
    for item in Stack.open(stack).provider.destroy_hosts(yes=yes):
        console.print(f"removed {item}", highlight=False)


def status(stack: StackArg, cluster: ClusterOpt = None) -> None:
    """Members with role, state, timeline, lag and the synchronous standby; exit 1 without a leader."""
    st = Stack.open(stack)
    name, s, inv, sec = st.name, st.spec, st.inventory(), st.secrets
    missing = False
    for c in [s.cluster(cluster)] if cluster else s.clusters:
        ms = cluster_mod.members(inv, c.name, sec)
        rows = [("member", "host", "role", "state", "timeline", "lag (bytes)", "synchronous")]
        rows += [(m.name, m.host, m.role, m.state, str(m.timeline or "-"),
                  str(m.lag) if m.lag is not None else "-" if m.is_leader else "unknown", "yes" if m.is_sync else "") for m in ms]
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        print(f"{name} / {c.name}")
        for r in rows:
            print("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip())
        if cluster_mod.leader(ms) is None:
            console.print(f"[red]cluster {c.name} has no leader[/red]")
            missing = True
    if missing:
        raise ClusterError("a cluster has no leader")


LibpqOpt = Annotated[int, typer.Option("--libpq", help="the client's libpq major: 16 (16 or newer: adds load_balance_hosts) "
                                                        "or 15 (e.g. Debian 12's psql, which rejects it)")]


def dsn(stack: StackArg,
        ro: Annotated[bool, typer.Option("--ro", help="read-only endpoint (replicas; the primary when none is healthy)")] = False,
        direct: Annotated[bool, typer.Option("--direct", help="PostgreSQL itself, no pooler (session features)")] = False,
        db: Annotated[str | None, typer.Option("--db", help="database (default: the cluster's first)")] = None,
        user: Annotated[str | None, typer.Option("--user", help="user (default: the database's owner)")] = None,
        libpq: LibpqOpt = cluster_mod.DEFAULT_LIBPQ,
        uri: Annotated[bool, typer.Option("--uri", help="print it as a postgresql:// URI")] = False,
        env: Annotated[bool, typer.Option("--env", help="print shell exports: PGSERVICEFILE/PGSERVICE (a generated service "
                                                        "file with every keyword) and the PG* variables")] = False,
        cluster: ClusterOpt = None) -> None:
    """A libpq connection string through HAProxy: TLS verify-full, dead-peer detection, clients spread over the nodes."""
    if uri and env:
        raise PgfleetError("--uri and --env print different forms of the same DSN: choose one")
    st = Stack.open(stack)
    name, c = st.name, st.cluster(cluster)
    params = cluster_mod.dsn_params(name, st.spec, st.inventory(reachable=False), st.secrets, c, ro=ro, direct=direct,
                                    db=db, user=user, libpq=libpq)
    if uri:
        print(cluster_mod.uri_dsn(params))
    elif env:
        service = cluster_mod.service_name(name, c, cluster_mod.endpoint_kind(ro, direct), params, libpq)
        print("\n".join(cluster_mod.env_lines(cluster_mod.write_service(name, service, params), service, params)))
    else:
        print(cluster_mod.keyword_dsn(params))


def local_psql_major() -> int | None:
    """The major version of the psql on PATH, if any (``pgfleet up`` prints a DSN it accepts)."""
    import re
    import shutil
    import subprocess

    if not shutil.which("psql"):
        return None
    out = subprocess.run(["psql", "--version"], capture_output=True, text=True).stdout
    m = re.search(r"(\d+)\.", out)
    return int(m.group(1)) if m else None


COMMANDS = (deploy, up, down, status, dsn)
