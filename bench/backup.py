#!/usr/bin/env python3
"""Backup and restore times and sizes for a fixed data set with an HNSW index.

On the running lab cluster (`pgfleet up lab` first; wrap in the shared lab
lock): creates ``bench_vectors`` (ROWS vectors of DIM floats from a fixed
seed, plus an HNSW index), then times `pgfleet backup lab --type full`, a
`--type diff` after 1 % of the rows change, and `pgfleet restore lab --to
latest --yes` (the whole cluster rebuilt from the repository). Sizes come
from `pgbackrest info`. Writes bench/results/backup.json. Figures only.

    .venv/bin/python bench/backup.py [--rows 200000] [--dim 384]

200 000 rows of 384 floats plus their HNSW index make a database of about
0.7 GB: the issue's "e.g. 1 GB" scaled to what builds in minutes on the
lab's 2 shared cores (HNSW builds, then replays on two replicas).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import psycopg

import results_file  # bench/results_file.py

ROOT = Path(__file__).resolve().parent.parent


pgfleet = results_file.timed_cli


def newest(kind: str) -> dict:
    from pgfleet.backup import commands as bcli

    ctx = bcli.context("lab", None)
    cat = bcli.info(ctx, bcli.leader(ctx))
    b = max((b for b in cat.backups if b.type == kind), key=lambda b: b.stop)
    return {"label": b.label, "database_bytes": b.size, "repository_bytes": b.repo_size,
            "seconds_by_pgbackrest": (b.stop - b.start).total_seconds()}


def rebuild_replica() -> dict:
    """Wipe one replica's data directory; time until Patroni has it streaming again (pgBackRest restores it)."""
    from pgfleet import cluster as cluster_mod
    from pgfleet import lab
    from pgfleet.backup import commands as bcli

    ctx = bcli.context("lab", None)
    ms = cluster_mod.members(ctx.inv, ctx.cluster.name, ctx.secrets)
    victim = next(m.name for m in ms if m.role == "replica")
    t = time.monotonic()
    lab.run(ctx.spec, victim, f"systemctl stop patroni && find {ctx.data_dir} -mindepth 1 -delete && {bcli.START_PATRONI}")
    cluster_mod.wait_healthy(ctx.inv, ctx.cluster, ctx.secrets, timeout=1800)
    return {"member": victim, "seconds": round(time.monotonic() - t, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--dim", type=int, default=384)
    a = ap.parse_args()
    dsn = pgfleet("dsn", "lab", "--direct")[1].strip()
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("DROP TABLE IF EXISTS bench_vectors")
        c.execute(f"CREATE TABLE bench_vectors (id int PRIMARY KEY, embedding vector({a.dim}))")
        t = time.monotonic()
        c.execute("SELECT setseed(0.42)")
        c.execute(f"INSERT INTO bench_vectors SELECT g, (SELECT array_agg(random())::vector({a.dim}) "
                  f"FROM generate_series(1, {a.dim}) WHERE g > 0) FROM generate_series(1, %s) g", (a.rows,))
        load = round(time.monotonic() - t, 2)
        t = time.monotonic()
        c.execute("SET maintenance_work_mem = '1GB'")  # the graph fits: a build that spills is many times slower
        c.execute("CREATE INDEX bench_vectors_hnsw ON bench_vectors USING hnsw (embedding vector_l2_ops)")
        index = round(time.monotonic() - t, 2)
        size = c.execute("SELECT pg_database_size(current_database())").fetchone()[0]
    full_s, full_out = pgfleet("backup", "lab", "--type", "full")
    full = newest("full")
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("UPDATE bench_vectors SET embedding = embedding WHERE id % 100 = 0")
    diff_s, _ = pgfleet("backup", "lab", "--type", "diff")
    diff = newest("diff")
    restore_s, out = pgfleet("restore", "lab", "--to", "latest", "--yes")
    with psycopg.connect(dsn) as c:
        rows = c.execute("SELECT count(*) FROM bench_vectors").fetchone()[0]
    rebuild = rebuild_replica()
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("DROP TABLE bench_vectors")
    result = {
        "data_set": {"rows": a.rows, "dim": a.dim, "index": "hnsw vector_l2_ops", "database_bytes": size,
                     "load_seconds": load, "index_seconds": index},
        "full_backup": {"seconds": full_s, **full, "taken_on": full_out.splitlines()[0] if full_out else ""},
        "diff_backup_after_1pct_update": {"seconds": diff_s, **diff},
        # in place: pgBackRest --delta keeps the leader's files that already match, so this is not a cold restore
        "restore_latest_whole_cluster": {"seconds": restore_s, "rows_after": rows, "log": out.splitlines()},
        # cold: an empty data directory filled from the repository, then streaming
        "replica_rebuilt_from_empty": rebuild,
    }
    print(json.dumps(result, indent=1))
    results_file.write("backup", result)


if __name__ == "__main__":
    main()
