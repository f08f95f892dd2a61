"""Monitoring end to end on the shared lab: the lab-monitor host's Prometheus scrapes real exporters, its
Alertmanager notifies real receivers on the lab's bridge, and the recall probe measures real pgvector indexes.

These tests run first among the lab tests (``lab_first``): the quiet check needs a cluster no drill has just
failed over (a failover alert lasts five minutes), and the node-loss check needs its failover to be the only one.
Every command is the one a user runs (``pgfleet dsn``, ``pgfleet drill``, ``pgfleet backup``, ``pgfleet alerts``).
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

import recall_data
from monitoring_receivers import Mailbox, RemoteWriteStore, Webhook
from pgfleet import contract
from pgfleet import lab as lab_mod
from pgfleet.lab import objectstore
from pgfleet.lab.layout import Layout
from pgfleet.monitoring import alertmanager, dashboards, metrics
from pgfleet.monitoring.client import Prometheus

pytestmark = [pytest.mark.lab, pytest.mark.lab_first]
PGFLEET = [str(Path(sys.executable).with_name("pgfleet"))]
MONITOR = "lab-monitor"
CA, CERT, KEY = contract.CA_FILE, contract.HOST_CERT, contract.HOST_KEY
PSQL = f"runuser -u {contract.POSTGRES_OS_USER} -- psql -Atc"


def pgfleet(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PGFLEET, *args], capture_output=True, text=True, timeout=timeout)


def dsn(*flags: str) -> str:
    r = pgfleet("dsn", "lab", *flags)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def wait(what: str, check, timeout: float, every: float = 3):  # type: ignore[no-untyped-def]
    """``check()``'s first truthy value; AssertionError naming ``what`` (and the last value) after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f} s (last: {value!r})")
        time.sleep(every)


@pytest.fixture(scope="module")
def prom(deployed, lab, lab_secrets) -> Prometheus:  # type: ignore[no-untyped-def]
    (mon,) = lab.by_role("monitor")
    p = Prometheus(f"https://{mon.public_ip}:{contract.PROMETHEUS_PORT}", lab_secrets.ca_cert_pem)
    wait("every scrape target up", lambda: (ts := p.targets()) and all(t.up for t in ts), 120)
    return p


@pytest.fixture(scope="module")
def receivers(lab, lab_spec):  # type: ignore[no-untyped-def]
    hook, mail, store = Webhook().start(lab_spec), Mailbox().start(lab_spec), None
    try:
        store = RemoteWriteStore().start(lab_spec)
        yield hook, mail, store
    finally:
        hook.stop()
        mail.stop()
        if store is not None:
            store.stop()


@pytest.fixture(scope="module")
def good_index(prom):  # type: ignore[no-untyped-def]
    """The two tables the lab stack watches, both with a well-built HNSW index, measured by the probe
    (the recall test rebuilds recall_poor's index badly, then well again)."""
    for table in ("recall_good", "recall_poor"):
        recall_data.seed(dsn("--direct"), table, recall_data.GOOD)
    wait("the probe measured both", lambda: len(prom.query("pgfleet_vector_recall")) == 2 or None, 180)


def firing(prom: Prometheus) -> list[str]:
    return sorted(f"{a.name}({a.labels.get('node', a.labels.get('cluster', ''))})" for a in prom.alerts() if a.firing)


# ---------------------------------------------------------------- scrapes


EXPORTERS = [(9100, "/metrics", True), (9187, "/metrics", True), (9127, "/metrics", True), (9854, "/metrics", True),
             (7001, "/metrics", False), (7001, "/patroni/metrics", False), (2381, "/metrics", False)]


def curl(spec, on: str, url: str, cert: tuple[str, str] | None) -> tuple[int, str]:  # type: ignore[no-untyped-def]
    tls = f"--cert {cert[0]} --key {cert[1]}" if cert else ""
    cmd = f"curl -s -o /dev/null -w '%{{http_code}}' --connect-timeout 3 -m 8 --cacert {CA} {tls} {shlex.quote(url)}"
    p = lab_mod.run(spec, on, cmd, check=False, timeout=30)
    return p.returncode, p.stdout.strip()


