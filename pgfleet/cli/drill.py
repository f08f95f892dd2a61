"""``pgfleet drill STACK SCENARIO``: measure failover on a running cluster.

Exits non-zero when an acknowledged write was lost, split brain was seen, the
cluster did not return to full health, or a step could not run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from pgfleet.cli.options import ClusterOpt, StackArg, yes_option
from pgfleet.errors import PgfleetError

# wide enough for the report table in CI logs (no terminal there)
console = Console(width=160) if not Console().is_terminal else Console()
YesBreak = yes_option("required for stacks outside the lab: drills break things")


def drill(
    stack: StackArg,
    scenario: Annotated[str, typer.Argument(help="switchover | postgres-crash | patroni-crash | node-loss | "
                                                 "primary-partition | replica-loss | replica-partition | entry-loss | "
                                                 "entry-partition | etcd-member-loss | all")],
    writers: Annotated[int, typer.Option(min=1, max=256, help="concurrent writers through the read-write endpoint")] = 4,
    duration: Annotated[float, typer.Option(min=10.0, help="upper bound in seconds on one scenario's workload")] = 180.0,
    json_file: Annotated[Path | None, typer.Option("--json", help="also write the results as JSON to this file")] = None,
    cluster: ClusterOpt = None,
    yes: YesBreak = False,  # type: ignore[valid-type]
    hold: Annotated[float, typer.Option(min=30.0, help="seconds each fault is held before it is undone; a client with "
                                                       "no commit by then counts as down for all of it")] = 30.0,
    dsn: Annotated[str | None, typer.Option("--dsn", help="measure your own connection string instead of the one "
                                                          "'pgfleet dsn STACK' prints (e.g. your application's)")] = None,
) -> None:
    """Inject a failure under a write workload through the DSN users get; report per-client RTO, lost writes, split brain."""
    from pgfleet.drill import report, runner, scenarios
    from pgfleet.drill.control import PatroniControl
    from pgfleet.stack import Stack

    chosen = scenarios.resolve(scenario)  # an unknown name fails before anything is touched
    st = Stack.open(stack)
    if st.spec.production:
        raise PgfleetError(f"{stack} is marked production: drills inject real failures and never run there; use a staging stack")
    if st.provider.drills_need_yes and not yes:
        raise PgfleetError(f"{stack} is not the lab: a drill will kill processes and switch its primary; add --yes to go ahead")
    control = PatroniControl.of(st, cluster)
    if dsn is not None:
        control.override_rw_dsn(dsn)
    opts = runner.DrillOptions(writers=writers, duration=max(duration, hold + 60.0), hold=hold)
    results = runner.run_all(control, chosen, opts, log=lambda m: console.print(f"[dim]{m}[/dim]"))
    console.print(report.table(results))
    for line in report.failure_lines(results):
        console.print(f"[red]✗[/red] {line}", highlight=False)
    if json_file:
        json_file.write_text(report.to_json(control.stack, results) + "\n")
    raise typer.Exit(report.exit_code(results))


COMMANDS = (drill,)
