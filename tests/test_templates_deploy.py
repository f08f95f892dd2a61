"""Every deploy template rendered for every stack, and checked by the real tools where this machine has them.

haproxy -c, nft -c, a PgBouncer started in the foreground on loopback, and
``patroni --validate-config`` (with etcd pointed at a local listener: the
validator dials every etcd host, and rendered production addresses are never dialled).
"""

from __future__ import annotations

import glob
import re
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from deploy_fixtures import fake_secrets, host_datas
from pgfleet import hostdata, sizing
from pgfleet.schema import DatabaseSpec
from pgfleet import tls as tls_mod
from roles import databases, firewall, haproxy, patroni, pgbouncer
from roles._common import render

STACKS = ["lab", "dev", "staging", "prod"]


def db_hosts(stack: str):  # type: ignore[no-untyped-def]
    s, inv, ds = host_datas(stack)
    return s, inv, {n: d for n, d in ds.items() if "postgres" in d["pgfleet_roles"]}


def tls_files(tmp_path: Path, s, d: dict) -> dict:  # type: ignore[no-untyped-def]
    """Write a CA and host certificate into tmp_path and point the host data there."""
    sec = fake_secrets(s)
    names = tls_mod.Names.of(d["tls_dns_names"], d["tls_ip_addresses"])
    (tmp_path / "ca.crt").write_text(sec.ca_cert_pem)
    (tmp_path / "host.key").write_text(tls_mod.key_pem(tls_mod.host_key(sec.ca_key_pem, d["pgfleet_environment"])))
    (tmp_path / "host.crt").write_text(tls_mod.issue(sec.ca_cert_pem, sec.ca_key_pem, d["pgfleet_environment"], names))
    (tmp_path / "host.crt.key").symlink_to("host.key")  # as roles/haproxy.py links it for the metrics frontend
    return {**d, "tls_dir": str(tmp_path)}


@pytest.mark.parametrize("stack", STACKS)
def test_every_template_renders_for_every_host(stack: str) -> None:
    s, inv, ds = host_datas(stack)
    sec = fake_secrets(s)
    for name, d in ds.items():
        assert firewall.ruleset(d)
        assert render("base/sysctl.conf.j2", sysctls=d["base_network_sysctls"])
        if "etcd" in d["pgfleet_roles"]:
            env = render("etcd/etcd.env.j2", **d)
            assert f'ETCD_NAME="{name}"' in env and 'ETCD_CLIENT_CERT_AUTH="true"' in env and "http://" not in env
        if "postgres" in d["pgfleet_roles"]:
            conf = yaml.safe_load(patroni.config(d, sec, container=False))
            assert conf["name"] == name and conf["etcd3"]["protocol"] == "https"
            dcs = conf["bootstrap"]["dcs"]
            assert dcs["failsafe_mode"] is True and dcs["postgresql"]["use_pg_rewind"] is True
            assert dcs["synchronous_mode"] == s.cluster(d["pgfleet_cluster"]).synchronous
            assert conf["restapi"]["authentication"]["password"] == sec.password("patroni_rest")
            assert conf["postgresql"]["authentication"]["replication"]["sslmode"] == "verify-full"
            assert conf["watchdog"]["mode"] == "automatic"
            assert "auth_query" in pgbouncer.ini(d, 1000)
            sql = databases.setup_sql(d, sec.passwords)
            for p in sec.passwords.values():
                assert p not in sql, "plaintext password in the SQL file"
            assert "SECURITY DEFINER" in sql and "CREATE EXTENSION IF NOT EXISTS \"vector\"" in sql


def test_setup_sql_sets_and_resets_pgvector_settings_per_database() -> None:
    s, inv, ds = db_hosts("lab")
    d = next(iter(ds.values()))
    specs = [DatabaseSpec(name="app", owner="app", extensions=["vector"], vector={"ef_search": 100, "iterative_scan": "relaxed_order"}),
             DatabaseSpec(name="plain", owner="app", extensions=["vector", "pg_prewarm"])]
    # as host data carries them (pgfleet/hostdata.py)
    dbs = [{**db.model_dump(), "settings": sizing.database_settings(db)} for db in specs]
    sql = databases.setup_sql({**d, "databases": dbs, "patroni_prewarm": True}, fake_secrets(s).passwords)
    assert "ALTER DATABASE \"app\" SET hnsw.ef_search = '100';" in sql
    assert "ALTER DATABASE \"app\" SET hnsw.iterative_scan = 'relaxed_order';" in sql
    assert 'ALTER DATABASE "app" RESET' not in sql
    # removed from the spec: back to pgvector's defaults
    assert "ALTER DATABASE \"plain\" RESET hnsw.ef_search;" in sql and "ALTER DATABASE \"plain\" RESET hnsw.iterative_scan;" in sql
    # pg_prewarm in every database once (the prewarm callback calls it there)
    assert sql.count('CREATE EXTENSION IF NOT EXISTS "pg_prewarm";') == 2
    stock = databases.setup_sql({**d, "databases": dbs[:1], "patroni_prewarm": False}, fake_secrets(s).passwords)
    assert "pg_prewarm" not in stock


