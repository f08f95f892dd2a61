"""Several PgBouncer processes per node on one port, on the shared lab: connections spread over them, every
process's stats console answers and Prometheus scrapes each one, and a client's cancel stops its query even when
it lands on another process (PgBouncer's peering).

Clients use the DSN ``pgfleet dsn lab`` prints (HAProxy 5000 → PgBouncer on the primary), as a user does; each
process's own console is read on the node over its socket (``/run/pgbouncer/N``), as runbooks/connect.md shows.
"""

from __future__ import annotations

import asyncio
import shlex
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import psycopg
import pytest

from pgfleet import cluster as cluster_mod
from pgfleet import contract, sizing
from pgfleet import lab as lab_mod
from pgfleet.monitoring.client import Prometheus

pytestmark = pytest.mark.lab
PGFLEET = str(Path(sys.executable).with_name("pgfleet"))


def pooled_dsn() -> str:
    r = subprocess.run([PGFLEET, "dsn", "lab"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def primary(lab, lab_spec, lab_secrets) -> str:  # type: ignore[no-untyped-def]
    ms = cluster_mod.wait_healthy(lab, lab_spec.cluster("main"), lab_secrets, timeout=120)
    return cluster_mod.leader(ms).name


def console(lab_spec, lab_secrets, node: str, process: int, command: str) -> list[list[str]]:  # type: ignore[no-untyped-def]
    """``command`` on one process's own stats console (its Unix socket), as the monitoring user; rows of columns."""
    conninfo = f"host={contract.pgbouncer_socket_dir(process)} port={contract.PGBOUNCER_PORT} dbname=pgbouncer user={contract.PG_MONITOR}"
    cmd = (f"PGPASSWORD={shlex.quote(lab_secrets.password(contract.PG_MONITOR))} "
           f"psql -X -A -F '|' -t {shlex.quote(conninfo)} -c {shlex.quote(command)}")
    out = lab_mod.run(lab_spec, node, cmd, timeout=30).stdout
    return [line.split("|") for line in out.splitlines() if line.strip()]


def clients_named(lab_spec, lab_secrets, node: str, processes: list[int], prefix: str) -> dict[int, int]:  # type: ignore[no-untyped-def]
    """How many clients whose application_name starts with ``prefix`` each process holds (SHOW CLIENTS)."""
    out = {}
    for p in processes:
        rows = console(lab_spec, lab_secrets, node, p, "SHOW CLIENTS")
        out[p] = sum(1 for r in rows if any(col.startswith(prefix) for col in r))
    return out


@pytest.fixture(scope="module")
def processes(lab_spec) -> list[int]:  # type: ignore[no-untyped-def]
    n = sizing.pgbouncer_processes(lab_spec.cluster("main"))
    assert n >= 2, "the lab's cx23 nodes run two PgBouncer processes"
    return list(range(1, n + 1))


@pytest.fixture
def held(deployed) -> Iterator[list[psycopg.Connection]]:  # type: ignore[no-untyped-def]
    conns: list[psycopg.Connection] = []
    try:
        yield conns
    finally:
        for c in conns:
            c.close()


def test_connections_spread_over_every_process_and_each_console_answers(deployed, lab, lab_spec, lab_secrets, processes, held):  # type: ignore[no-untyped-def]
    node = primary(lab, lab_spec, lab_secrets)
    dsn = pooled_dsn()
    for i in range(24):
        c = psycopg.connect(dsn, autocommit=True, application_name=f"spread-{i}")
        assert c.execute("SELECT 1").fetchone() == (1,)
        held.append(c)
    per_process = clients_named(lab_spec, lab_secrets, node, processes, "spread-")
    # the kernel hashes each new connection to one listener: 24 all on one of two processes would be 1 in 2^23
    assert sum(per_process.values()) == 24 and all(n > 0 for n in per_process.values()), per_process
    for p in processes:
        stats = console(lab_spec, lab_secrets, node, p, "SHOW STATS")
        assert any(r[0] == "app" and int(r[1]) > 0 for r in stats), (p, stats)  # total_xact_count of db app


def test_a_cancel_sent_to_another_process_stops_the_query(deployed, lab, lab_spec, lab_secrets, processes):  # type: ignore[no-untyped-def]
    """Deterministic: a client of the pooled endpoint (asyncpg, which exposes the cancel key PgBouncer handed it)
    sleeps in a query; its CancelRequest goes, on the node, to the socket of a process that does NOT hold the
    client. Peering forwards it to the owner and the query stops; a wrong key stops nothing."""
    node = primary(lab, lab_spec, lab_secrets)
    entry = lab.host(node).public_ip
    tls = ssl.create_default_context(cafile=str(cluster_mod.ca_file("lab", lab_secrets)))

    def cancel_via(process: int, pid: int, key: int) -> None:
        sock = f"{contract.pgbouncer_socket_dir(process)}/.s.PGSQL.{contract.PGBOUNCER_PORT}"
        code = ("import socket, struct; s = socket.socket(socket.AF_UNIX); s.connect(%r); "
                "s.sendall(struct.pack('!iiii', 16, 80877102, %d, %d)); s.recv(1)") % (sock, pid, key)
        lab_mod.run(lab_spec, node, f"python3 -c {shlex.quote(code)}", timeout=30)

    async def scenario() -> tuple[int, float]:
        conn = await asyncpg.connect(host=entry, port=contract.HAPROXY_POOLED_RW, user="app", database="app",
                                     password=lab_secrets.password("owner_app"), ssl=tls, statement_cache_size=0,
                                     server_settings={"application_name": "cancel-me"})
        try:
            pid, key = conn._protocol.backend_pid, conn._protocol.backend_secret  # noqa: SLF001 - what a client's cancel carries
            (owner,) = [p for p, n in clients_named(lab_spec, lab_secrets, node, processes, "cancel-me").items() if n]
            other = next(p for p in processes if p != owner)
            query = asyncio.ensure_future(conn.execute("SELECT pg_sleep(60)"))
            await asyncio.sleep(1)
            await asyncio.to_thread(cancel_via, other, pid, key ^ 0x5A5A)  # a wrong key: nothing happens
            await asyncio.sleep(2)
            assert not query.done(), "a cancel with a wrong key stopped the query"
            started = time.monotonic()
            await asyncio.to_thread(cancel_via, other, pid, key)
            with pytest.raises(asyncpg.exceptions.QueryCanceledError):
                await asyncio.wait_for(query, 15)
            return other, time.monotonic() - started
        finally:
            await conn.close()

    other, seconds = asyncio.run(scenario())
    assert seconds < 10, f"the cancel forwarded from process {other} took {seconds:.1f} s"


def test_client_side_cancels_through_the_pooled_endpoint_all_stop_their_query(deployed, processes):  # type: ignore[no-untyped-def]
    """Twelve cancels as a client sends them: each lands on whichever process the kernel picks."""
    dsn = pooled_dsn()
    for i in range(12):
        with psycopg.connect(dsn, autocommit=True) as conn:
            errors: list[BaseException] = []
            worker = threading.Thread(target=lambda: _run(conn, errors), daemon=True)
            worker.start()
            time.sleep(0.5)
            started = time.monotonic()
            conn.cancel_safe(timeout=10)
            worker.join(10)
            assert not worker.is_alive() and errors and isinstance(errors[0], psycopg.errors.QueryCanceled), (i, errors)
            assert time.monotonic() - started < 10


def _run(conn: psycopg.Connection, errors: list[BaseException]) -> None:
    try:
        conn.execute("SELECT pg_sleep(60)")
    except BaseException as e:  # noqa: BLE001
        errors.append(e)


def test_prometheus_scrapes_every_pgbouncer_process_of_every_node(deployed, lab, lab_spec, lab_secrets, processes):  # type: ignore[no-untyped-def]
    (mon,) = lab.by_role("monitor")
    prom = Prometheus(f"https://{mon.public_ip}:{contract.PROMETHEUS_PORT}", lab_secrets.ca_cert_pem)
    nodes = {h.name for h in lab.by_role("postgres")}
    expected = {(n, str(p)) for n in nodes for p in processes}
    deadline = time.monotonic() + 90
    while True:
        up = {(s.labels["node"], s.labels["process"]) for s in prom.query('pgbouncer_up == 1')}
        cpu = {(s.labels["node"], s.labels["process"]) for s in prom.query("pgbouncer_process_cpu_seconds_total")}
        if up >= expected and cpu >= expected:
            break
        assert time.monotonic() < deadline, f"pgbouncer_up / process CPU not seen for every process: up {sorted(up)}, cpu {sorted(cpu)}"
        time.sleep(5)
