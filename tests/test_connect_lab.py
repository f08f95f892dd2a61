"""Connecting as runbooks/connect.md says, on the lab cluster: what every printed DSN gives a client.

The DSN spreads clients over the nodes, the libpq 15 form works with this
machine's psql, the URI and environment forms reach the same endpoint, and a
driver without libpq (asyncpg) set up as the runbook says gives up on a
vanished entry node within its timeout instead of hanging.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import ssl
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from pgfleet import cluster as cluster_mod
from pgfleet import lab as lab_mod
from pgfleet.cli.cluster import local_psql_major

pytestmark = pytest.mark.lab
PGFLEET = str(Path(sys.executable).with_name("pgfleet"))


def pgfleet(*args: str) -> str:
    return subprocess.run([PGFLEET, *args], capture_output=True, text=True, check=True, timeout=120).stdout.strip()


def psql_major() -> int:
    """This machine's psql major, as ``pgfleet up`` reads it (it prints a libpq-15 line for an older one)."""
    major = local_psql_major()
    assert major is not None, "psql is missing: ./bootstrap installs postgresql-client"
    return major


def test_printed_dsn_spreads_clients_over_the_nodes(deployed, lab) -> None:  # type: ignore[no-untyped-def]
    dsn = pgfleet("dsn", "lab")
    for keyword in ("load_balance_hosts=random", "tcp_user_timeout=", "keepalives=1", "connect_timeout="):
        assert keyword in dsn, dsn
    entered: list[str] = []
    for _ in range(24):
        with psycopg.connect(dsn, autocommit=True) as conn:
            entered.append(conn.info.hostaddr)
            assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (False,)  # every entry reaches the primary
    nodes = {h.public_ip for h in lab.by_role("postgres")}
    assert set(entered) <= nodes
    assert len(set(entered)) >= 2, f"24 connections all entered through {set(entered)}"


def test_this_machines_psql_takes_the_dsn_for_its_libpq(deployed) -> None:  # type: ignore[no-untyped-def]
    major = psql_major()
    for libpq in (15, 16):
        dsn = pgfleet("dsn", "lab", "--libpq", str(libpq))
        assert ("load_balance_hosts" in dsn) == (libpq == 16)
        p = subprocess.run(["psql", dsn, "-Atc", "SELECT 'connected'"], capture_output=True, text=True, timeout=60)
        if libpq <= major:
            assert p.returncode == 0 and p.stdout.strip() == "connected", p.stderr
        else:  # e.g. Debian 12's psql 15 and the libpq 16 form: refused, as the runbook says
            assert p.returncode != 0 and 'invalid connection option "load_balance_hosts"' in p.stderr, p.stderr


def test_uri_and_environment_forms_reach_the_same_endpoint(deployed) -> None:  # type: ignore[no-untyped-def]
    with psycopg.connect(pgfleet("dsn", "lab", "--uri"), autocommit=True) as conn:
        assert conn.info.port == 5000 and conn.execute("SELECT current_user").fetchone() == ("app",)
        params = conn.info.get_parameters()  # the URI's parameters reached libpq
        assert params.get("tcp_user_timeout") == "3000" and params.get("load_balance_hosts") == "random", params
    # --env for this machine's psql: PGSERVICEFILE/PGSERVICE carry the keywords libpq has no variables for
    lines = pgfleet("dsn", "lab", "--env", "--ro", "--libpq", str(min(psql_major(), 16)))
    env = dict(os.environ)
    for line in lines.splitlines():
        key, _, value = line.removeprefix("export ").partition("=")
        env[key] = shlex.split(value)[0]
    service = Path(env["PGSERVICEFILE"]).read_text()
    assert f"[{env['PGSERVICE']}]" in service and "tcp_user_timeout=" in service
    p = subprocess.run(["psql", "-Atc", "SELECT current_user, pg_is_in_recovery()"], env=env, capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "app|t"  # through PgBouncer on a replica: read-only


def _async_replica(lab, lab_spec, lab_secrets) -> str:  # type: ignore[no-untyped-def]
    members = cluster_mod.wait_healthy(lab, lab_spec.cluster("main"), lab_secrets, timeout=120)
    return next(m.name for m in members if m.role == "replica")


def test_asyncpg_as_the_runbook_says_gives_up_on_a_vanished_entry_node(deployed, lab, lab_spec, lab_secrets) -> None:  # type: ignore[no-untyped-def]
    """asyncpg has no libpq keywords: the runbook's recipe bounds every statement (command_timeout)
    and every connect (timeout), and shuffles the hosts. Through a partitioned node the insert
    fails after command_timeout; the next connect reaches the primary through another node."""
    import asyncpg

    entry = _async_replica(lab, lab_spec, lab_secrets)
    entry_ip = lab.host(entry).public_ip
    others = [h.public_ip for h in lab.by_role("postgres") if h.name != entry]
    tls = ssl.create_default_context(cafile=str(cluster_mod.ca_file("lab", lab_secrets)))
    password = lab_secrets.password("owner_app")
    command_timeout = 3.0

    async def connect(hosts: list[str]) -> asyncpg.Connection:
        return await asyncpg.connect(host=hosts, port=5000, user="app", database="app", password=password, ssl=tls,
                                     timeout=2, command_timeout=command_timeout, statement_cache_size=0)

    async def scenario() -> tuple[float, str]:
        conn = await connect([entry_ip])
        await conn.execute("CREATE TABLE IF NOT EXISTS connect_asyncpg (id serial PRIMARY KEY, at timestamptz DEFAULT now())")
        lab_mod.partition(lab_spec, entry)
        try:
            t0 = time.monotonic()
            with pytest.raises((asyncio.TimeoutError, OSError, asyncpg.PostgresError)):
                await conn.execute("INSERT INTO connect_asyncpg DEFAULT VALUES")
            waited = time.monotonic() - t0
            conn.terminate()
            again = await connect(others)
            try:
                await again.execute("INSERT INTO connect_asyncpg DEFAULT VALUES")
                via = str(again._addr[0])  # noqa: SLF001 - the address asyncpg connected to
            finally:
                await again.close()
            return waited, via
        finally:
            lab_mod.heal(lab_spec, entry)

    waited, via = asyncio.run(scenario())
    assert waited < command_timeout + 2, f"the insert through the cut node took {waited:.1f} s to fail"
    assert via in others
    cluster_mod.wait_healthy(lab, lab_spec.cluster("main"), lab_secrets, timeout=180)