def test_patroni_config_in_a_container_turns_the_watchdog_off() -> None:
    s, inv, ds = db_hosts("lab")
    conf = yaml.safe_load(patroni.config(next(iter(ds.values())), fake_secrets(s), container=True))
    assert conf["watchdog"]["mode"] == "off"


@pytest.mark.parametrize("stack", STACKS)
def test_haproxy_config_passes_haproxy_check(stack: str, tmp_path: Path) -> None:
    s, inv, ds = db_hosts(stack)
    d = tls_files(tmp_path, s, next(iter(ds.values())))
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(haproxy.config(d, 20000))
    text = cfg.read_text()
    assert text.count("on-marked-down shutdown-sessions") == 1  # in default-server: every server gets it
    assert "check-ssl verify required" in text and "meth OPTIONS uri /primary" in text and "uri /replica" in text
    for port in (5000, 5001, 5002, 5003, 7000):
        assert f"bind :{port}" in text
    # the monitoring host's frontend: the node's private address only, a client certificate from the cluster CA required
    assert f"bind {d['pgfleet_ip']}:7001 ssl crt {d['tls_dir']}/host.crt ca-file {d['tls_dir']}/ca.crt verify required" in text
    cp = subprocess.run([shutil.which("haproxy") or "/usr/sbin/haproxy", "-c", "-f", str(cfg)], capture_output=True, text=True)
    assert cp.returncode == 0, cp.stdout + cp.stderr


@pytest.mark.parametrize("stack", STACKS)
def test_firewall_rules_pass_nft_check(stack: str, tmp_path: Path) -> None:
    s, inv, ds = host_datas(stack)
    for name, d in ds.items():
        f = tmp_path / f"{name}.nft"
        f.write_text(firewall.ruleset(d))
        cp = subprocess.run(["nft", "-c", "-f", str(f)], capture_output=True, text=True)
        assert cp.returncode == 0, (name, cp.stderr)


def test_firewall_default_drop_and_who_may_reach_what() -> None:
    s, inv, ds = host_datas("prod")
    d = ds["prod-main-1"]
    rules = firewall.ruleset(d)
    assert "policy drop;" in rules
    assert re.search(r"tcp dport \{ 22 \} ip saddr @admin4 accept", rules)
    # clients reach HAProxy's endpoints only; PostgreSQL/PgBouncer directly, stats and Patroni REST are admin-only
    assert re.search(r"tcp dport \{ 5000-5003 \} ip saddr @clients4 accept", rules)
    assert re.search(r"tcp dport \{ 5432, 6432, 7000, 8008 \} ip saddr @admin4 accept", rules)
    members = ", ".join(re.findall(r"tcp dport \{ ([^}]*) \} ip saddr @members4 accept", rules))
    assert "2379" in members and "2380" in members and "8008" in members
    # etcd's ports are never open to clients or admins
    for line in rules.splitlines():
        if "@clients" in line or "@admin" in line:
            assert "2379" not in line and "2380" not in line
    assert "203.0.113.10/32" in rules  # the admin range from the stack
    assert "elements = { " + ", ".join(inv_ip for inv_ip in d["firewall_member_ips"]) + " }" in rules


def test_pgbouncer_config_starts_a_real_pgbouncer() -> None:
    with tempfile.TemporaryDirectory(prefix="pgfleet-pgbouncer-") as tmp:
        run_pgbouncer(Path(tmp))


