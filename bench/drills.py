#!/usr/bin/env python3
"""Failover figures: each drill scenario several times, RTO min / median / p95 / max.

Runs the real drills (``pgfleet.drill``) against a running, healthy cluster
and accumulates every run in bench/results/drills.json, so a long series can
be taken in short chunks (the lab is shared: hold its lock per chunk only):

    flock /work/cluster.lock .venv/bin/pgfleet up lab
    flock /work/cluster.lock .venv/bin/python bench/drills.py --scenarios node-loss --rounds 2
    flock /work/cluster.lock .venv/bin/python bench/drills.py --scenarios switchover,postgres-crash --rounds 5

Runs measured with other Patroni or HAProxy settings are dropped (the file
says which settings its figures belong to); ``--fresh`` starts over. Figures
only: nothing passes or fails on them, but a run that lost a write or saw
split brain is counted and shown.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
from pathlib import Path
from typing import Any

import results_file  # bench/results_file.py (this script's own folder is on sys.path)

from pgfleet import sizing
from pgfleet.drill import runner, scenarios
from pgfleet.drill.control import PatroniControl

NAME = "drills"


def p95(values: list[float]) -> float:
    """Nearest-rank 95th percentile (with 5 runs: the largest)."""
    s = sorted(values)
    return s[max(0, math.ceil(0.95 * len(s)) - 1)]


def summary(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {"min": round(min(values), 2), "median": round(statistics.median(values), 2),
            "p95": round(p95(values), 2), "max": round(max(values), 2)}


def settings(control: PatroniControl) -> dict[str, Any]:
    """The timing the figures belong to: Patroni's live DCS config and the deploy's HAProxy/etcd numbers."""
    live = control.live_config()
    t = sizing.PatroniTiming(ttl=live["ttl"], loop_wait=live["loop_wait"], retry_timeout=live["retry_timeout"])
    h = sizing.haproxy_timing(t)
    e = sizing.etcd_timing(t)
    c = sizing.client_timing(h)
    return {
        "client": {"connect_timeout_s": c.connect_timeout, "tcp_user_timeout_ms": c.tcp_user_timeout,
                   "keepalives_idle_s": c.keepalives_idle, "keepalives_interval_s": c.keepalives_interval,
                   "keepalives_count": c.keepalives_count, "load_balance_hosts": "random",
                   "wal_sender_timeout_ms": sizing.wal_sender_timeout_ms(h)},
        "patroni": {k: live.get(k) for k in ("ttl", "loop_wait", "retry_timeout", "synchronous_mode",
                                             "synchronous_mode_strict", "failsafe_mode", "maximum_lag_on_failover",
                                             "primary_start_timeout")},
        "haproxy": {"inter_ms": h.inter, "fastinter_ms": h.fastinter, "downinter_ms": h.downinter, "fall": h.fall,
                    "rise": h.rise, "on_marked_down": "shutdown-sessions"},
        "etcd": {"heartbeat_interval_ms": e.heartbeat_interval, "election_timeout_ms": e.election_timeout,
                 # etcd's leader is handed away from the primary's node (pgfleet/node/etcd_leader_away.py)
                 "leader_away_interval_s": sizing.ETCD_LEADER_AWAY_INTERVAL},
    }


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def _fmt(summary_: dict[str, float] | None) -> str:
    return "—" if not summary_ else " / ".join(f"{summary_[k]:.2f}" for k in ("min", "median", "p95", "max"))


def table(doc: dict[str, Any]) -> str:
    """The README's table: per scenario this series (per-client RTO, and no-client-commits RTO) beside the previous one."""
    prev = (doc.get("previous_series") or [{}])[0].get("scenarios") or {}
    rows = ["| scenario | runs (passed) | RTO, any one client: min / median / p95 / max (s) | "
            "no client committing (s) | previous series, no client committing, fault undone at the first commit (s) | lost writes |", "|---|---|---|---|---|---|"]
    for name, sc in doc["scenarios"].items():
        old = prev.get(name, {}).get("rto_s")
        rows.append(f"| {name} | {sc['runs']} ({sc['passed']}) | {_fmt(sc['rto_s'])} | {_fmt(sc.get('rto_all_writers_s'))} | "
                    f"{_fmt(old)} | {sc['lost_writes']} |")
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stack", default="lab")
    ap.add_argument("--scenarios", default=",".join(scenarios.SCENARIOS), help="comma-separated scenario names")
    ap.add_argument("--rounds", type=int, default=1, help="how many times each scenario runs in this chunk")
    ap.add_argument("--writers", type=int, default=4)
    ap.add_argument("--fresh", action="store_true", help="forget earlier runs")
    ap.add_argument("--table", action="store_true", help="print the README table from bench/results/drills.json and exit")
    a = ap.parse_args()
    if a.table:
        print(table(json.loads((results_file.RESULTS / f"{NAME}.json").read_text())))
        return

    control = PatroniControl.from_stack(a.stack)
    conf = settings(control)
    old = results_file.RESULTS / f"{NAME}.json"
    runs: list[dict[str, Any]] = []
    previous: list[dict[str, Any]] = []
    if old.exists():
        prev = json.loads(old.read_text())
        previous = prev.get("previous_series", [])
        if prev.get("settings") == conf and not a.fresh:
            runs = prev.get("runs", [])
        elif prev.get("scenarios"):  # other settings or another definition: keep its summary beside the new series
            previous = [{k: prev.get(k) for k in ("when", "what", "settings", "scenarios")}, *previous][:3]
    chosen = [name for name in a.scenarios.split(",") if name]
    for _ in range(a.rounds):
        for name in chosen:
            [r] = runner.run_all(control, scenarios.resolve(name), runner.DrillOptions(writers=a.writers, hold=runner.MIN_HOLD),
                                 log=lambda m: print(m, flush=True))
            runs.append({"scenario": r.scenario, "ok": r.ok, "failures": r.failures(), "rto_s": r.rto_s,
                         "rto_all_writers_s": r.rto_all_writers_s, "client_gaps_s": r.client_gaps_s,
                         "writers_down": r.writers_down, "hold_s": r.hold_s,
                         "new_leader_s": r.time_to_new_leader_s, "routed_s": r.time_to_routing_s, "rejoin_s": r.rejoin_s,
                         "acknowledged": r.acknowledged, "lost": len(r.lost), "split_brain": len(r.split_brain),
                         "old_leader": r.old_leader, "new_leader": r.new_leader})
            print(f"{r.scenario}: rto {r.rto_s}s ok={r.ok} {r.failures()}", flush=True)

    per: dict[str, Any] = {}
    for name in scenarios.SCENARIOS:
        rs = [r for r in runs if r["scenario"] == name]
        if not rs:
            continue
        good = [r for r in rs if r["ok"]]
        per[name] = {
            "runs": len(rs), "passed": len(good),
            "lost_writes": sum(r["lost"] for r in rs), "split_brain": sum(r["split_brain"] for r in rs),
            "rto_s": summary([r["rto_s"] for r in good if r["rto_s"] is not None]),
            "rto_all_writers_s": summary([r["rto_all_writers_s"] for r in good if r.get("rto_all_writers_s") is not None]),
            "new_leader_s": summary([r["new_leader_s"] for r in good if r["new_leader_s"] is not None]),
            "routed_s": summary([r["routed_s"] for r in good if r["routed_s"] is not None]),
        }
    results_file.write(NAME, {
        "benchmark": "pgfleet drill: write outage (RTO) and lost acknowledged writes per failure",
        "stack": a.stack,
        "what": (f"{a.writers} writers, autocommit inserts with the DSN exactly as 'pgfleet dsn' prints it (HAProxy 5000 "
                 "-> PgBouncer -> primary, verify-full, dead-peer keywords, load_balance_hosts=random); each fault held "
                 f"{runner.MIN_HOLD:.0f} s; RTO = the longest time any one client could not commit (a client that never "
                 "commits again is down until the end); rto_all_writers_s = the older figure, the longest time no client "
                 "committed at all"),
        "cpu": cpu_model(),
        "settings": conf,
        "goals_s": {"node-loss p95": 22, "primary-partition p95": 22, "postgres-crash": 5, "switchover": 1.5,
                    "replica-partition, entry-loss, entry-partition (any one client)": 6},
        "scenarios": per,
        "runs": runs,
        "previous_series": previous,
    })


if __name__ == "__main__":
    main()
