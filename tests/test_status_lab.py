"""`pgfleet up` ends with a DSN that works; `pgfleet status` fails when a cluster has no leader."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from pgfleet import cluster as cluster_mod
from pgfleet import lab as lab_mod

pytestmark = pytest.mark.lab
PGFLEET = [str(Path(sys.executable).with_name("pgfleet"))]


def pgfleet(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PGFLEET, *args], capture_output=True, text=True, timeout=900)


def test_up_prints_a_dsn_that_accepts_writes(deployed):  # type: ignore[no-untyped-def]
    r = pgfleet("up")  # the default stack is the lab; it is up and deployed, so this converges to no change
    assert r.returncode == 0, r.stderr[-3000:]
    assert "lab: no changes" in r.stdout
    line = next(ln for ln in r.stdout.splitlines() if ln.startswith("cluster main: psql "))
    dsn = line.split('psql "', 1)[1].rstrip('"')
    assert "sslmode=verify-full" in dsn and "port=5000" in dsn
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert conn.execute("SELECT NOT pg_is_in_recovery()").fetchone() == (True,)


def test_status_exits_non_zero_without_a_leader(deployed, lab, lab_spec, lab_secrets):  # type: ignore[no-untyped-def]
    ok = pgfleet("status", "lab")
    assert ok.returncode == 0 and "leader" in ok.stdout, ok.stdout + ok.stderr
    nodes = [h.name for h in lab.by_role("postgres")]
    for n in nodes:
        lab_mod.run(lab_spec, n, "systemctl stop patroni")
    try:
        r = pgfleet("status", "lab")
        assert r.returncode == 1
        # every Patroni is down: no member can even say who leads, and status says so
        out = r.stdout + r.stderr
        assert "has no leader" in out or "answers on its Patroni REST API" in out, out
    finally:
        for n in nodes:
            # In nspawn on cgroup v1 a start right after a stop can fail once to spawn
            # ("Failed to spawn executor"); the unit's Restart=on-failure retries it.
            # Health below is the real check: it fails the test if Patroni stays down.
            lab_mod.run(lab_spec, n, "systemctl start patroni", check=False)
        cluster_mod.wait_healthy(lab, lab_spec.clusters[0], lab_secrets, timeout=180)
    assert pgfleet("status", "lab").returncode == 0
