"""``pgfleet env create | list | destroy | gc``: environments made from a template stack, kept in the environment store."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import typer
from rich.console import Console

from pgfleet import environments as envs
from pgfleet import envstore
from pgfleet.cli.options import yes_option
from pgfleet.errors import PgfleetError

env_app = typer.Typer(no_args_is_help=True, help="Environments from templates (per pull request, per person), with an expiry.")
console = Console(soft_wrap=True, highlight=False)
YesDestroyEnv = yes_option("confirm: destroy its servers and data")
StoreOpt = Annotated[str | None, typer.Option("--store", help=f"environment store URL (default: ${envstore.URL_ENV}, else "
                                                              f"${envstore.PULUMI_URL_ENV}): file:///DIR or s3://BUCKET?endpoint=…")]


@env_app.command()
def create(name: Annotated[str, typer.Argument(help="the environment's name, e.g. pr-12 (lowercase, digits, '-')")],
           like: Annotated[str, typer.Option("--like", help="the template stack, e.g. staging")],
           ttl: Annotated[str, typer.Option("--ttl", help="how long until env gc may destroy it: 24h, 90m, 3d")] = envs.DEFAULT_TTL,
           set_: Annotated[list[str] | None, typer.Option("--set", help="override a setting: KEY=VALUE, e.g. "
                                                                        "clusters[0].server_type=cpx22 (repeatable)")] = None,
           owner: Annotated[str | None, typer.Option("--owner", help="who it belongs to (default: $GITHUB_ACTOR, else $USER)")] = None,
           runner_cidr: Annotated[list[str] | None, typer.Option("--runner-cidr", help="a range this machine/CI runner "
                                                                 f"connects from, added to admin and client ranges (default: ${envs.RUNNER_CIDRS_ENV})")] = None,
           store: StoreOpt = None) -> None:
    """Write stacks/Pulumi.NAME.yaml like the template (production off, own backup path, owner and expiry labels)
    and keep it in the environment store. Then: pgfleet up NAME."""
    st = envstore.open_store(store)
    d = envs.create(name, like, ttl=ttl, sets=set_ or [], owner=owner, runner=runner_cidr, store=st)
    e = d.spec.ephemeral
    assert e is not None
    verb = "renewed" if d.renewed else "created"
    console.print(f"[green]{verb}[/green] {name} like {like}: owner {e.owner}, expires {e.expires.isoformat()}, "
                  f"admin ranges {', '.join(d.spec.admin_cidrs)}; stored in {st.url}")
    console.print(f"next: pgfleet up {name}")


@env_app.command("list")
def list_(store: StoreOpt = None) -> None:
    """Every environment in the store: template, owner, expiry, state (expired or not; Pulumi's resource count)."""
    st = envstore.open_store(store)
    now = dt.datetime.now(dt.timezone.utc)
    found = envs.environments(st)
    states = envs.pulumi_states() if found else {}
    rows = [("environment", "template", "owner", "expires", "state", "pulumi")]
    for e in found:
        state = "invalid" if e.problem else "production" if e.production else "expired" if e.expired(now) else "active"
        pulumi = states.get(e.name, "not created") if isinstance(states, dict) else "unknown"
        rows.append((e.name, e.template or "-", e.owner or "-", e.expires.isoformat() if e.expires else "-", state, pulumi))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip())
    if isinstance(states, str):
        console.print(f"pulumi column unknown: {states}")
    if not found:
        console.print(f"no environments in {st.url}")


@env_app.command()
def destroy(name: Annotated[str, typer.Argument(help="the environment")],
            yes: YesDestroyEnv = False,  # type: ignore[valid-type]
            missing_ok: Annotated[bool, typer.Option("--missing-ok", help="no error when there is no such environment "
                                                                          "(a pull request closed before it was made)")] = False,
            store: StoreOpt = None) -> None:
    """pulumi destroy the environment, remove its Pulumi stack, and forget it (store and checkout)."""
    if envs.destroy(name, yes=yes, store=envstore.open_store(store), missing_ok=missing_ok):
        console.print(f"[green]destroyed[/green] {name}")
    else:
        console.print(f"no environment {name}: nothing to destroy")


@env_app.command()
def gc(dry_run: Annotated[bool, typer.Option("--dry-run", help="say what would be destroyed, destroy nothing")] = False,
       store: StoreOpt = None) -> None:
    """Destroy every expired environment in the store; never one marked production. Exit 1 when one failed."""
    actions = envs.gc(dry_run=dry_run, store=envstore.open_store(store))
    for a in actions:
        console.print(f"{a.name}: {a.action} ({a.why})")
    if not actions:
        console.print("no environments")
    failed = [a.name for a in actions if a.action == "failed"]
    if failed:
        raise PgfleetError(f"env gc could not destroy {', '.join(failed)} (see above)")