def run_pgbouncer(tmp_path: Path) -> None:
    """Start PgBouncer (it refuses root, so as postgres) on the rendered file, in a directory postgres can read."""
    tmp_path.chmod(0o755)
    s, inv, ds = db_hosts("lab")
    d = tls_files(tmp_path, s, next(iter(ds.values())))
    exe = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
    version = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout
    text = pgbouncer.ini(d, 1000)
    assert "client_tls_sslmode = require" in text and "pool_mode = transaction" in text
    assert "host=/var/run/postgresql" in text  # the local PostgreSQL over its socket
    assert "so_reuseport = 1" in text and "peer_id = 1" in text and "\n[peers]\n1 = host=/run/pgbouncer/1 port=6432\n" in text
    text = (text.replace("listen_addr = *", "listen_addr = 127.0.0.1").replace("listen_port = 6432", "listen_port = 16432")
            .replace("/run/pgbouncer/1", str(tmp_path))
            .replace("/etc/pgbouncer/userlist.txt", str(tmp_path / "userlist.txt")))
    m = re.search(r"PgBouncer (\d+)\.(\d+)", version)
    if m and (int(m.group(1)), int(m.group(2))) < (1, 20):
        # auth_dbname came with 1.20, peering with 1.19; the lab (Debian 13, 1.24) runs the file unchanged
        text = text.split("\n[peers]\n")[0]
        text = "\n".join(line for line in text.splitlines() if not line.startswith(("auth_dbname", "peer_id")))
    (tmp_path / "pgbouncer.ini").write_text(text)
    (tmp_path / "userlist.txt").write_text(pgbouncer.userlist("secret"))
    shutil.chown(tmp_path, "postgres")
    for f in tmp_path.iterdir():
        shutil.chown(f, "postgres")
    proc = subprocess.Popen(["runuser", "-u", "postgres", "--", exe, str(tmp_path / "pgbouncer.ini")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", 16432), timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
                time.sleep(0.2)
        else:
            pytest.fail("pgbouncer did not listen")
    finally:
        proc.terminate()
        out = proc.communicate(timeout=10)[0]
    assert "process up" in out, out
    assert "ERROR" not in out, out


def test_patroni_validates_the_rendered_config(tmp_path: Path) -> None:
    s, inv, ds = db_hosts("lab")
    sec = fake_secrets(s)
    conf = yaml.safe_load(patroni.config(next(iter(ds.values())), sec, container=True))
    exe = shutil.which("patroni") or str(Path(__file__).resolve().parents[1] / ".venv/bin/patroni")
    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    assert bins, "PostgreSQL server binaries are needed (./bootstrap installs them)"
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    try:
        conf["etcd3"]["hosts"] = [f"127.0.0.1:{listener.getsockname()[1]}"]
        conf["postgresql"]["bin_dir"] = bins[-1]
        conf["postgresql"]["data_dir"] = str(tmp_path / "data")
        f = tmp_path / "patroni.yml"
        f.write_text(yaml.safe_dump(conf))
        cp = subprocess.run([exe, "--validate-config", str(f)], capture_output=True, text=True, timeout=60)
    finally:
        listener.close()
    assert cp.returncode == 0, cp.stdout + cp.stderr


def test_pg_hba_denies_by_default() -> None:
    s, inv, ds = host_datas("prod")
    hba = hostdata.pg_hba(s, inv)
    assert hba[-1].split() == ["host", "all", "all", "all", "reject"]
    assert hba[0].split() == ["local", "all", "postgres", "peer"]
    # every network line is hostssl + scram, except explicit rejects
    for line in hba:
        f = line.split()
        if f[0].startswith("host"):
            assert f[0] == "hostssl" and f[-1] == "scram-sha-256" or f[-1] == "reject", line
    # replication only from members, and nothing else may replicate
    repl = [line.split() for line in hba if line.split()[1] == "replication"]
    members = set(hostdata.member_ips(inv))
    allowed = {f[3].removesuffix("/32") for f in repl if f[-1] == "scram-sha-256"}
    assert allowed == members | {"127.0.0.1"}  # Patroni's local replication connection after a crash
    assert ["host", "replication", "all", "all", "reject"] in repl
    # the superuser never over the network
    first_pg_network = next(i for i, line in enumerate(hba) if line.startswith("host") and "postgres" in line.split()[2])
    assert hba[first_pg_network].split()[-1] == "reject"
    for cidr in s.client_cidrs:
        assert any(line.split()[3:4] == [cidr] for line in hba)


def test_pg_hba_rejects_plaintext_client_before_any_accept() -> None:
    """No plain ``host … scram`` line exists: a client without TLS reaches only ``reject``."""
    s, inv, ds = host_datas("lab")
    for line in hostdata.pg_hba(s, inv):
        f = line.split()
        if f[0] == "host":
            assert f[-1] == "reject", line
