"""``pgfleet vector advise``: measure every pgvector index of a cluster and say what reaches the target recall.

The command finds, through the stack, the owner's DSNs (``pgfleet dsn --ro
--direct`` for the measurements, ``--direct`` for the primary), the server
type's RAM and the larger types pgfleet could size, and the admin path for the
scratch database: ``psql`` as the ``postgres`` OS user on the current leader
over SSH, as ``pgfleet backup`` reaches the primary (the superuser never logs
in over the network, and database owners cannot create databases). It hands
those to :func:`pgfleet.vector.session.advise_database`, which knows nothing
of stacks.

Exit :data:`~pgfleet.vector.advise.EXIT_OK` (0) when every index reaches the
target with its current settings, :data:`~pgfleet.vector.advise.EXIT_ADVICE`
(1) when there is advice, :data:`~pgfleet.vector.advise.EXIT_UNKNOWN` (2) when
something could not be measured (or the stack could not be opened).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Annotated

import typer
from rich.console import Console

from pgfleet.cli.options import ClusterOpt, StackArg
from pgfleet.errors import ClusterError, PgfleetError, SpecError
from pgfleet.inventory import Inventory
from pgfleet.secrets import Secrets
from pgfleet.vector import advise as advise_mod
from pgfleet.vector import report
from pgfleet.vector.session import SCRATCH_DB, AdminSQL, DatabaseReport, DatabaseTarget, Figures, Settings, advise_database

vector_app = typer.Typer(no_args_is_help=True, help="pgvector indexes: measure recall and latency, advise settings.")
# wide enough for the tables in CI logs (no terminal there), as pgfleet drill does
console = Console(width=160) if not Console().is_terminal else Console()
err = Console(stderr=True)


class _Opened:
    """The stack, its chosen cluster and the one inventory every DSN is built from."""

    def __init__(self, stack: str, cluster: str | None) -> None:
        from pgfleet.stack import Stack

        self.stack = Stack.open(stack)
        try:
            self.cluster_spec = self.stack.cluster(cluster)
        except KeyError:
            raise PgfleetError(f"stack {self.stack.name!r} has no cluster {cluster!r} (it has: "
                               f"{', '.join(c.name for c in self.stack.spec.clusters)})") from None
        self.spec = self.stack.spec
        self.name = self.stack.name

    @property
    def secrets(self) -> Secrets:
        return self.stack.secrets

    def inventory(self) -> Inventory:
        return self.stack.inventory()

    def target(self, database: str, owner: str) -> DatabaseTarget:
        from pgfleet import cluster as cluster_mod

        def dsn(**kw: object) -> str:
            return cluster_mod.dsn(self.name, self.spec, self.inventory(), self.secrets, self.cluster_spec, **kw)  # type: ignore[arg-type]

        return DatabaseTarget(database, owner, dsn(ro=True, direct=True, db=database), dsn(direct=True, db=database),
                              dsn(direct=True, db=SCRATCH_DB, user=owner))


def family(server_type: str) -> str:
    """A Hetzner type's line (``ccx``, ``cx``, ``cpx``, ``cax``): a larger type of the same line keeps the CPU kind and price model."""
    return server_type.rstrip("0123456789")


def _figures(st: _Opened) -> Figures:
    """The server type's RAM and the larger types of its line, each with the shared_buffers pgfleet would give it."""
    from pgfleet import sizing
    from pgfleet.server_types import SERVER_TYPES

    spec, c = st.spec, st.cluster_spec
    now = c.server
    larger = sorted((t for t in SERVER_TYPES.values() if family(t.name) == family(now.name) and t.memory_gib > now.memory_gib),
                    key=lambda t: t.memory_gib)
    options = tuple(advise_mod.ServerOption(t.name, t.memory_gib * 1024**3,
                                            sizing.shared_buffers_bytes(spec, c.model_copy(update={"server_type": t.name})))
                    for t in larger)
    return Figures(now.name, now.memory_gib * 1024**3, options)


def admin_sql(st: _Opened, cluster: str) -> AdminSQL:
    """Statements as the superuser on the current leader: ``psql -c`` per statement (CREATE DATABASE cannot share a
    transaction), over SSH with the inventory's keys."""
    from pgfleet import cluster as cluster_mod
    from pgfleet import contract
    from pgfleet.providers.base import run_on

    def run(database: str, statements: Sequence[str]) -> None:
        inv = st.inventory()
        leader = cluster_mod.leader(cluster_mod.members(inv, cluster, st.secrets))
        if leader is None:
            raise ClusterError(f"cluster {cluster!r} has no leader: no primary to build the scratch database on")
        argv = ["runuser", "-u", contract.POSTGRES_OS_USER, "--", "psql", "-X", "-At", "-v", "ON_ERROR_STOP=1", "-d", database]
        for s in statements:
            argv += ["-c", s]
        run_on(inv, leader.name, argv, timeout=120)

    return run


