#!/usr/bin/env python3
"""What monitoring costs and how fast it speaks: the exporters' CPU and memory on a database node (and the
monitoring host's daemons), and the time from a fault to the webhook's notification.

Runs against the lab (root only; `pgfleet up lab` first, which this script runs): samples /proc of each
exporter over a window, then powers off the primary (the lab's power loss: link cut, container killed) and
waits for PatroniMemberDown and PostgresFailover at a webhook on the bridge, then stops the object store and
waits for WalArchivingFailing. Writes bench/results/monitoring.json. Figures only; nothing passes or fails.

    .venv/bin/python bench/monitoring.py [--window 120]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import results_file  # bench/results_file.py

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the receivers the lab tests use: one implementation

from monitoring_receivers import Webhook  # noqa: E402

from pgfleet import contract, sizing  # noqa: E402
from pgfleet import lab as lab_mod  # noqa: E402
from pgfleet.lab import objectstore  # noqa: E402
from pgfleet.lab.layout import Layout  # noqa: E402
from pgfleet.monitoring.client import Prometheus  # noqa: E402
from pgfleet.stack import Stack  # noqa: E402

#: Units sampled per host (the monitoring host's own node_exporter included).
def node_units(spec) -> list[str]:  # type: ignore[no-untyped-def]
    """Exporter units of a database node: one PgBouncer exporter per PgBouncer process."""
    return [u for name, u in contract.EXPORTER_UNITS.items() if name != "pgbouncer"] + [
        contract.pgbouncer_exporter_unit(p) for p in contract.pgbouncer_processes(sizing.pgbouncer_processes(spec.clusters[0]))]
MONITOR_UNITS = [contract.PROMETHEUS_UNIT, contract.ALERTMANAGER_UNIT, contract.PROBE_UNIT, contract.EXPORTER_UNITS["node"]]

SAMPLE = r"""
import json, os, subprocess, sys, time
units = sys.argv[2:]
def pids():
    out = {}
    for u in units:
        pid = subprocess.run(["systemctl", "show", "-p", "MainPID", "--value", u], capture_output=True, text=True).stdout.strip()
        out[u] = int(pid or 0)
    return out
def ticks(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return int(f[11]) + int(f[12])
def rss(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
p = pids(); t0 = {u: ticks(pid) for u, pid in p.items() if pid}; s0 = time.time()
rs = {u: [] for u in t0}
end = s0 + float(sys.argv[1])
while time.time() < end:
    for u in t0:
        rs[u].append(rss(p[u]))
    time.sleep(5)
el = time.time() - s0; hz = os.sysconf("SC_CLK_TCK")
print(json.dumps({u: {"cpu_percent": round(100 * (ticks(p[u]) - t0[u]) / hz / el, 3), "rss_mib_mean": round(sum(rs[u]) / len(rs[u]), 1),
                      "rss_mib_max": round(max(rs[u]), 1)} for u in t0}))
"""


def sample(spec, host: str, units: list[str], window: float) -> dict:  # type: ignore[no-untyped-def]
    cmd = f"python3 - {window} {' '.join(units)} <<'EOF'\n{SAMPLE}\nEOF"
    return json.loads(lab_mod.run(spec, host, cmd, timeout=window + 60).stdout)


def wait(what: str, check, timeout: float, every: float = 3):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() > deadline:
            raise SystemExit(f"{what}: not within {timeout:.0f} s")
        time.sleep(every)
    return value


def node_loss(st: Stack, prom: Prometheus, hook: Webhook) -> dict:
    wait("a quiet cluster (no alert firing)", lambda: not [a for a in prom.alerts() if a.firing], 420, every=10)
    (primary,) = [s.labels["node"] for s in prom.query("patroni_primary == 1")]
    inv = st.inventory()
    t0 = time.time()
    st.provider.power_off(inv, primary)
    try:
        down = hook.wait_for("PatroniMemberDown", since=t0, timeout=240)
        failover = hook.wait_for("PostgresFailover", since=t0, timeout=240)
    finally:
        st.provider.power_on(inv, primary)
    wait("every scrape target up again", lambda: all(t.up for t in prom.targets()), 300, every=5)
    return {"killed": primary, "patroni_member_down_s": round(down.at - t0, 1), "postgres_failover_s": round(failover.at - t0, 1)}


def archiving(st: Stack, prom: Prometheus, hook: Webhook) -> dict:
    layout = Layout.of(st.spec)
    proxy = objectstore.daemons(st.spec, layout)[1]
    psql = f"runuser -u {contract.POSTGRES_OS_USER} -- psql -Atc"
    (primary,) = [s.labels["node"] for s in prom.query("patroni_primary == 1")]
    t0 = time.time()
    proxy.stop()
    try:
        deadline = time.monotonic() + 480
        while True:  # WAL to archive, as a busy primary makes it
            lab_mod.run(st.spec, primary, f"{psql} \"CREATE TABLE IF NOT EXISTS bench_archive (pad text); "
                        f"INSERT INTO bench_archive SELECT repeat('x', 1000) FROM generate_series(1, 20000); SELECT pg_switch_wal()\"")
            try:
                n = hook.wait_for("WalArchivingFailing", since=t0, timeout=20)
                break
            except AssertionError:
                if time.monotonic() > deadline:
                    raise
    finally:
        objectstore.ensure(st.spec, layout)
    lab_mod.run(st.spec, primary, f"{psql} 'DROP TABLE IF EXISTS bench_archive'")
    wait("archiving alert resolved", lambda: "WalArchivingFailing" not in {a.name for a in prom.alerts() if a.firing}, 420, every=10)
    return {"wal_archiving_failing_s": round(n.at - t0, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--window", type=float, default=120, help="seconds over which CPU and memory are sampled")
    ap.add_argument("--runs", type=int, default=1, help="node-loss and archiving runs (each waits out the last one's alerts)")
    a = ap.parse_args()
    results_file.timed_cli("up", "lab")
    st = Stack.open("lab")
    (mon,) = st.inventory().by_role("monitor")
    prom = Prometheus(f"https://{mon.public_ip}:{contract.PROMETHEUS_PORT}", st.secrets.ca_cert_pem)
    db = st.inventory().by_role("postgres")[0].name
    resources = {db: sample(st.spec, db, node_units(st.spec), a.window), mon.name: sample(st.spec, mon.name, MONITOR_UNITS, a.window)}
    hook = Webhook().start(st.spec)
    try:
        losses = [node_loss(st, prom, hook) for _ in range(a.runs)]
        archives = [archiving(st, prom, hook) for _ in range(a.runs)]
    finally:
        hook.stop()
    results_file.write("monitoring", {
        "sample_window_s": a.window, "resources": resources,
        "exporters_on_a_database_node": {"cpu_percent": round(sum(v["cpu_percent"] for v in resources[db].values()), 3),
                                         "rss_mib": round(sum(v["rss_mib_mean"] for v in resources[db].values()), 1)},
        "node_loss": losses, "archiving": archives,
        "median_fault_to_webhook_s": {
            "node_loss_first_alert": statistics.median(r["patroni_member_down_s"] for r in losses),
            "node_loss_failover_alert": statistics.median(r["postgres_failover_s"] for r in losses),
            "archiving_failure": statistics.median(r["wal_archiving_failing_s"] for r in archives)},
    })


if __name__ == "__main__":
    main()
