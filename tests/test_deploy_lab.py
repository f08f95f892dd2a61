"""End-to-end: deploy the HA cluster into the lab and use it as a client would.

One deploy per session (``deployed``); every test then goes through what a
user gets: ``pgfleet dsn lab`` (HAProxy → PgBouncer, TLS verify-full),
``pgfleet status lab``, and the refusals the cluster promises.
"""

from __future__ import annotations

import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import psycopg
import pytest

from pgfleet import cluster as cluster_mod
from pgfleet import deployment
from pgfleet import lab as lab_mod
from pgfleet.lab.layout import bridge_name

pytestmark = pytest.mark.lab
PGFLEET = [str(Path(sys.executable).with_name("pgfleet"))]
#: In the lab network but outside the stack's client/admin CIDR (198.18.0.0/28).
OUTSIDE = "198.18.0.200"


def pgfleet(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PGFLEET, *args], capture_output=True, text=True, check=check, timeout=900)


def dsn(*args: str) -> str:
    return pgfleet("dsn", "lab", *args).stdout.strip()


def test_topology_one_leader_two_streaming_replicas_one_synchronous(deployed, lab, lab_spec, lab_secrets):  # type: ignore[no-untyped-def]
    members = cluster_mod.wait_healthy(lab, lab_spec.cluster("main"), lab_secrets)
    roles = sorted(m.role for m in members)
    assert roles == ["leader", "replica", "sync_standby"], members
    assert all(m.state == "streaming" for m in members if m.role != "leader"), members
    out = pgfleet("status", "lab").stdout
    assert "leader" in out and "sync_standby" in out


def test_vectors_through_the_pooled_endpoint_with_hnsw(deployed):  # type: ignore[no-untyped-def]
    rw = dsn()
    assert "sslmode=verify-full" in rw and "port=5000" in rw
    with psycopg.connect(rw, autocommit=True) as conn:
        assert conn.info.port == 5000
        conn.execute("DROP TABLE IF EXISTS e2e_items")
        conn.execute("CREATE TABLE e2e_items (id bigserial PRIMARY KEY, embedding vector(384) NOT NULL)")
        conn.execute("""INSERT INTO e2e_items (embedding)
                        SELECT (SELECT array_agg(random() + x * 0 + g * 0) FROM generate_series(1, 384) AS x)::vector(384)
                          FROM generate_series(1, 2000) AS g""")
        conn.execute("CREATE INDEX e2e_items_hnsw ON e2e_items USING hnsw (embedding vector_cosine_ops)")
        probe = "[" + ",".join("0.5" for _ in range(384)) + "]"
        with conn.transaction():
            conn.execute("SET LOCAL enable_seqscan = off")
            plan = "\n".join(r[0] for r in conn.execute(
                "EXPLAIN SELECT id FROM e2e_items ORDER BY embedding <=> %s::vector LIMIT 5", (probe,)))
        assert "e2e_items_hnsw" in plan, plan
        rows = conn.execute("SELECT id FROM e2e_items ORDER BY embedding <=> %s::vector LIMIT 5", (probe,)).fetchall()
        assert len(rows) == 5
        assert conn.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone() is not None


