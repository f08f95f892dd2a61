"""``pgfleet monitoring | alerts | top`` against a real Prometheus on loopback, serving HTTPS from a test CA.

Two Prometheus servers (the Debian binary) run for this module, each with its
own storage, ``--web.config.file`` (TLS) and rules evaluated every second:

- ``critical``: an always-firing critical alert (cluster main, node main-1), a
  firing warning (cluster other), a critical one held pending by ``for: 1h``;
  it scrapes itself over TLS, a small exporter on loopback that plays the
  cluster's members (patroni, postgres_exporter, pgbackrest and probe series,
  labelled cluster/node), and a closed port (a target that is down);
- ``warnings``: only the firing warning and the pending critical, scraping itself.

The commands' cores take (Prometheus URL, CA PEM); the typer commands are run
with ``_open`` (the stack lookup) replaced by the same pair. Each Prometheus is
killed by its PID in the fixture's finalizer, whatever happened.
"""

from __future__ import annotations

import http.server
import io
import json
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from rich.console import Console
from typer.testing import CliRunner

from monitoring_support import run, tool
from pgfleet import secrets, tls
from pgfleet.cli import app
from pgfleet.cli import monitoring as cli_mon
from pgfleet.errors import MonitoringError
from pgfleet.inventory import Inventory, InventoryHost
from pgfleet.monitoring import metrics, promql
from pgfleet.monitoring import top as top_mod
from pgfleet.monitoring.client import Prometheus, Sample

#: Bound on waiting for a fresh Prometheus to scrape and evaluate (it takes a few seconds).
READY_WITHIN = 30.0

CRITICAL_RULE = {"alert": "PgfleetTestCritical", "expr": "vector(1)", "for": "0s",
                 "labels": {"severity": "critical", "cluster": "main", "node": "main-1"},
                 "annotations": {"summary": "a critical test alert that always fires",
                                 "runbook_url": "runbooks/alerts/pgfleet-test-critical.md"}}
WARNING_RULE = {"alert": "PgfleetTestWarning", "expr": "vector(1)", "for": "0s",
                "labels": {"severity": "warning", "cluster": "other"},
                "annotations": {"summary": "a warning that always fires", "runbook_url": "runbooks/alerts/pgfleet-test-warning.md"}}
PENDING_RULE = {"alert": "PgfleetTestPending", "expr": "vector(1)", "for": "1h",
                "labels": {"severity": "critical", "cluster": "main"},
                "annotations": {"summary": "critical, but its for: keeps it pending", "runbook_url": "runbooks/alerts/x.md"}}