def test_exporters_answer_the_monitoring_host_only_and_only_with_its_certificate(prom, lab, lab_spec):  # type: ignore[no-untyped-def]
    targets = prom.targets()
    assert {t.job for t in targets} == {"node", "postgres", "pgbouncer", "pgbackrest", "patroni", "haproxy", "etcd",
                                        "prometheus", "alertmanager", "pgfleet"}
    assert all(t.up for t in targets), [(t.job, t.instance, t.last_error) for t in targets if not t.up]
    node = lab.by_role("postgres")[0].private_ip
    # another host's certificate (from the same CA) on the monitoring host, to tell the SAN check from the firewall
    other = {f: lab_mod.run(lab_spec, "lab-client", f"cat {f}").stdout for f in (CERT, KEY)}
    for f, text in other.items():
        lab_mod.run(lab_spec, MONITOR, f"install -m 0600 /dev/stdin /tmp/other{Path(f).suffix} <<'EOF'\n{text}EOF")
    try:
        for port, path, checks_san in EXPORTERS:
            url = f"https://{node}:{port}{path}"
            assert curl(lab_spec, MONITOR, url, (CERT, KEY)) == (0, "200"), url
            rc, code = curl(lab_spec, MONITOR, url, None)
            assert rc != 0 and code == "000", f"{url} answered without a client certificate: {rc} {code}"
            # lab-client holds a valid certificate of the cluster CA, but the firewall drops it (timeout: rc 28)
            rc, code = curl(lab_spec, "lab-client", url, (CERT, KEY))
            assert rc == 28 and code == "000", f"{url} reached from lab-client: {rc} {code}"
            if checks_san:  # exporter-toolkit: only a certificate naming the monitoring host
                rc, code = curl(lab_spec, MONITOR, url, ("/tmp/other.crt", "/tmp/other.key"))
                assert rc != 0 and code == "000", f"{url} accepted lab-client's certificate: {rc} {code}"
    finally:
        lab_mod.run(lab_spec, MONITOR, "rm -f /tmp/other.crt /tmp/other.key", check=False)
    # Patroni's REST port keeps answering health checks that present no certificate (members and admins only:
    # tests/test_monitoring_config.py holds the firewall matrix to it)
    assert curl(lab_spec, "lab-main-2", f"https://{node}:{contract.PATRONI_REST_PORT}/health", None) == (0, "200")


# ---------------------------------------------------------------- quiet


def test_idle_healthy_cluster_sends_no_notification_for_three_minutes(prom, receivers, good_index):  # type: ignore[no-untyped-def]
    hook, mail, _ = receivers
    wait("no alert firing or pending", lambda: not prom.alerts() or None, 180, every=5)
    # an alert that resolved just now is still announced (after a group interval): that is not the idle cluster's
    time.sleep(alertmanager.GROUP_INTERVAL + alertmanager.GROUP_WAIT)
    start = time.time()
    time.sleep(190)
    assert [n for n in hook.received if n.at >= start] == [], [(n.status, sorted(n.names())) for n in hook.received]
    assert mail.subjects(start) == []
    assert firing(prom) == []
    # Prometheus evaluated the rules all along (an idle Prometheus would be trivially quiet)
    rules = prom.query("count(prometheus_rule_group_last_evaluation_timestamp_seconds > time() - 30)")
    assert rules and float(rules[0].value) >= 2


# ---------------------------------------------------------------- every metric, every panel


def test_every_catalogue_metric_exists_in_the_lab_prometheus(prom, good_index):  # type: ignore[no-untyped-def]
    # the deploy took the repository's first full backup: no cluster is ever without one
    r = pgfleet("backups", "lab")
    assert r.returncode == 0 and " full " in r.stdout, r.stdout + r.stderr
    # the pgBackRest exporter reads the repository every minute, node-metrics every 30 s
    deadline = time.monotonic() + 180
    while left := [m.name for m in metrics.CATALOGUE if not m.fault_only and not prom.query(f"count({m.name})")]:
        assert time.monotonic() < deadline, f"catalogue metrics missing from the lab's Prometheus: {left}"
        time.sleep(10)


def test_every_dashboard_panel_returns_a_series(prom, good_index):  # type: ignore[no-untyped-def]
    empty = [(uid, title, expr) for uid, title, expr in dashboards.queries() if not prom.query(dashboards.concrete(expr))]
    assert empty == [], empty


# ---------------------------------------------------------------- recall


