"""``pgfleet monitoring | alerts | top``: the stack's Prometheus, its firing alerts, and a live view of the clusters.

Each command finds the monitoring host (inventory role ``monitor``) and the
cluster CA through the stack, then hands a Prometheus URL and the CA (PEM) to
its core: :func:`target_health`, :func:`report_alerts`, :func:`top_frame` /
:func:`run_top`. The cores know nothing of stacks (tests run them against a
Prometheus on loopback).

``pgfleet alerts`` exits :data:`EXIT_OK` (0) when no critical alert fires,
:data:`EXIT_CRITICAL` (1) when at least one does, :data:`EXIT_UNKNOWN` (2) when
it could not tell (Prometheus unreachable or untrusted, a stack that cannot be
opened), so a script never mistakes "could not ask" for "all quiet".
"""

from __future__ import annotations

import datetime as dt
import json
import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from pgfleet import contract
from pgfleet.cli.options import StackArg
from pgfleet.errors import MonitoringError, PgfleetError, SpecError
from pgfleet.inventory import ROLE_MONITOR, Inventory, InventoryHost
from pgfleet.monitoring import top as top_mod
from pgfleet.monitoring.client import TIMEOUT, Alert, Prometheus
from pgfleet.schema import Spec

# wide enough for the tables in CI logs (no terminal there), as pgfleet drill does
console = Console(width=160) if not Console().is_terminal else Console()
err = Console(stderr=True)

EXIT_OK, EXIT_CRITICAL, EXIT_UNKNOWN = 0, 1, 2
#: What ``top`` and the tables print for a value Prometheus has no series for.
ABSENT = "—"


# ---- finding Prometheus through the stack (no traffic)


@dataclass(frozen=True)
class Endpoint:
    """The monitoring host and the URLs of its Prometheus and Alertmanager (HTTPS, certificates from the cluster CA)."""

    host: InventoryHost
    prometheus: str
    alertmanager: str


def monitor_endpoint(spec: Spec, inv: Inventory) -> Endpoint:
    """The stack's monitoring host (dialled on its public address); a clear error when the stack has none."""
    if not spec.monitoring.enabled:
        raise MonitoringError(f"stack {inv.stack!r} has monitoring.enabled: false: it has no Prometheus to ask")
    hosts = inv.by_role(ROLE_MONITOR)
    if not hosts:
        raise MonitoringError(f"stack {inv.stack!r} has no host with role {ROLE_MONITOR!r} in its inventory: create it first "
                              f"(pgfleet up / deploy)")
    h = hosts[0]
    address = f"[{h.public_ip}]" if ":" in h.public_ip else h.public_ip
    return Endpoint(h, f"https://{address}:{contract.PROMETHEUS_PORT}", f"https://{address}:{contract.ALERTMANAGER_PORT}")


def _open(stack: str) -> tuple[str, str]:
    """(Prometheus URL, cluster CA PEM) of a stack whose hosts can be reached now."""
    from pgfleet.stack import Stack

    st = Stack.open(stack)
    return monitor_endpoint(st.spec, st.inventory()).prometheus, st.secrets.ca_cert_pem


# ---- pgfleet monitoring


def access_lines(stack: str, spec: Spec, inv: Inventory, ep: Endpoint, ca_file: Path) -> list[tuple[str, str]]:
    """(what, how) lines: the URLs, the CA file, how to reach them, where the dashboards come from."""
    h = ep.host
    ssh = ["ssh", "-N", "-L", f"{contract.PROMETHEUS_PORT}:127.0.0.1:{contract.PROMETHEUS_PORT}",
           "-L", f"{contract.ALERTMANAGER_PORT}:127.0.0.1:{contract.ALERTMANAGER_PORT}"]
    if h.ssh_port != 22:
        ssh += ["-p", str(h.ssh_port)]
    if inv.ssh_key_file:
        ssh += ["-i", inv.ssh_key_file]
    ssh.append(f"{h.ssh_user}@{h.public_ip}")
    direct = (f"directly from admin_cidrs ({', '.join(spec.admin_cidrs)})" if spec.admin_cidrs
              else "no admin_cidrs: only through the SSH tunnel")
    tunnel = (f"elsewhere: {shlex.join(ssh)}, then "
              f"curl --cacert {shlex.quote(str(ca_file))} --connect-to {h.public_ip}:{contract.PROMETHEUS_PORT}:127.0.0.1:"
              f"{contract.PROMETHEUS_PORT} {ep.prometheus}/-/healthy (the certificate names {h.name} and its addresses, "
              f"not 127.0.0.1: a browser on the tunnel warns about the name)")
    return [
        ("Prometheus", ep.prometheus),
        ("Alertmanager", ep.alertmanager),
        ("CA", f"{ca_file} (the cluster CA; e.g. curl --cacert {shlex.quote(str(ca_file))} {ep.prometheus}/api/v1/alerts)"),
        ("reach", direct),
        ("", tunnel),
        ("dashboards", f"pgfleet monitoring {stack} --dashboards DIR writes the Grafana dashboards as JSON; import them "
                       f"under Dashboards → New → Import with a Prometheus data source at {ep.prometheus}"),
    ]