#: What the loopback exporter serves (honor_labels: these cluster/node labels are kept): main-1 the primary,
#: main-2 the synchronous standby 3 KiB behind; no transaction or PgBouncer series (top prints "—").
MEMBER_SERIES = """\
patroni_primary{cluster="main",node="main-1"} 1
patroni_primary{cluster="main",node="main-2"} 0
patroni_replica{cluster="main",node="main-1"} 0
patroni_replica{cluster="main",node="main-2"} 1
patroni_sync_standby{cluster="main",node="main-1"} 0
patroni_sync_standby{cluster="main",node="main-2"} 1
patroni_xlog_location{cluster="main",node="main-1"} 1000000
patroni_xlog_location{cluster="main",node="main-2"} 0
patroni_xlog_replayed_location{cluster="main",node="main-1"} 0
patroni_xlog_replayed_location{cluster="main",node="main-2"} 996928
pg_stat_database_numbackends{cluster="main",node="main-1",datname="app"} 5
pg_stat_database_numbackends{cluster="main",node="main-1",datname="postgres"} 2
pgbackrest_backup_since_last_completion_seconds{cluster="main",node="main-1",backup_type="full"} 7200
pgbackrest_backup_since_last_completion_seconds{cluster="main",node="main-1",backup_type="incr"} 3600
pgfleet_vector_recall{cluster="main",node="monitoring",database="app",table="items",column="embedding"} 0.97
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class CaPair:
    cert: str
    key: str


@dataclass(frozen=True)
class RunningPrometheus:
    url: str
    ca: str
    log: Path


@pytest.fixture(scope="module")
def ca() -> CaPair:
    return CaPair(*secrets.new_ca("pgfleet monitoring test CA"))


@pytest.fixture(scope="module")
def exporter() -> Iterator[int]:
    """A plain-HTTP exporter on loopback serving :data:`MEMBER_SERIES`; yields its port."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            body = MEMBER_SERIES.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def start_prometheus(request: pytest.FixtureRequest, tmp: Path, ca: CaPair, rules: list[dict], extra_scrapes: list[dict],
                     ready: list[str]) -> RunningPrometheus:
    """Prometheus with TLS on a free loopback port; returns once every alert in ``ready`` is firing or pending as its
    rule says, every target was scraped once, and (when the exporter is scraped) its series are in."""
    binary = tool("prometheus")
    cert = tls.issue(ca.cert, ca.key, "test-monitor", tls.Names.of([], ["127.0.0.1"]))
    files = {"ca.crt": ca.cert, "host.crt": cert, "host.key": tls.key_pem(tls.host_key(ca.key, "test-monitor"))}
    for name, text in files.items():
        (tmp / name).write_text(text)
    port = free_port()
    (tmp / "web.yml").write_text(yaml.safe_dump({"tls_server_config": {"cert_file": str(tmp / "host.crt"),
                                                                        "key_file": str(tmp / "host.key")}}))
    (tmp / "rules.yml").write_text(yaml.safe_dump({"groups": [{"name": "test", "interval": "1s", "rules": rules}]}))
    self_scrape = {"job_name": "prometheus", "scheme": "https", "tls_config": {"ca_file": str(tmp / "ca.crt")},
                   "static_configs": [{"targets": [f"127.0.0.1:{port}"], "labels": {"node": "monitoring"}}]}
    (tmp / "prometheus.yml").write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(tmp / "rules.yml")],
        "scrape_configs": [self_scrape, *extra_scrapes],
    }))
    log = tmp / "prometheus.log"
    with log.open("w") as out:
        proc = subprocess.Popen([binary, f"--config.file={tmp / 'prometheus.yml'}", f"--storage.tsdb.path={tmp / 'data'}",
                                 f"--web.listen-address=127.0.0.1:{port}", f"--web.config.file={tmp / 'web.yml'}"],
                                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def stop() -> None:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)

    request.addfinalizer(stop)
    url = f"https://127.0.0.1:{port}"
    prom = Prometheus(url, ca.cert, timeout=2)
    deadline = time.monotonic() + READY_WITHIN
    want = {r["alert"]: "pending" if r["for"] != "0s" else "firing" for r in rules if r["alert"] in ready}
    last = ""
    while True:
        if proc.poll() is not None:
            pytest.fail(f"prometheus exited with {proc.returncode}: {log.read_text()[-2000:]}", pytrace=False)
        try:
            states = {a.name: a.state for a in prom.alerts()}
            targets = prom.targets()
            members_in = not extra_scrapes or bool(prom.query("patroni_primary"))
            if all(states.get(n) == s for n, s in want.items()) and targets and all(t.health != "unknown" for t in targets) \
                    and members_in:
                return RunningPrometheus(url, ca.cert, log)
            last = f"alerts {states}, targets {[(t.job, t.health) for t in targets]}, member series {members_in}"
        except MonitoringError as e:
            last = str(e)
        if time.monotonic() > deadline:
            pytest.fail(f"Prometheus at {url} not ready within {READY_WITHIN:.0f} s (want {want}): {last}\n"
                        f"{log.read_text()[-2000:]}", pytrace=False)
        time.sleep(0.3)