def test_rows_visible_read_only_and_writes_refused(deployed):  # type: ignore[no-untyped-def]
    with psycopg.connect(dsn(), autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS e2e_seen (id int PRIMARY KEY)")
        conn.execute("INSERT INTO e2e_seen SELECT g FROM generate_series(1, 100) g ON CONFLICT DO NOTHING")
    ro = dsn("--ro")
    assert "port=5001" in ro
    deadline = time.monotonic() + 30
    seen_on: set[bool] = set()
    while time.monotonic() < deadline:
        with psycopg.connect(ro, autocommit=True) as conn:
            count, recovery = conn.execute("SELECT count(*), pg_is_in_recovery() FROM e2e_seen").fetchone()
        seen_on.add(recovery)
        if count == 100 and recovery:
            break
        time.sleep(0.5)
    assert count == 100 and recovery, "the read-only endpoint should reach a replica that has the rows"
    with psycopg.connect(ro, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("INSERT INTO e2e_seen VALUES (1000)")


def test_plaintext_connection_refused(deployed):  # type: ignore[no-untyped-def]
    for port in ("5000", "5002"):
        plain = dsn().replace("sslmode=verify-full", "sslmode=disable").replace("port=5000", f"port={port}")
        with pytest.raises(psycopg.OperationalError) as e:
            psycopg.connect(plain).close()
        assert "SSL" in str(e.value) or "no encryption" in str(e.value) or "pg_hba" in str(e.value), str(e.value)


def test_wrong_password_refused(deployed):  # type: ignore[no-untyped-def]
    base = " ".join(p for p in dsn().split() if not p.startswith("passfile="))
    for port in ("5000", "5002"):
        with pytest.raises(psycopg.OperationalError) as e:
            psycopg.connect(base.replace("port=5000", f"port={port}") + " password=not-the-password").close()
        # PgBouncer says "SASL authentication failed", PostgreSQL "password authentication failed"
        assert "authentication failed" in str(e.value), str(e.value)


def test_address_outside_allowed_cidrs_refused(deployed, lab, lab_spec):  # type: ignore[no-untyped-def]
    bridge = bridge_name("lab")
    node = lab.by_role("postgres")[0].private_ip
    subprocess.run(["ip", "addr", "add", f"{OUTSIDE}/24", "dev", bridge], check=True)
    try:
        time.sleep(1)  # DAD-free on IPv4, but let the neighbour tables settle
        for port in (5000, 5001, 5002, 5003, 6432, 5432, 22):
            with pytest.raises(OSError):  # dropped: the SYN goes unanswered
                socket.create_connection((node, port), timeout=3, source_address=(OUTSIDE, 0)).close()
        # the same port from an allowed address answers
        socket.create_connection((node, 5000), timeout=3).close()
    finally:
        subprocess.run(["ip", "addr", "del", f"{OUTSIDE}/24", "dev", bridge], check=True)


def test_etcd_refuses_a_client_without_certificate(deployed, lab, lab_spec):  # type: ignore[no-untyped-def]
    host = lab.by_role("etcd")[0].name
    ca = "/etc/pgfleet/tls/ca.crt"
    bare = lab_mod.run(lab_spec, host, f"curl -sS --max-time 5 --cacert {ca} https://127.0.0.1:2379/version", check=False)
    assert bare.returncode != 0, bare.stdout
    with_cert = lab_mod.run(lab_spec, host, f"curl -sS --max-time 5 --cacert {ca} --cert /etc/pgfleet/tls/host.crt "
                                            f"--key /etc/pgfleet/tls/host.key https://127.0.0.1:2379/version")
    assert "etcdserver" in with_cert.stdout
    # and with a certificate but no credentials, auth is on: reading Patroni's keys is refused
    denied = lab_mod.run(lab_spec, host, "ETCDCTL_API=3 etcdctl --endpoints=https://127.0.0.1:2379 --cacert " + ca
                         + " --cert /etc/pgfleet/tls/host.crt --key /etc/pgfleet/tls/host.key get --prefix /service/", check=False)
    assert denied.returncode != 0 and ("user name is empty" in denied.stderr or "permission denied" in denied.stderr), denied.stderr


ETCDCTL = ("ETCDCTL_API=3 etcdctl --cacert /etc/pgfleet/tls/ca.crt --cert /etc/pgfleet/tls/host.crt "
           "--key /etc/pgfleet/tls/host.key --endpoints={endpoints}")


def etcd_status(lab_spec, host: str, ip: str) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    """(this member's id, the leader's id), hex, as etcdctl shows them."""
    out = lab_mod.run(lab_spec, host, ETCDCTL.format(endpoints=f"https://{ip}:2379") + " endpoint status -w json").stdout
    import json

    st = json.loads(out)[0]["Status"]
    return f"{st['header']['member_id']:x}", f"{st['leader']:x}"


def test_etcd_leadership_is_handed_off_the_primarys_node(deployed, lab, lab_spec, lab_secrets):  # type: ignore[no-untyped-def]
    ms = cluster_mod.wait_healthy(lab, lab_spec.cluster("main"), lab_secrets, timeout=120)
    primary = cluster_mod.leader(ms)
    me, _ = etcd_status(lab_spec, primary.name, primary.host)
    # put etcd's leadership on the primary's node by hand (an admin call: root) ...
    # move-leader must reach the current etcd leader: every etcd member, whatever Patroni reports
    every = ",".join(f"https://{h.private_ip}:2379" for h in lab.by_role("etcd"))
    moved = lab_mod.run(lab_spec, primary.name, ETCDCTL.format(endpoints=every)
                        + f" --user root:{lab_secrets.password('etcd_root')} move-leader {me}", check=False)
    assert moved.returncode == 0 or "is already leader" in moved.stderr, moved.stderr
    # ... and pgfleet-etcd-leader-away hands it to another member within a few of its checks
    deadline = time.monotonic() + 30
    while etcd_status(lab_spec, primary.name, primary.host)[1] == me:
        assert time.monotonic() < deadline, "etcd's leader stayed on the primary's node"
        time.sleep(1)
    log = lab_mod.run(lab_spec, primary.name, "journalctl -u pgfleet-etcd-leader-away --no-pager -o cat -n 20").stdout
    assert "leadership moved to member" in log, log
    # nothing else changed: the same primary, every member healthy
    after = cluster_mod.wait_healthy(lab, lab_spec.cluster("main"), lab_secrets, timeout=60)
    assert cluster_mod.leader(after).name == primary.name


def test_haproxy_health_checks_leave_patronis_log_clean(deployed, lab, lab_spec):  # type: ignore[no-untyped-def]
    # 6 backends' checks reach every member's Patroni every 2 s; none may end in a logged traceback
    time.sleep(6)
    for h in lab.by_role("postgres"):
        log = lab_mod.run(lab_spec, h.name, "journalctl -u patroni --no-pager -o cat --since -5s").stdout
        assert "Traceback" not in log and "ConnectionResetError" not in log, log[-2000:]


def test_patroni_rest_refuses_state_changes_without_credentials(deployed, lab, lab_secrets):  # type: ignore[no-untyped-def]
    ctx = ssl.create_default_context(cadata=lab_secrets.ca_cert_pem)
    node = lab.by_role("postgres")[0].private_ip
    for method, path in (("POST", "/restart"), ("POST", "/switchover"), ("PATCH", "/config"), ("POST", "/reinitialize")):
        req = urllib.request.Request(f"https://{node}:8008{path}", data=b"{}", method=method)
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req, context=ctx, timeout=5)
        assert e.value.code == 401, (method, path, e.value.code)
    # read-only health endpoints stay open for HAProxy and monitoring
    with urllib.request.urlopen(f"https://{node}:8008/health", context=ctx, timeout=5) as r:
        assert r.status == 200


def free_port(spec, host: str, avoid: int = 0) -> int:  # type: ignore[no-untyped-def]
    """A loopback port nothing listens on inside ``host`` (the validator insists its listen ports are free)."""
    used = lab_mod.run(spec, host, "ss -Htln | awk '{print $4}'").stdout
    return next(p for p in range(20000 + avoid * 100, 30000) if f":{p}\n" not in used + "\n")


def test_real_tools_accept_the_deployed_configs(deployed, lab, lab_spec):  # type: ignore[no-untyped-def]
    for h in lab.by_role("postgres"):
        lab_mod.run(lab_spec, h.name, "haproxy -c -q -f /etc/haproxy/haproxy.cfg")
        # the validator insists the listen ports are free: check a copy that listens elsewhere
        pg_port, rest_port = free_port(lab_spec, h.name), free_port(lab_spec, h.name, avoid=1)
        lab_mod.run(lab_spec, h.name, f"sed -e 's/0.0.0.0:5432/127.0.0.1:{pg_port}/' -e 's/0.0.0.0:8008/127.0.0.1:{rest_port}/' "
                                      "/etc/patroni/patroni.yml > /run/patroni-check.yml && chown postgres /run/patroni-check.yml && "
                                      "runuser -u postgres -- patroni --validate-config /run/patroni-check.yml; rc=$?; "
                                      "rm -f /run/patroni-check.yml; exit $rc")
        active = lab_mod.run(lab_spec, h.name, "systemctl is-active pgbouncer@1 pgbouncer@2 haproxy patroni etcd nftables").stdout.split()
        assert active == ["active"] * 6, (h.name, active)


def test_pgbouncer_serves_tls_and_its_stats_console(deployed, lab, lab_spec, lab_secrets):  # type: ignore[no-untyped-def]
    node = lab.by_role("postgres")[0].private_ip
    ca = cluster_mod.ca_file("lab", lab_secrets)
    with psycopg.connect(host=node, port=6432, dbname="pgbouncer", user="monitor", password=lab_secrets.password("monitor"),
                         sslmode="verify-full", sslrootcert=str(ca), autocommit=True, prepare_threshold=None) as conn:
        pools = conn.execute("SHOW POOLS").fetchall()
        assert any(p[0] == "app" for p in pools) or pools is not None
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(host=node, port=6432, dbname="app", user="postgres", password=lab_secrets.password("superuser"),
                        sslmode="verify-full", sslrootcert=str(ca)).close()


def test_second_deploy_changes_nothing(deployed, lab_spec):  # type: ignore[no-untyped-def]
    again = deployment.run("lab", lab_spec, echo=False)
    assert again.changes == 0, deployment.summary(again)
    out = pgfleet("deploy", "lab").stdout
    assert "no changes" in out, out


def test_changed_parameter_applied_through_patroni_with_restart(deployed, lab, lab_spec, lab_secrets, tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    """A spec change that needs a restart: applied via Patroni, members restarted in order, named in the output."""
    import yaml

    from pgfleet import spec as spec_mod

    doc = yaml.safe_load(open(spec_mod.stack_path("lab")))
    doc["config"]["pgfleet:clusters"][0].setdefault("parameters", {})["max_locks_per_transaction"] = 128
    stacks = tmp_path / "stacks"
    stacks.mkdir()
    (stacks / "Pulumi.lab.yaml").write_text(yaml.safe_dump(doc))
    monkeypatch.setenv("PGFLEET_STACKS_DIR", str(stacks))
    try:
        cp = pgfleet("deploy", "lab")
        out = cp.stdout + cp.stderr
        assert "max_locks_per_transaction" in out and "restarted" in out, out
        with psycopg.connect(dsn(), autocommit=True) as conn:
            assert conn.execute("SHOW max_locks_per_transaction").fetchone()[0] == "128"
    finally:
        monkeypatch.delenv("PGFLEET_STACKS_DIR")
        back = pgfleet("deploy", "lab")
        assert "restarted" in back.stdout + back.stderr
    members = cluster_mod.wait_healthy(lab, lab_spec.cluster("main"), lab_secrets)
    assert sorted(m.role for m in members) == ["leader", "replica", "sync_standby"], members


def test_per_database_vector_settings_reach_pooled_sessions_that_were_already_open(deployed, tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    """``databases[].vector`` plus ``pgfleet deploy``: new direct sessions get it (ALTER DATABASE), and a pooled
    client connected before the deploy sees it in its next transaction (PgBouncer retires server connections whose
    definition, the connect_query, changed). Back to pgvector's default when removed from the spec."""
    import yaml

    from pgfleet import spec as spec_mod

    def ef_search(conn: psycopg.Connection) -> str:
        with conn.transaction():
            conn.execute("SELECT '[1]'::vector")  # pgvector's settings exist once it is loaded
            return str(conn.execute("SHOW hnsw.ef_search").fetchone()[0])  # type: ignore[index]

    doc = yaml.safe_load(open(spec_mod.stack_path("lab")))
    doc["config"]["pgfleet:clusters"][0]["databases"][0]["vector"] = {"ef_search": 123, "iterative_scan": "relaxed_order"}
    stacks = tmp_path / "stacks"
    stacks.mkdir()
    (stacks / "Pulumi.lab.yaml").write_text(yaml.safe_dump(doc))
    with psycopg.connect(dsn(), autocommit=True) as pooled:
        assert ef_search(pooled) == "40"
        monkeypatch.setenv("PGFLEET_STACKS_DIR", str(stacks))
        try:
            cp = pgfleet("deploy", "lab")
            assert cp.returncode == 0, cp.stdout[-3000:] + cp.stderr[-3000:]
            assert all(ef_search(pooled) == "123" for _ in range(10)), "a pooled transaction ran on a server connection with the old setting"
            with psycopg.connect(dsn("--direct"), autocommit=True) as direct:
                assert ef_search(direct) == "123"
                assert direct.execute("SHOW hnsw.iterative_scan").fetchone() == ("relaxed_order",)
        finally:
            monkeypatch.delenv("PGFLEET_STACKS_DIR")
            back = pgfleet("deploy", "lab")
            assert back.returncode == 0, back.stdout[-3000:] + back.stderr[-3000:]
        assert all(ef_search(pooled) == "40" for _ in range(10))
