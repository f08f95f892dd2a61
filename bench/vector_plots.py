#!/usr/bin/env python3
"""PNG figures from the results files, for the README and for people who read curves faster than JSON.

From bench/results/vector.json (bench/vector.py): recall@10 against QPS per profile (``vector-recall-qps.png``),
tuned beside stock (``vector-tuned-stock.png``), filtered recall with and without iterative scans
(``vector-filtered.png``), p95 per window on a cold new primary (``vector-failover-cold.png``). From
bench/results/pooler.json (bench/pooler.py): pooled against direct TPS by clients (``pooler-tps.png``).
A figure whose figures are missing is skipped, so each can be drawn as soon as its phase has run.

    .venv-bench/bin/python bench/vector_plots.py [--vector bench/results/vector.json] [--pooler …] [--out bench/results]

matplotlib is in the bench extra only (./bootstrap bench): the unit suite's install does not carry it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
COLOURS = {"tuned": "tab:green", "stock": "tab:grey", "pooled": "tab:blue", "direct": "tab:orange",
           "with": "tab:green", "without": "tab:red"}


def _save(fig: Any, out: Path) -> Path:
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    print(out)
    return out


def recall_qps(doc: dict[str, Any], out: Path) -> Path | None:
    """One curve per profile: what each ef_search buys in recall and costs in throughput (one client, pooled ro)."""
    runs = {label: r["recall"]["curve"] for label, r in doc.get("runs", {}).items() if r.get("recall", {}).get("curve")}
    if not runs:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, curve in sorted(runs.items()):
        pts = [p for p in curve if p.get("recall") is not None]
        ax.plot([p["recall"] for p in pts], [p["qps"] for p in pts], "o-", label=label, color=COLOURS.get(label))
        for p in pts:
            ax.annotate(str(p["ef_search"]), (p["recall"], p["qps"]), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_xlabel("recall@10")
    ax.set_ylabel("queries per second (1 client, pooled read-only)")
    ax.set_yscale("log")
    ax.set_title(f"HNSW recall vs throughput, labels = ef_search ({doc.get('corpus', {}).get('rows', '?')} rows)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    return _save(fig, out)


def _bars(ax: Any, groups: list[str], values: dict[str, list[float | None]], ylabel: str, title: str) -> None:
    width = 0.8 / max(1, len(values))
    for j, (label, ys) in enumerate(sorted(values.items())):
        xs = [i + (j - (len(values) - 1) / 2) * width for i in range(len(groups))]
        ax.bar(xs, [y or 0 for y in ys], width, label=label, color=COLOURS.get(label))
    ax.set_xticks(range(len(groups)), groups, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)


def tuned_stock(doc: dict[str, Any], out: Path) -> Path | None:
    """Build time, QPS and p95 at the fixed ef_search per endpoint and clients, the two profiles side by side."""
    runs = doc.get("runs", {})
    labels = [x for x in ("tuned", "stock") if x in runs]
    if not labels:
        return None
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.2))
    _bars(axes[0], ["HNSW build"], {x: [runs[x].get("load", {}).get("index_build_s")] for x in labels}, "seconds",
          "index build (m=16, ef_construction=64)")
    keys = sorted({(r["endpoint"], r["clients"]) for x in labels for r in runs[x].get("clients", {}).get("runs", [])})
    by = {x: {(r["endpoint"], r["clients"]): r for r in runs[x].get("clients", {}).get("runs", [])} for x in labels}
    groups = [f"{e} x{c}" for e, c in keys]
    _bars(axes[1], groups, {x: [by[x].get(k, {}).get("qps") for k in keys] for x in labels}, "queries per second",
          "throughput at a fixed ef_search")
    _bars(axes[2], groups, {x: [by[x].get(k, {}).get("p95_ms") for k in keys] for x in labels}, "p95 ms",
          "p95 latency at a fixed ef_search")
    return _save(fig, out)


def filtered(doc: dict[str, Any], out: Path) -> Path | None:
    """Recall of WHERE category = … per category (share of the table), iterative scan off against relaxed_order."""
    rows = [(label, r) for label, run in sorted(doc.get("runs", {}).items()) for r in run.get("filtered", {}).get("runs", [])]
    if not rows:
        return None
    keys = sorted({(r["share"], r["category"], label) for label, r in rows}, reverse=True)
    groups = [f"{c} ({s:.2%})\n{label}" for s, c, label in keys]
    values = {mode: [next((r["recall"] for lb, r in rows if (r["share"], r["category"], lb) == k and r["iterative_scan"] == mode), None)
                     for k in keys] for mode in ("off", "relaxed_order")}
    fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(groups)), 4.2))
    _bars(ax, groups, values, "recall@10", "filtered queries: hnsw.iterative_scan")
    ax.set_ylim(0, 1.05)
    return _save(fig, out)


def failover_cold(doc: dict[str, Any], out: Path) -> Path | None:
    """p95 per window on the new primary after a cold switchover, with and without prewarm, per profile."""
    series = [(f"{label}, {pw} prewarm", pw, r["windows"]) for label, run in sorted(doc.get("runs", {}).items())
              for pw, r in sorted(run.get("failover-cold", {}).items()) if isinstance(r, dict) and r.get("windows")]
    if not series:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for name, pw, ws in series:
        ax.plot([w["from_s"] for w in ws], [w["p95_ms"] for w in ws], marker="o", label=name,
                color=COLOURS.get(pw), linestyle="-" if "tuned" in name else "--")
    ax.set_xlabel("seconds after the switchover (window start)")
    ax.set_ylabel("p95 ms (pooled read-write)")
    ax.set_title("a cold new primary: p95 per window")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, out)


def pooler(doc: dict[str, Any], out: Path) -> Path | None:
    """pgbench select-only TPS by clients, pooled against direct; a failed run (direct past max_connections) is 0."""
    runs = doc.get("runs", [])
    if not runs:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=False)
    for ax, each in zip(axes, (False, True)):
        for endpoint in ("pooled", "direct"):
            rs = sorted((r for r in runs if r["endpoint"] == endpoint and r["connect_per_transaction"] == each),
                        key=lambda r: r["clients"])
            ok = [r for r in rs if r["exit_code"] == 0]
            ax.plot([r["clients"] for r in rs], [r["tps"] for r in rs], "o-", label=endpoint, color=COLOURS[endpoint])
            for r in rs:
                if r not in ok:  # pgbench's exit 1: nothing ran; 2: aborted part-way
                    ax.annotate("failed" if not r["tps"] else "aborted", (r["clients"], r["tps"]), textcoords="offset points", xytext=(0, 6), fontsize=7,
                                color=COLOURS[endpoint])
        ax.set_xscale("log")
        ax.set_xlabel("clients")
        ax.set_ylabel("transactions per second")
        ax.set_title("a new connection per transaction" if each else "persistent connections", fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.suptitle(f"pgbench -S: pooled (5000) vs direct (5002), {doc.get('seconds', '?')} s a run", fontsize=11)
    return _save(fig, out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vector", type=Path, default=RESULTS / "vector.json")
    ap.add_argument("--pooler", type=Path, default=RESULTS / "pooler.json")
    ap.add_argument("--out", type=Path, default=RESULTS)
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    if a.vector.exists():
        doc = json.loads(a.vector.read_text())
        recall_qps(doc, a.out / "vector-recall-qps.png")
        tuned_stock(doc, a.out / "vector-tuned-stock.png")
        filtered(doc, a.out / "vector-filtered.png")
        failover_cold(doc, a.out / "vector-failover-cold.png")
    if a.pooler.exists():
        pooler(json.loads(a.pooler.read_text()), a.out / "pooler-tps.png")


if __name__ == "__main__":
    main()