@vector_app.command()
def advise(stack: StackArg,
           cluster: ClusterOpt = None,
           db: Annotated[list[str] | None, typer.Option("--db", help="database (repeat for more; default: every database of the cluster)")] = None,
           index: Annotated[list[str] | None, typer.Option("--index", help="only this index (name or schema.name; repeat for more)")] = None,
           target_recall: Annotated[float, typer.Option("--target-recall", min=0.0, max=1.0, help="recall@k to reach")] = 0.99,
           sample: Annotated[int, typer.Option("--sample", min=1, max=10000, help="stored vectors taken as queries")] = 100,
           k: Annotated[int, typer.Option("--k", min=1, max=1000, help="neighbours per query (recall@k)")] = 10,
           max_p95_ms: Annotated[float, typer.Option("--max-p95-ms", min=0.0, help="a p95 above this at the needed ef_search "
                                                     "makes a rebuild worth estimating")] = advise_mod.SLOW_P95 * 1000,
           no_rebuild: Annotated[bool, typer.Option("--no-rebuild", help=f"never build in the scratch database {SCRATCH_DB}")] = False,
           as_json: Annotated[bool, typer.Option("--json", help="print a JSON report (same exit codes)")] = False) -> None:
    """Every hnsw/ivfflat index: rows, dimensions, operator, build options, size against shared_buffers and RAM, the
    owner's ef_search, recall@k and p95 measured on a replica; the smallest ef_search that reaches the target
    (measured), and rebuild / quantization / server type / REINDEX advice (estimated). Exit 0: every index reaches
    the target now; 1: advice; 2: something could not be measured."""
    if not 0 < target_recall <= 1:
        err.print("[red]error:[/red] --target-recall must be in (0, 1]", highlight=False)
        raise typer.Exit(advise_mod.EXIT_UNKNOWN)
    try:
        st = _Opened(stack, cluster)
        c = st.cluster_spec
        names = [d.name for d in c.databases]
        unknown = [n for n in db or [] if n not in names]
        if unknown:
            raise PgfleetError(f"cluster {c.name!r} has no database {', '.join(unknown)} (it has: {', '.join(names)})")
        chosen = [d for d in c.databases if not db or d.name in db]
        st.inventory()  # refuses when the hosts cannot be reached now (a lab that is down)
        figures = _figures(st)
        admin = admin_sql(st, c.name)
        settings = Settings(target=target_recall, k=k, sample=sample, max_p95=max_p95_ms / 1000, rebuild=not no_rebuild,
                            only=tuple(index or ()))
        reports = [advise_database(st.target(d.name, d.owner), settings, figures, admin) for d in chosen]
    except SpecError:
        raise  # pgfleet's main prints every problem and exits 2
    except PgfleetError as e:
        err.print(f"[red]error:[/red] {e}", highlight=False, soft_wrap=True)
        raise typer.Exit(advise_mod.EXIT_UNKNOWN) from None
    ctx = report.Context(st.name, c.name, target_recall, k, sample, str(st.stack.file), figures.server_type, figures.ram_bytes)
    databases = {d.name: d.model_dump(mode="json") for d in c.databases}
    if as_json:
        console.out(json.dumps(report.to_json(ctx, reports, databases), indent=2), highlight=False)
    else:
        report.render(console, ctx, reports, databases)
    missing = missing_indexes(index or [], reports)
    if missing:
        err.print(f"[red]error:[/red] no hnsw or ivfflat index {', '.join(missing)} in {', '.join(d.name for d in chosen)}",
                  highlight=False, soft_wrap=True)
        raise typer.Exit(advise_mod.EXIT_UNKNOWN)
    raise typer.Exit(report.code_for(reports))


def missing_indexes(names: Sequence[str], reports: Sequence[DatabaseReport]) -> list[str]:
    """``--index`` names no database answered with (a typo must not pass for "every index reaches the target")."""
    found = {n for d in reports for r in d.indexes for n in (r.info.index, r.info.qualified_index)}
    return [n for n in names if n not in found]