@pytest.fixture(scope="module")
def critical(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, ca: CaPair, exporter: int) -> RunningPrometheus:
    members = {"job_name": "patroni", "honor_labels": True,
               "static_configs": [{"targets": [f"127.0.0.1:{exporter}"], "labels": {"cluster": "main", "node": "main-1"}}]}
    closed = {"job_name": "postgres",
              "static_configs": [{"targets": [f"127.0.0.1:{free_port()}"], "labels": {"cluster": "main", "node": "main-2"}}]}
    return start_prometheus(request, tmp_path_factory.mktemp("prom-critical"), ca, [CRITICAL_RULE, WARNING_RULE, PENDING_RULE],
                            [members, closed], ready=["PgfleetTestCritical", "PgfleetTestWarning", "PgfleetTestPending"])


@pytest.fixture(scope="module")
def warnings_only(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, ca: CaPair) -> RunningPrometheus:
    return start_prometheus(request, tmp_path_factory.mktemp("prom-warnings"), ca, [WARNING_RULE, PENDING_RULE], [],
                            ready=["PgfleetTestWarning", "PgfleetTestPending"])


def captured() -> tuple[Console, io.StringIO]:
    buf = io.StringIO()
    return Console(file=buf, width=200, color_system=None), buf


def invoke(monkeypatch: pytest.MonkeyPatch, prom: RunningPrometheus | tuple[str, str], *args: str):  # type: ignore[no-untyped-def]
    """Run ``pgfleet ARGS`` with the stack lookup answering this Prometheus and CA."""
    pair = (prom.url, prom.ca) if isinstance(prom, RunningPrometheus) else prom
    monkeypatch.setattr(cli_mon, "_open", lambda stack: pair)
    return CliRunner().invoke(app, list(args))


# ---- the client


def test_query_alerts_and_targets_from_a_real_prometheus(critical: RunningPrometheus) -> None:
    prom = Prometheus(critical.url, critical.ca)
    up = {(s.labels["job"], s.labels.get("node")): s.value for s in prom.query("up")}
    assert up[("prometheus", "monitoring")] == 1 and up[("patroni", "main-1")] == 1 and up[("postgres", "main-2")] == 0
    assert prom.query("vector(42)") == [Sample({}, 42.0)]
    alerts = {a.name: a for a in prom.alerts()}
    crit = alerts["PgfleetTestCritical"]
    assert crit.firing and crit.critical and crit.labels["cluster"] == "main" and crit.active_at is not None
    assert crit.annotations["runbook_url"] == "runbooks/alerts/pgfleet-test-critical.md"
    assert alerts["PgfleetTestPending"].state == "pending" and alerts["PgfleetTestWarning"].severity == "warning"
    targets = {t.job: t for t in prom.targets()}
    assert targets["prometheus"].up and targets["patroni"].up
    assert not targets["postgres"].up and targets["postgres"].last_error and targets["postgres"].labels["node"] == "main-2"


def test_a_bad_query_is_an_error_naming_the_url(critical: RunningPrometheus) -> None:
    with pytest.raises(MonitoringError, match=rf"{critical.url}.*HTTP 400.*parse error"):
        Prometheus(critical.url, critical.ca).query("sum by (")


def test_a_wrong_ca_is_a_clear_error_naming_the_url(critical: RunningPrometheus) -> None:
    other_ca, _ = secrets.new_ca("some other CA")
    with pytest.raises(MonitoringError) as e:
        Prometheus(critical.url, other_ca).alerts()
    assert critical.url in str(e.value) and "not verified against the stack's CA" in str(e.value)


def test_a_certificate_for_another_address_is_refused(critical: RunningPrometheus) -> None:
    """Hostname checking is on: the certificate names the address 127.0.0.1 only, so the same server dialled as
    ``localhost`` (trusted CA, other name) is refused."""
    url = critical.url.replace("127.0.0.1", "localhost")
    with pytest.raises(MonitoringError, match="not verified.*does not name the address dialled"):
        Prometheus(url, critical.ca, timeout=2).alerts()


