#!/usr/bin/env python3
"""Pooled (HAProxy 5000 → PgBouncer) against direct (HAProxy 5002 → PostgreSQL): pgbench select-only at 8, 50,
300 and 1000 clients, with persistent connections and with a new connection per transaction.

The DSNs are the ones `pgfleet dsn lab --libpq 15` prints (pgbench here is this machine's; Debian 12's is libpq 15); the same
query mode (simple) on both. For each run: TPS, mean latency, failed transactions, whether pgbench gave up on
connecting (and why), and the most server connections the app role held on the primary while it ran (sampled
every second through the admin path). Writes bench/results/pooler.json. Figures only; nothing passes or fails.

    .venv/bin/python bench/pooler.py [--seconds 20] [--clients 8,50,300,1000] [--scale 10]
"""

from __future__ import annotations

import argparse
import re
import resource
import shutil
import subprocess
import threading
import time
from pathlib import Path

import results_file  # bench/results_file.py

from pgfleet import contract, sizing
from pgfleet import lab as lab_mod
from pgfleet.providers.lab import inventory
from pgfleet.spec import load

ROOT = Path(__file__).resolve().parent.parent
#: This machine's pgbench (Debian's pg_wrapper picks the newest installed major; ./bootstrap installs postgresql).
PGBENCH = shutil.which("pgbench") or "pgbench"


def pgbench_major() -> str:
    """The major of the pgbench (and libpq) that runs: the DSN is asked for that libpq, and recorded."""
    out = subprocess.run([PGBENCH, "--version"], capture_output=True, text=True, check=True).stdout
    m = re.search(r"\b(\d+)(?:\.\d+)?", out)
    if not m:
        raise SystemExit(f"cannot read pgbench's version from {out!r}")
    return m.group(1)


def dsn(*flags: str) -> str:
    return results_file.timed_cli("dsn", "lab", "--libpq", pgbench_major(), *flags)[1].strip()


def server_connections(spec, stop: threading.Event, out: list[int]) -> None:  # type: ignore[no-untyped-def]
    """The app role's backends on every database node, summed, once a second (the peak is what a run needed)."""
    q = "SELECT count(*) FROM pg_stat_activity WHERE usename = 'app' AND backend_type = 'client backend'"
    nodes = [h.name for h in inventory(spec).by_role("postgres")]
    while not stop.is_set():
        total = 0
        for n in nodes:
            cp = lab_mod.run(spec, n, f"runuser -u {contract.POSTGRES_OS_USER} -- psql -Atc \"{q}\"", check=False, timeout=10)
            total += int(cp.stdout.strip() or 0)
        out.append(total)
        stop.wait(1)


#: /proc/PID/stat's utime + stime + cutime + cstime of every process named so: a process's own time plus what its
#: reaped children used (the postmaster's children, backends that ended), each counted once; first line: the
#: node's clock ticks per second.
CPU_TICKS = ("getconf CLK_TCK; for n in {names}; do for p in $(pgrep -x $n); do echo $n $(cut -d')' -f2 /proc/$p/stat | "
             "awk '{{print $12+$13+$14+$15}}'); done; done")


def cpu_seconds(spec, node: str, names: tuple[str, ...]) -> dict[str, float]:  # type: ignore[no-untyped-def]
    hz, *lines = lab_mod.run(spec, node, CPU_TICKS.format(names=" ".join(names)), timeout=20).stdout.splitlines()
    totals = dict.fromkeys(names, 0.0)
    for line in lines:
        name, ticks = line.split()
        totals[name] += int(ticks) / int(hz)
    return totals


def primary_node(spec) -> str:  # type: ignore[no-untyped-def]
    from pgfleet import cluster as cluster_mod
    from pgfleet.stack import Stack

    st = Stack.open("lab")
    leader = cluster_mod.leader(cluster_mod.members(st.inventory(), spec.clusters[0].name, st.secrets))
    if leader is None:
        raise SystemExit("no leader: the cluster is not healthy, nothing to measure")
    return leader.name


def pgbench(conninfo: str, clients: int, seconds: int, connect_each: bool) -> dict[str, object]:
    argv = [PGBENCH, "-n", "-S", "-M", "simple", "-c", str(clients), "-j", "2", "-T", str(seconds), *(["-C"] if connect_each else []), conninfo]
    cp = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 180)
    out = cp.stdout + cp.stderr
    tps = re.search(r"tps = ([\d.]+)", out)
    lat = re.search(r"latency average = ([\d.]+) ms", out)
    failed = re.search(r"number of failed transactions: (\d+)", out)
    errors = sorted({m.strip() for m in re.findall(r"(?:error|FATAL):\s*([^\n]+)", out)})[:3]
    return {"tps": float(tps.group(1)) if tps else 0.0, "latency_ms": float(lat.group(1)) if lat else None,
            "failed_transactions": int(failed.group(1)) if failed else None, "exit_code": cp.returncode, "errors": errors}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--clients", default="8,50,300,1000")
    ap.add_argument("--scale", type=int, default=10)
    a = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # pgbench opens a socket per client
    results_file.timed_cli("up", "lab")
    spec = load("lab")
    endpoints = {"pooled": dsn(), "direct": dsn("--direct")}
    subprocess.run([PGBENCH, "-i", "-q", "-s", str(a.scale), endpoints["direct"]], check=True, capture_output=True, text=True)
    primary, entry = primary_node(spec), inventory(spec).by_role("postgres")[0].name
    runs = []
    for connect_each in (False, True):
        for clients in [int(c) for c in a.clients.split(",")]:
            for name, conninfo in endpoints.items():
                samples: list[int] = []
                stop = threading.Event()
                t = threading.Thread(target=server_connections, args=(spec, stop, samples), daemon=True)
                t.start()
                # CPU of the primary's PgBouncer processes and PostgreSQL, and of HAProxy on the entry node
                # (libpq 15 enters through the first host), per transaction
                before = {**cpu_seconds(spec, primary, ("pgbouncer", "postgres")), **cpu_seconds(spec, entry, ("haproxy",))}
                r = pgbench(conninfo, clients, a.seconds, connect_each)
                after = {**cpu_seconds(spec, primary, ("pgbouncer", "postgres")), **cpu_seconds(spec, entry, ("haproxy",))}
                stop.set()
                t.join()
                xacts = float(r["tps"]) * a.seconds  # type: ignore[arg-type]
                r.update({"endpoint": name, "clients": clients, "connect_per_transaction": connect_each,
                          "server_connections_max": max(samples, default=0),
                          "cpu_us_per_transaction": {k: round((after[k] - before[k]) * 1e6 / xacts, 1) if xacts else None for k in after}})
                print(r, flush=True)
                runs.append(r)
                time.sleep(3)
    ratio = {f"{c}{'_connect_each' if ce else ''}": round(p["tps"] / d["tps"], 2) if d["tps"] else None
             for c in sorted({r["clients"] for r in runs}) for ce in (False, True)
             for p in [next(r for r in runs if r["endpoint"] == "pooled" and r["clients"] == c and r["connect_per_transaction"] == ce)]
             for d in [next(r for r in runs if r["endpoint"] == "direct" and r["clients"] == c and r["connect_per_transaction"] == ce)]}
    results_file.write("pooler", {"seconds": a.seconds, "scale": a.scale, "pgbench": f"{pgbench_major()} (this machine), -S -M simple -j 2",
                                  "pgbouncer_processes_per_node": sizing.pgbouncer_processes(spec.clusters[0]),
                                  "runs": runs, "pooled_over_direct_tps": ratio})


if __name__ == "__main__":
    main()