def target_health(url: str, ca_pem: str, out: Console, *, timeout: float = TIMEOUT) -> int:
    """Print how many scrape targets are up and down, each down one with its last error; 0, or 1 when Prometheus
    does not answer (said on ``out``). A down target is reported, not an exit code: ``pgfleet alerts`` is for that."""
    try:
        targets = Prometheus(url, ca_pem, timeout=timeout).targets()
    except MonitoringError as e:
        out.print(f"[red]Prometheus does not answer:[/red] {e}", highlight=False, soft_wrap=True)
        return 1
    down = [t for t in targets if not t.up]
    colour = "green" if not down else "red"
    out.print(f"scrape targets: [{colour}]{len(targets) - len(down)} up, {len(down)} down[/{colour}]", highlight=False)
    for t in sorted(down, key=lambda t: (t.job, t.labels.get("node", ""), t.instance)):
        where = " ".join(v for v in (t.labels.get("cluster"), t.labels.get("node")) if v)
        out.print(f"  [red]{t.health}[/red] {t.job} {where} ({t.instance}): {t.last_error or 'no scrape yet'}",
                  highlight=False, soft_wrap=True)
    return 0


def monitoring(stack: StackArg,
               dashboards_dir: Annotated[Path | None, typer.Option(
                   "--dashboards", help="write the Grafana dashboards (JSON) into this directory and stop")] = None) -> None:
    """Prometheus' and Alertmanager's URLs, the CA to verify them, how to reach them; the scrape targets' health
    (exit 1 when Prometheus does not answer)."""
    from pgfleet import cluster as cluster_mod
    from pgfleet.stack import Stack

    st = Stack.open(stack)
    inv = st.inventory(reachable=False)
    ep = monitor_endpoint(st.spec, inv)
    if dashboards_dir is not None:
        from pgfleet.monitoring import dashboards

        for p in dashboards.write(dashboards_dir):
            console.print(str(p), highlight=False, soft_wrap=True)
        console.print(f"import them in Grafana under Dashboards → New → Import, with a Prometheus data source at {ep.prometheus} "
                      f"(CA: {cluster_mod.ca_file(st.name, st.secrets)})", highlight=False, soft_wrap=True)
        return
    ca_file = cluster_mod.ca_file(st.name, st.secrets)
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column(overflow="fold")
    for what, how in access_lines(st.name, st.spec, inv, ep, ca_file):
        grid.add_row(what, how)
    console.print(grid, highlight=False)
    try:
        st.inventory()  # refuses when the hosts cannot be reached now (a lab that is down)
    except PgfleetError as e:
        console.print(f"[red]Prometheus not asked:[/red] {e}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    raise typer.Exit(target_health(ep.prometheus, st.secrets.ca_cert_pem, console))


# ---- pgfleet alerts


def _age(since: dt.datetime | None, now: dt.datetime) -> str:
    if since is None:
        return ABSENT
    return duration((now - since).total_seconds())


def duration(seconds: float) -> str:
    """``42s``, ``3m 12s``, ``5h 07m``, ``2d 03h``."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    return f"{s // 86400}d {s % 86400 // 3600:02d}h"


SEVERITY_ORDER = {"critical": 0, "warning": 1}


def shown_alerts(alerts: list[Alert], *, pending: bool = False, cluster: str | None = None) -> list[Alert]:
    """Firing alerts (and pending ones with ``pending``), of ``cluster`` only if given; critical first, oldest first."""
    out = [a for a in alerts if (a.firing or (pending and a.state == "pending"))
           and (cluster is None or a.labels.get("cluster") == cluster)]
    far = dt.datetime.max.replace(tzinfo=dt.timezone.utc)
    return sorted(out, key=lambda a: (not a.firing, SEVERITY_ORDER.get(a.severity, 2), a.active_at or far, a.name))


def alerts_table(alerts: list[Alert], *, now: dt.datetime | None = None, state: bool = False) -> Table:
    now = now or dt.datetime.now(dt.timezone.utc)
    t = Table(show_edge=False, pad_edge=False, box=None, header_style="bold")
    for col in (["state"] if state else []) + ["severity", "alert", "cluster/node", "summary", "since", "runbook"]:
        t.add_column(col, overflow="fold")
    for a in alerts:
        colour = "red" if a.critical else "yellow" if a.severity == "warning" else "white"
        where = "/".join(v for v in (a.labels.get("cluster"), a.labels.get("node")) if v) or ABSENT
        row = [Text(a.severity or ABSENT, style=colour), a.name, where, a.annotations.get("summary", ""), _age(a.active_at, now),
               a.annotations.get("runbook_url", "")]
        t.add_row(*([a.state] if state else []), *row)
    return t


def alerts_json(url: str, alerts: list[Alert]) -> str:
    doc = {"prometheus": url,
           "critical_firing": sum(1 for a in alerts if a.firing and a.critical),
           "alerts": [{"alert": a.name, "state": a.state, "severity": a.severity, "cluster": a.labels.get("cluster"),
                       "node": a.labels.get("node"), "summary": a.annotations.get("summary"),
                       "runbook_url": a.annotations.get("runbook_url"),
                       "active_at": a.active_at.isoformat() if a.active_at else None,
                       "labels": a.labels, "annotations": a.annotations} for a in alerts]}
    return json.dumps(doc, indent=2)


def report_alerts(url: str, ca_pem: str, out: Console, *, pending: bool = False, as_json: bool = False,
                  cluster: str | None = None, timeout: float = TIMEOUT) -> int:
    """Print the alerts (a table, or JSON); :data:`EXIT_CRITICAL` when a critical alert fires, else :data:`EXIT_OK`.
    Prometheus unreachable or untrusted raises :class:`MonitoringError` (the command turns it into :data:`EXIT_UNKNOWN`)."""
    alerts = shown_alerts(Prometheus(url, ca_pem, timeout=timeout).alerts(), pending=pending, cluster=cluster)
    critical = [a for a in alerts if a.firing and a.critical]
    if as_json:
        out.out(alerts_json(url, alerts), highlight=False)
    elif not alerts:
        out.print(f"[green]no {'firing or pending' if pending else 'firing'} alerts[/green] ({url})", highlight=False)
    else:
        out.print(alerts_table(alerts, state=pending), highlight=False)
        firing = sum(1 for a in alerts if a.firing)
        out.print(f"{firing} firing ({len(critical)} critical)" + (f", {len(alerts) - firing} pending" if pending else ""),
                  highlight=False)
    return EXIT_CRITICAL if critical else EXIT_OK


def alerts(stack: StackArg,
           pending: Annotated[bool, typer.Option("--pending", help="also alerts whose for: has not run out yet")] = False,
           as_json: Annotated[bool, typer.Option("--json", help="print JSON for scripts (same exit codes)")] = False,
           cluster: Annotated[str | None, typer.Option("--cluster", help="only this cluster's alerts")] = None) -> None:
    """The firing alerts of the stack's Prometheus: severity, alert, cluster/node, summary, since, runbook.
    Exit 0: no critical alert fires; 1: at least one does; 2: could not ask (Prometheus unreachable, a bad stack)."""
    try:
        code = report_alerts(*_open(stack), console, pending=pending, as_json=as_json, cluster=cluster)
    except SpecError:
        raise  # pgfleet's main prints every problem and exits 2
    except PgfleetError as e:
        err.print(f"[red]error:[/red] {e}", highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_UNKNOWN) from None
    raise typer.Exit(code)


# ---- pgfleet top


def _num(v: float | None, fmt: str = "{:.0f}") -> str:
    return ABSENT if v is None or v != v else fmt.format(v)


def size(v: float | None) -> str:
    """Bytes as ``512 B``, ``3.0 KiB``, ``1.2 GiB``."""
    if v is None or v != v:
        return ABSENT
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(v) < 1024 or unit == "GiB":
            return f"{v:.0f} {unit}" if unit == "B" else f"{v:.1f} {unit}"
        v /= 1024
    return ABSENT  # not reached


def _targets(jobs: dict[str, bool]) -> Text:
    t = Text()
    for job, up in sorted(jobs.items()):
        if t:
            t.append(" ")
        t.append(job + ("✓" if up else "✗"), style="green" if up else "bold red")
    return t if t else Text(ABSENT)


def render(snap: top_mod.Snapshot, url: str, *, now: dt.datetime | None = None) -> RenderableType:
    """One frame of ``pgfleet top``."""
    now = now or dt.datetime.now(dt.timezone.utc)
    parts: list[RenderableType] = [Text(f"pgfleet top — {url} — {now:%Y-%m-%d %H:%M:%S} UTC", style="bold")]
    members = Table(box=None, header_style="bold", pad_edge=False)
    for col, justify in (("node", "left"), ("cluster", "left"), ("role", "left"), ("lag", "right"), ("TPS", "right"),
                         ("backends", "right"), ("pool waiting", "right"), ("max wait", "right"), ("targets", "left")):
        members.add_column(col, justify=justify)  # type: ignore[arg-type]
    for m in snap.members:
        lag = "0 B" if m.role == "primary" else size(m.lag_bytes)
        role = Text(m.role or ABSENT, style="bold" if m.role == "primary" else "")
        members.add_row(m.node, m.cluster, role, lag, _num(m.tps, "{:.1f}"), _num(m.backends), _num(m.pool_waiting),
                        _num(m.pool_max_wait, "{:.1f} s"), _targets(m.targets))
    parts.append(members if snap.members else Text(f"no cluster member has any series in Prometheus ({ABSENT})"))
    for c in snap.clusters:
        recall = ", ".join(f"{d}.{t}.{col} {v:.3f}" for (d, t, col), v in sorted(c.recall.items())) or ABSENT
        age = ABSENT if c.backup_age is None or c.backup_age != c.backup_age else duration(c.backup_age)
        parts.append(Text(f"cluster {c.name}: newest backup {age} ago, recall {recall}", overflow="fold"))
    for node, jobs in snap.other_targets.items():
        parts.append(Text.assemble(f"{node}: ", _targets(jobs)))
    shown = shown_alerts(snap.alerts)
    parts.append(Text(f"firing alerts: {len(shown)}", style="bold red" if any(a.critical for a in shown) else "bold"))
    if shown:
        parts.append(alerts_table(shown, now=now))
    return Group(*parts)


def top_frame(url: str, ca_pem: str, *, timeout: float = TIMEOUT) -> RenderableType:
    """Ask Prometheus and render one frame; :class:`MonitoringError` when it does not answer."""
    return render(top_mod.collect(Prometheus(url, ca_pem, timeout=timeout)), url)


def run_top(url: str, ca_pem: str, out: Console, *, interval: float = 2.0, once: bool = False) -> None:
    """``once``: print one frame (an unreachable Prometheus raises). Else refresh every ``interval`` s until Ctrl-C;
    a Prometheus that stops answering is shown in the frame and asked again."""
    if once:
        out.print(top_frame(url, ca_pem))
        return

    def frame() -> RenderableType:
        try:
            return top_frame(url, ca_pem, timeout=min(TIMEOUT, max(interval, 1.0)))
        except MonitoringError as e:
            return Text(f"{dt.datetime.now(dt.timezone.utc):%H:%M:%S} {e}", style="red")

    try:
        with Live(frame(), console=out, auto_refresh=False, screen=False) as live:
            while True:
                time.sleep(interval)
                live.update(frame(), refresh=True)
    except KeyboardInterrupt:
        pass


def top(stack: StackArg,
        interval: Annotated[float, typer.Option("--interval", min=0.5, help="seconds between refreshes")] = 2.0,
        once: Annotated[bool, typer.Option("--once", help="print one frame and exit")] = False) -> None:
    """A live view from Prometheus: per member role, lag, TPS, backends, pool waits, targets up; per cluster newest
    backup and recall; the firing alerts."""
    run_top(*_open(stack), console, interval=interval, once=once)


COMMANDS = (monitoring, alerts, top)