def test_a_closed_port_is_a_clear_error(ca: CaPair) -> None:
    url = f"https://127.0.0.1:{free_port()}"
    with pytest.raises(MonitoringError, match=rf"Prometheus at {url} cannot be reached: connection refused"):
        Prometheus(url, ca.cert, timeout=2).targets()


def test_a_port_that_never_answers_times_out_with_a_clear_error(ca: CaPair) -> None:
    with socket.socket() as s:  # listens (the connect succeeds) but never accepts: the TLS handshake gets no answer
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        url = f"https://127.0.0.1:{s.getsockname()[1]}"
        with pytest.raises(MonitoringError, match=rf"Prometheus at {url} cannot be reached: no answer within 0.5 s"):
            Prometheus(url, ca.cert, timeout=0.5).alerts()


def test_a_ca_that_is_not_pem_is_refused_before_dialling() -> None:
    with pytest.raises(MonitoringError, match="https://127.0.0.1:1 is not a PEM certificate"):
        Prometheus("https://127.0.0.1:1", "not a certificate")


# ---- pgfleet alerts


def test_alerts_exits_1_while_a_critical_alert_fires(critical: RunningPrometheus, monkeypatch: pytest.MonkeyPatch) -> None:
    r = invoke(monkeypatch, critical, "alerts", "lab")
    assert r.exit_code == cli_mon.EXIT_CRITICAL, r.output
    assert "PgfleetTestCritical" in r.output and "main/main-1" in r.output and "a critical test alert that always fires" in r.output
    assert "runbooks/alerts/pgfleet-test-critical.md" in r.output and "PgfleetTestWarning" in r.output
    assert "PgfleetTestPending" not in r.output
    # critical first
    assert r.output.index("PgfleetTestCritical") < r.output.index("PgfleetTestWarning")


def test_alerts_json_parses_and_pending_is_included_on_request(critical: RunningPrometheus, monkeypatch: pytest.MonkeyPatch) -> None:
    r = invoke(monkeypatch, critical, "alerts", "lab", "--json", "--pending")
    assert r.exit_code == cli_mon.EXIT_CRITICAL, r.output
    doc = json.loads(r.stdout)
    by_name = {a["alert"]: a for a in doc["alerts"]}
    assert doc["prometheus"] == critical.url and doc["critical_firing"] == 1
    assert by_name["PgfleetTestCritical"]["state"] == "firing" and by_name["PgfleetTestCritical"]["node"] == "main-1"
    assert by_name["PgfleetTestCritical"]["active_at"] and by_name["PgfleetTestPending"]["state"] == "pending"
    assert by_name["PgfleetTestWarning"]["runbook_url"] == "runbooks/alerts/pgfleet-test-warning.md"
    plain = json.loads(invoke(monkeypatch, critical, "alerts", "lab", "--json").stdout)
    assert "PgfleetTestPending" not in {a["alert"] for a in plain["alerts"]}


def test_alerts_exits_0_when_only_warnings_fire(warnings_only: RunningPrometheus, monkeypatch: pytest.MonkeyPatch) -> None:
    r = invoke(monkeypatch, warnings_only, "alerts", "lab")
    assert r.exit_code == cli_mon.EXIT_OK, r.output
    assert "PgfleetTestWarning" in r.output and "0 critical" in r.output
    pending = invoke(monkeypatch, warnings_only, "alerts", "lab", "--pending")  # a pending critical does not fire yet
    assert pending.exit_code == cli_mon.EXIT_OK and "PgfleetTestPending" in pending.output and "pending" in pending.output


def test_alerts_of_one_cluster(critical: RunningPrometheus, monkeypatch: pytest.MonkeyPatch) -> None:
    r = invoke(monkeypatch, critical, "alerts", "lab", "--cluster", "other")
    assert r.exit_code == cli_mon.EXIT_OK, r.output
    assert "PgfleetTestWarning" in r.output and "PgfleetTestCritical" not in r.output


