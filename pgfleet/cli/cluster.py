"""``pgfleet up | down | deploy | status | dsn``: the stack's hosts, the deploy and the running cluster."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from rich.console import Console

from pgfleet import cluster as cluster_mod
from pgfleet import deployment, environments, envstore, github, remote
from pgfleet import spec as spec_mod
from pgfleet.cli.options import ClusterOpt, LabDefaultStackArg, StackArg, yes_option
from pgfleet.cli.progress import Steps
from pgfleet.errors import ClusterError, PgfleetError
from pgfleet.automation import Workspace
from pgfleet.secrets import owner_password_name, user_secret_names
from pgfleet.stack import Stack

console = Console(soft_wrap=True, highlight=False)
YesDestroy = yes_option("confirm: destroy the stack's servers and their data")


def deploy(stack: StackArg,
           dry: Annotated[bool, typer.Option("--dry", help="show what would change, change nothing")] = False,
           limit: Annotated[str | None, typer.Option("--limit", help="only this host")] = None,
           expect_no_changes: Annotated[bool, typer.Option("--expect-no-changes", help="exit 1 when anything changed (with "
                                                                                   "--dry: would change): configuration drift")] = False) -> None:
    """Make the stack's hosts into the cluster the spec describes (safe to run again: no change, no effect)."""
    result = deployment.run(Stack.open(_local_or_stored(stack)), dry=dry, limit=limit)
    console.print(deployment.summary(result), highlight=False)
    if expect_no_changes and result.changes:
        raise PgfleetError(f"drift: {result.changes} change(s) on the hosts of {stack} "
                           f"({', '.join(sorted(result.changed))}); run 'pgfleet deploy {stack}' to converge them")


OutputOpt = Annotated[str | None, typer.Option("--output", help="github: write the DSN, the CA and the stack's outputs to "
                                                                "$GITHUB_OUTPUT and mask every secret (::add-mask::)")]
#: seconds new servers get to answer SSH (boot, cloud-init) before ``up`` gives up
SSH_TIMEOUT = 600.0


def _local_or_stored(stack: str) -> str:
    """An environment's stack file comes from the environment store when this checkout lacks it (a fresh CI job)."""
    if envstore.configured_url() and not Path(stack).suffix and not (spec_mod.stacks_dir() / envstore.file_name(stack)).is_file():
        store = envstore.open_store()
        if store.has(stack):
            environments.fetch(stack, store)
    return stack


def up(stack: LabDefaultStackArg = "lab", output: OutputOpt = None) -> None:
    """Create the stack's hosts (lab: nspawn hosts; cloud: pulumi up through the Automation API), wait for SSH,
    deploy, wait for a healthy cluster, print the DSN."""
    if output not in (None, "github"):
        raise PgfleetError(f"--output {output!r}: the one output format is github")
    if output == "github":
        github.output_path()  # refuse before anything is created
    st = Stack.open(_local_or_stored(stack))
    steps = Steps(4, console)
    with steps.step(f"hosts of {st.name} ({st.spec.provider})"):
        try:
            st.provider.create_hosts()
        finally:
            if envstore.configured_url() and environments.publish(st.name):
                steps.note(f"stack file of environment {st.name} saved to the environment store (Pulumi's salt with it)")
    sec = st.secrets
    if output == "github":
        for line in github.mask_lines(secret_values(st)):
            print(line, flush=True)  # before anything else could show a secret
    inv = st.inventory()
    with steps.step(f"SSH on {len(inv.hosts)} host(s)"):
        remote.wait_ssh(inv, timeout=SSH_TIMEOUT, echo=steps.note)
    with steps.step("deploy"):
        result = deployment.run(st)
        steps.note(deployment.summary(result))
    name, s = st.name, st.spec
    with steps.step(f"{len(s.clusters)} cluster(s) healthy"):
        for c in s.clusters:
            cluster_mod.wait_healthy(inv, c, sec)
    for c in s.clusters:
        console.print(f"cluster {c.name}: psql \"{cluster_mod.dsn(name, s, inv, sec, c)}\"")
        major = local_psql_major()
        if major is not None and major < 16:
            console.print(f"cluster {c.name}, for this machine's psql {major} (libpq 15: no load_balance_hosts, every client "
                          f"enters through the first host): psql \"{cluster_mod.dsn(name, s, inv, sec, c, libpq=15)}\"")
    if output == "github":
        outputs = github_outputs(st)
        github.write_outputs(github.output_path(), outputs)
        console.print(f"wrote {', '.join(outputs)} to $GITHUB_OUTPUT")


def preview(stack: StackArg,
            expect_no_changes: Annotated[bool, typer.Option("--expect-no-changes", help="exit 1 when Pulumi would change "
                                                                                   "anything (the nightly drift check)")] = False) -> None:
    """pulumi preview of a cloud or static stack through the Automation API: what ``up`` would change."""
    st = Stack.open(_local_or_stored(stack))
    refusal = st.provider.pulumi_refusal()
    if refusal is not None:
        raise PgfleetError(refusal)
    changes = Workspace().preview(st.name, st.file, expect_no_changes=expect_no_changes,
                                  user_secrets=user_secret_names(st.spec))
    console.print(f"{st.name}: " + (", ".join(f"{n} {k}" for k, n in sorted(changes.items())) or "nothing to do"))


def secret_values(st: Stack) -> list[str]:
    """Every secret of the stack (passwords, object storage keys, the CA key): what --output github masks."""
    return [*st.secrets.passwords.values(), st.secrets.ca_key_pem]


def github_outputs(st: Stack) -> dict[str, str]:
    """Step outputs for the jobs that follow ``up``: DSNs (the first cluster's as ``dsn``…, every cluster's as
    ``dsn_<cluster>``…), the CA, where this machine keeps the CA file and passfile, the first database owner's
    password (masked), and the stack's outputs ``inventory``, ``endpoints`` and ``ca_cert``."""
    name, s, inv, sec = st.name, st.spec, st.inventory(reachable=False), st.secrets
    out: dict[str, str] = {}
    for i, c in enumerate(s.clusters):
        for suffix, kw in (("", {}), ("_ro", {"ro": True}), ("_direct", {"direct": True})):
            value = cluster_mod.dsn(name, s, inv, sec, c, **kw)
            out[f"dsn_{c.name}{suffix}"] = value
            if i == 0:
                out[f"dsn{suffix}"] = value
    first = s.clusters[0]
    owner = first.databases[0].owner
    out["database"] = first.databases[0].name
    out["user"] = owner
    out["password"] = sec.password(owner_password_name(owner))
    out["ca_file"] = str(cluster_mod.ca_file(name, sec))
    out["passfile"] = str(cluster_mod.passfile(name, s, sec))
    out["ca_cert"] = sec.ca_cert_pem
    out["inventory"] = inv.model_dump_json()
    out["endpoints"] = json.dumps(cluster_mod.published_endpoints(s, inv))
    return out


def down(stack: LabDefaultStackArg = "lab", yes: YesDestroy = False) -> None:  # type: ignore[valid-type]
    """Remove the stack's hosts: the lab's hosts and daemons, or (with --yes) a cloud stack: pulumi destroy, then the
    Pulumi stack itself (an environment is also removed from the environment store)."""
    st = Stack.open(_local_or_stored(stack))
    if envstore.configured_url() and st.spec.ephemeral is not None and envstore.open_store().has(st.name):
        environments.destroy(st.name, yes=yes)
        console.print(f"removed environment {st.name} (its Pulumi stack and stack file)")
        return
    for item in st.provider.destroy_hosts(yes=yes):
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


COMMANDS = (deploy, up, down, preview, status, dsn)