def test_recall_probe_meets_the_target_and_a_poor_index_trips_the_alert(prom, receivers, good_index):  # type: ignore[no-untyped-def]
    hook, _, _ = receivers
    (good,) = prom.query('pgfleet_vector_recall{table="recall_good"}')
    assert float(good.value) >= 0.95
    direct = dsn("--direct")
    start = time.time()
    recall_data.rebuild_index(direct, "recall_poor", recall_data.POOR)
    try:
        n = hook.wait_for("VectorRecallBelowTarget", since=start, timeout=240)
        alert = next(a for a in n.alerts if a["labels"]["alertname"] == "VectorRecallBelowTarget")
        assert alert["labels"]["table"] == "recall_poor"
        (poor,) = prom.query('pgfleet_vector_recall{table="recall_poor"}')
        assert float(poor.value) < 0.95
        # measured with the application role's own settings: pgvector's default ef_search, nothing set by the probe
        with psycopg.connect(dsn("--ro", "--direct")) as conn:
            conn.execute("SELECT '[1]'::vector")  # loads pgvector, whose parameters exist only once it is loaded
            assert conn.execute("SHOW hnsw.ef_search").fetchone() == ("40",)
    finally:
        recall_data.rebuild_index(direct, "recall_poor", recall_data.GOOD)
    wait("VectorRecallBelowTarget resolved", lambda: "VectorRecallBelowTarget" not in {a.name for a in prom.alerts()}, 120)


# ---------------------------------------------------------------- failover


def test_node_loss_sends_the_failover_alert_to_the_webhook_and_by_mail(prom, receivers, tmp_path):  # type: ignore[no-untyped-def]
    hook, mail, _ = receivers
    start = time.time()
    report = tmp_path / "drill.json"
    r = pgfleet("drill", "lab", "node-loss", "--json", str(report), timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    n = hook.wait_for("PostgresFailover", since=start, timeout=120)
    assert n.at - start < 240
    wait("the failover e-mail", lambda: [s for s in mail.subjects(start) if "PostgresFailover" in s], 90)
    doc = json.loads(report.read_text())
    assert doc["ok"] and [(d["scenario"], d["ok"], d["lost_count"]) for d in doc["drills"]] == [("node-loss", True, 0)], doc


# ---------------------------------------------------------------- archiving


def test_stopped_object_store_sends_the_archiving_alert(prom, receivers, lab, lab_spec):  # type: ignore[no-untyped-def]
    hook, _, _ = receivers
    layout = Layout.of(lab_spec)
    proxy = objectstore.daemons(lab_spec, layout)[1]
    direct = dsn("--direct")
    start = time.time()
    assert proxy.stop(), "the object store's proxy was not running"
    try:
        with psycopg.connect(direct, autocommit=True) as conn:  # WAL to archive: a few segments' worth, switched
            conn.execute("CREATE TABLE IF NOT EXISTS archive_probe (id bigserial PRIMARY KEY, pad text)")
            for _ in range(3):
                conn.execute("INSERT INTO archive_probe (pad) SELECT repeat('x', 1000) FROM generate_series(1, 20000)")
                leader = next(h.name for h in lab.by_role("postgres")
                              if lab_mod.run(lab_spec, h.name, f"{PSQL} 'SELECT NOT pg_is_in_recovery()'", check=False).stdout.strip() == "t")
                lab_mod.run(lab_spec, leader, f"{PSQL} 'SELECT pg_switch_wal()'")
        hook.wait_for("WalArchivingFailing", since=start, timeout=420)
    finally:
        objectstore.ensure(lab_spec, layout)
    wait("WalArchivingFailing resolved", lambda: "WalArchivingFailing" not in {a.name for a in prom.alerts() if a.firing}, 300, every=10)
    with psycopg.connect(direct, autocommit=True) as conn:
        conn.execute("DROP TABLE archive_probe")


# ---------------------------------------------------------------- remote write, CLI


def test_remote_write_store_receives_the_series(prom, receivers):  # type: ignore[no-untyped-def]
    _, _, store = receivers
    got = wait("series in the remote_write store", lambda: store.query('up{job="patroni",environment="lab"}'), 90)
    assert len(got) == 3


def test_pgfleet_alerts_reads_the_lab(prom):  # type: ignore[no-untyped-def]
    r = pgfleet("alerts", "lab", "--json")
    assert r.returncode in (0, 1), r.stderr
    doc = json.loads(r.stdout)
    critical = [a for a in doc["alerts"] if a["severity"] == "critical" and a["state"] == "firing"]
    assert (r.returncode == 1) == bool(critical), (r.returncode, doc)
    top = pgfleet("top", "lab", "--once")
    assert top.returncode == 0, top.stderr
    rows = [ln for ln in top.stdout.splitlines() if "lab-main-" in ln]
    assert sum("primary" in ln for ln in rows) == 1 and sum("replica" in ln or "sync" in ln for ln in rows) == 2, top.stdout