def test_alerts_exits_2_with_a_message_when_prometheus_is_not_trusted(critical: RunningPrometheus,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    other_ca, _ = secrets.new_ca("some other CA")
    r = invoke(monkeypatch, (critical.url, other_ca), "alerts", "lab", "--json")
    assert r.exit_code == cli_mon.EXIT_UNKNOWN and isinstance(r.exception, SystemExit)
    assert critical.url in r.stderr and "not verified" in r.stderr and "Traceback" not in r.output + r.stderr
    assert r.stdout == ""


def test_alerts_exits_2_when_prometheus_is_unreachable(ca: CaPair, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"https://127.0.0.1:{free_port()}"
    r = invoke(monkeypatch, (url, ca.cert), "alerts", "lab")
    assert r.exit_code == cli_mon.EXIT_UNKNOWN and url in r.stderr and "connection refused" in r.stderr


# ---- pgfleet top


def _row(output: str, node: str) -> str:
    return next(line for line in output.splitlines() if line.startswith(node + " "))


def test_top_once_shows_members_clusters_and_alerts(critical: RunningPrometheus, monkeypatch: pytest.MonkeyPatch) -> None:
    r = invoke(monkeypatch, critical, "top", "lab", "--once")
    assert r.exit_code == 0, r.output + repr(r.exception)
    primary, standby = _row(r.output, "main-1").split(), _row(r.output, "main-2")
    assert primary[:3] == ["main-1", "main", "primary"] and "7" in primary and "patroni✓" in primary
    assert "sync standby" in standby and "3.0 KiB" in standby and "postgres✗" in standby
    assert standby.count(cli_mon.ABSENT) >= 4  # TPS, backends, pool waiting, max wait: no series
    assert "cluster main: newest backup 1h 00m ago, recall app.items.embedding 0.970" in r.output
    assert "monitoring: prometheus✓" in r.output
    assert "PgfleetTestCritical" in r.output and "PgfleetTestPending" not in r.output


def test_top_once_without_any_member_series(warnings_only: RunningPrometheus, monkeypatch: pytest.MonkeyPatch) -> None:
    r = invoke(monkeypatch, warnings_only, "top", "lab", "--once")
    assert r.exit_code == 0, r.output + repr(r.exception)
    assert "no cluster member has any series" in r.output and "PgfleetTestWarning" in r.output


def test_top_once_with_prometheus_unreachable_is_an_error_not_a_traceback(ca: CaPair, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"https://127.0.0.1:{free_port()}"
    r = invoke(monkeypatch, (url, ca.cert), "top", "lab", "--once")
    # pgfleet's main() prints a PgfleetError without a traceback and exits 1; the runner shows the exception itself
    assert isinstance(r.exception, MonitoringError) and url in str(r.exception)


def test_a_frame_from_no_answers_at_all_shows_dashes() -> None:
    out, buf = captured()
    out.print(cli_mon.render(top_mod.build({}, []), "https://127.0.0.1:9090"))
    assert "no cluster member has any series" in buf.getvalue() and "firing alerts: 0" in buf.getvalue()
    snap = top_mod.build({"up": [Sample({"job": "patroni", "cluster": "c", "node": "n1"}, 1.0)],
                          "backup_age": [Sample({"cluster": "c"}, float("nan"))]}, [])
    out.print(cli_mon.render(snap, "https://127.0.0.1:9090"))
    row = _row(buf.getvalue(), "n1")
    assert row.split()[:3] == ["n1", "c", cli_mon.ABSENT] and "patroni✓" in row
    assert "cluster c: newest backup — ago, recall —" in buf.getvalue()


def test_top_queries_read_catalogue_metrics_only() -> None:
    for name, expr in top_mod.QUERIES.items():
        unknown = promql.metric_names(expr) - set(metrics.BY_NAME)
        assert not unknown, f"top's query {name!r} reads {unknown}, not in pgfleet/monitoring/metrics.py"
    # the check can fail: a name outside the catalogue is found
    assert promql.metric_names("sum by (cluster) (rate(pg_stat_database_xact_commitx[1m]))") - set(metrics.BY_NAME)


def test_top_queries_parse(tmp_path: Path) -> None:
    recorded = [{"record": f"pgfleet:top_{name}", "expr": expr} for name, expr in top_mod.QUERIES.items()]
    (tmp_path / "top.yml").write_text(yaml.safe_dump({"groups": [{"name": "top", "rules": recorded}]}))
    p = run("promtool", "check", "rules", tmp_path / "top.yml")
    assert p.returncode == 0, p.stdout + p.stderr


# ---- pgfleet monitoring


def test_target_health_counts_and_names_the_down_target(critical: RunningPrometheus) -> None:
    out, buf = captured()
    assert cli_mon.target_health(critical.url, critical.ca, out) == 0
    text = buf.getvalue()
    assert "scrape targets: 2 up, 1 down" in text
    down = next(line for line in text.splitlines() if "postgres" in line)
    assert "main main-2" in down and "connection refused" in down


def test_target_health_says_prometheus_does_not_answer(ca: CaPair) -> None:
    out, buf = captured()
    url = f"https://127.0.0.1:{free_port()}"
    assert cli_mon.target_health(url, ca.cert, out) == 1
    assert "Prometheus does not answer" in buf.getvalue() and url in buf.getvalue()


def _inventory(**host: object) -> Inventory:
    monitor = InventoryHost(name="lab-monitor", cluster=None, roles=["monitor"], public_ip="198.18.0.15", private_ip="198.18.0.15",
                            server_type="cx23", **host)  # type: ignore[arg-type]
    node = InventoryHost(name="main-1", cluster="main", roles=["postgres", "etcd"], public_ip="198.18.0.11",
                         private_ip="198.18.0.11", server_type="cx23")
    return Inventory(stack="lab", provider="lab", hosts=[node, monitor], ssh_key_file="/state/lab/id_ed25519")


def test_the_monitoring_host_is_found_in_the_inventory_and_how_to_reach_it_is_printed() -> None:
    from monitoring_support import lab_spec

    spec = lab_spec()
    ep = cli_mon.monitor_endpoint(spec, _inventory(ssh_user="admin", ssh_port=2222))
    assert (ep.host.name, ep.prometheus, ep.alertmanager) == ("lab-monitor", "https://198.18.0.15:9090", "https://198.18.0.15:9093")
    lines = dict(cli_mon.access_lines("lab", spec, _inventory(ssh_user="admin", ssh_port=2222), ep, Path("/state/lab/ca.crt")))
    assert lines["CA"].startswith("/state/lab/ca.crt") and "198.18.0.0/28" in lines["reach"]
    assert ("ssh -N -L 9090:127.0.0.1:9090 -L 9093:127.0.0.1:9093 -p 2222 -i /state/lab/id_ed25519 admin@198.18.0.15"
            in lines[""])
    assert "--dashboards DIR" in lines["dashboards"]


def test_a_stack_without_a_monitoring_host_is_a_clear_error() -> None:
    from monitoring_support import lab_spec

    inv = _inventory()
    inv.hosts = [h for h in inv.hosts if "monitor" not in h.roles]
    with pytest.raises(MonitoringError, match="no host with role 'monitor'"):
        cli_mon.monitor_endpoint(lab_spec(), inv)
    spec = lab_spec(enabled=False)
    with pytest.raises(MonitoringError, match="monitoring.enabled: false"):
        cli_mon.monitor_endpoint(spec, _inventory())


class FakeStack:
    """What ``pgfleet monitoring`` reads of a stack: name, spec, inventory (monitoring host on loopback) and the CA."""

    def __init__(self, ca_pem: str, *, unreachable: str | None = None) -> None:
        from types import SimpleNamespace

        from monitoring_support import lab_spec

        self.name, self.spec, self.secrets = "fake", lab_spec(), SimpleNamespace(ca_cert_pem=ca_pem)
        self.unreachable = unreachable
        inv = _inventory()
        inv.hosts = [h.model_copy(update={"public_ip": "127.0.0.1"}) if "monitor" in h.roles else h for h in inv.hosts]
        self.inv = inv

    def inventory(self, *, reachable: bool = True) -> Inventory:
        if reachable and self.unreachable:
            raise MonitoringError(self.unreachable)
        return self.inv


def monitoring_command(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, stack: FakeStack, port: int, *args: str):  # type: ignore[no-untyped-def]
    from pgfleet import contract
    from pgfleet.stack import Stack

    monkeypatch.setenv("PGFLEET_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setattr(contract, "PROMETHEUS_PORT", port)
    monkeypatch.setattr(Stack, "open", classmethod(lambda cls, name: stack))
    return CliRunner().invoke(app, ["monitoring", "fake", *args])


def test_monitoring_prints_urls_ca_file_access_and_target_health(critical: RunningPrometheus, monkeypatch: pytest.MonkeyPatch,
                                                                tmp_path: Path) -> None:
    port = int(critical.url.rsplit(":", 1)[1])
    r = monitoring_command(monkeypatch, tmp_path, FakeStack(critical.ca), port)
    assert r.exit_code == 0, r.output + repr(r.exception)
    ca_file = tmp_path / "state" / "fake" / "ca.crt"
    assert ca_file.read_text() == critical.ca  # written into the stack's state directory
    out = " ".join(r.output.split())  # the grid folds long lines
    assert f"Prometheus {critical.url}" in out and "Alertmanager https://127.0.0.1:9093" in out and str(ca_file) in out
    assert "ssh -N -L" in out and "root@127.0.0.1" in out and "--dashboards DIR" in out
    assert "scrape targets: 2 up, 1 down" in out and "connection refused" in out


def test_monitoring_exits_1_when_prometheus_does_not_answer(ca: CaPair, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    port = free_port()
    r = monitoring_command(monkeypatch, tmp_path, FakeStack(ca.cert), port)
    assert r.exit_code == 1 and "Prometheus does not answer" in r.output and f"https://127.0.0.1:{port}" in r.output
    assert f"Prometheus https://127.0.0.1:{port}" in " ".join(r.output.split())  # what to dial is printed all the same
    refused = monitoring_command(monkeypatch, tmp_path, FakeStack(ca.cert, unreachable="the lab is not running"), port)
    assert refused.exit_code == 1 and "Prometheus not asked: the lab is not running" in refused.output


def test_monitoring_dashboards_writes_grafana_json(ca: CaPair, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    r = monitoring_command(monkeypatch, tmp_path, FakeStack(ca.cert, unreachable="never dialled"), free_port(),
                           "--dashboards", str(tmp_path / "dash"))
    assert r.exit_code == 0, r.output + repr(r.exception)
    written = sorted((tmp_path / "dash").glob("*.json"))
    assert len(written) == 5 and all(json.loads(p.read_text())["uid"] == p.stem for p in written)
    assert all(str(p) in r.output for p in written) and "Dashboards → New → Import" in r.output


def test_top_live_refreshes_until_ctrl_c_and_shows_an_unreachable_prometheus(critical: RunningPrometheus, ca: CaPair,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The live loop: a frame per interval (time.sleep stands in, the third one is Ctrl-C); errors stay in the frame."""
    sleeps: list[float] = []

    def sleep(s: float) -> None:
        sleeps.append(s)
        if len(sleeps) == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(cli_mon.time, "sleep", sleep)
    out, buf = captured()
    cli_mon.run_top(critical.url, critical.ca, out, interval=0.5)
    assert sleeps == [0.5, 0.5, 0.5] and "PgfleetTestCritical" in buf.getvalue()
    sleeps.clear()
    out, buf = captured()
    url = f"https://127.0.0.1:{free_port()}"
    cli_mon.run_top(url, ca.cert, out, interval=0.5)  # does not raise: the frame says it
    assert f"Prometheus at {url} cannot be reached" in buf.getvalue()
