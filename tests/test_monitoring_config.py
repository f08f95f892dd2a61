"""prometheus.yml and alertmanager.yml as rendered: promtool and amtool accept them; TLS, receivers and timing as promised."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
import yaml

from monitoring_support import lab_spec, run
from pgfleet import contract
from pgfleet import spec as spec_mod
from pgfleet.errors import SpecError
from pgfleet.monitoring import alertmanager, prometheus, rules

EMAIL = {"smarthost": "198.18.0.1:2525", "sender": "pgfleet@example.org", "to": ["oncall@example.org"],
         "username": "pgfleet", "password_secret": "smtp_password"}


def _targets(spec) -> list[prometheus.Target]:
    c = spec.clusters[0]
    etcd = set(spec.etcd_names())
    return [prometheus.Target(n, str(ipaddress.ip_address("198.18.0.11") + i), c.name, etcd=n in etcd)
            for i, n in enumerate(spec.node_names(c))]


def _files(tmp_path: Path) -> prometheus.TlsFiles:
    for name in ("ca.crt", "host.crt", "host.key"):
        (tmp_path / name).write_text("placeholder\n")
    return prometheus.TlsFiles(ca=str(tmp_path / "ca.crt"), cert=str(tmp_path / "host.crt"), key=str(tmp_path / "host.key"))


def test_promtool_checks_the_rendered_prometheus_config(tmp_path: Path) -> None:
    spec = lab_spec(remote_write_url="http://198.18.0.1:9091/api/v1/write")
    (tmp_path / "rules.yml").write_text(rules.rules_yaml(spec))
    text = prometheus.config_yaml(spec, _targets(spec), tls=_files(tmp_path), rule_files=(str(tmp_path / "rules.yml"),))
    (tmp_path / "prometheus.yml").write_text(text)
    p = run("promtool", "check", "config", tmp_path / "prometheus.yml")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "SUCCESS" in p.stdout + p.stderr


def test_every_exporter_is_scraped_on_every_node_over_tls() -> None:
    spec = lab_spec()
    doc = prometheus.config(spec, _targets(spec))
    jobs = {j["job_name"]: j for j in doc["scrape_configs"]}
    assert set(jobs) == {"node", "postgres", "pgbouncer", "pgbackrest", "patroni", "haproxy", "etcd", "prometheus", "alertmanager", "pgfleet"}
    for name in ("node", "postgres", "pgbouncer", "pgbackrest", "patroni", "haproxy", "etcd"):
        j = jobs[name]
        assert j["scheme"] == "https" and j["tls_config"] == {"ca_file": contract.CA_FILE, "cert_file": contract.HOST_CERT, "key_file": contract.HOST_KEY}
        nodes = [sc["labels"]["node"] for sc in j["static_configs"]]
        assert nodes == spec.node_names(spec.clusters[0]) and all(sc["labels"]["cluster"] == "main" for sc in j["static_configs"])
    assert all(t.startswith("127.0.0.1:") for j in ("prometheus", "alertmanager", "pgfleet") for t in jobs[j]["static_configs"][0]["targets"])
    assert jobs["pgfleet"]["honor_labels"] is True and "honor_labels" not in jobs["node"]
    assert doc["global"]["evaluation_interval"] == f"{rules.EVALUATION_INTERVAL}s" and "remote_write" not in doc
    assert prometheus.storage_flags(spec) == ["--storage.tsdb.retention.time=15d"]


def test_every_pgbouncer_process_is_scraped_through_its_own_exporter() -> None:
    spec = lab_spec()
    targets = [prometheus.Target("n1", "198.18.0.11", "main", pgbouncer_processes=3)]
    job = next(j for j in prometheus.config(spec, targets)["scrape_configs"] if j["job_name"] == "pgbouncer")
    assert [(sc["targets"], sc["labels"]["process"]) for sc in job["static_configs"]] == [
        ([f"198.18.0.11:{contract.pgbouncer_exporter_port(p)}"], str(p)) for p in (1, 2, 3)]
    assert contract.pgbouncer_exporter_port(3) == contract.PGBOUNCER_EXPORTER_PORT + 2


def test_amtool_checks_the_rendered_alertmanager_config(tmp_path: Path) -> None:
    spec = lab_spec(receivers={"webhooks": ["http://198.18.0.1:8099/alerts"], "email": EMAIL})
    (tmp_path / "alertmanager.yml").write_text(alertmanager.config_yaml(spec, smtp_password="s3cret"))
    p = run("amtool", "check-config", tmp_path / "alertmanager.yml")
    assert p.returncode == 0, p.stdout + p.stderr


def test_alertmanager_routes_within_ten_seconds_and_takes_secrets_from_the_caller() -> None:
    spec = lab_spec(receivers={"webhooks": ["http://198.18.0.1:8099/alerts"], "email": EMAIL})
    doc = alertmanager.config(spec, smtp_password="s3cret")
    assert int(doc["route"]["group_wait"].removesuffix("s")) <= 10 and alertmanager.GROUP_WAIT <= 10
    (r,) = doc["receivers"]
    assert r["webhook_configs"] == [{"url": "http://198.18.0.1:8099/alerts", "send_resolved": True}]
    assert r["email_configs"][0]["auth_password"] == "s3cret"
    assert "s3cret" not in yaml.safe_dump(spec.model_dump())  # the spec names the secret only
    with pytest.raises(ValueError, match="smtp_password"):
        alertmanager.config(spec)


def test_alertmanager_without_receivers_is_still_valid(tmp_path: Path) -> None:
    (tmp_path / "alertmanager.yml").write_text(alertmanager.config_yaml(spec_mod.load("prod")))
    p = run("amtool", "check-config", tmp_path / "alertmanager.yml")
    assert p.returncode == 0, p.stdout + p.stderr


def _problems(**monitoring: object) -> list:
    with pytest.raises(SpecError) as e:
        lab_spec(**monitoring)
    return e.value.problems


@pytest.mark.parametrize("monitoring, field, words", [
    ({"vector_indexes": [{"database": "nope", "table": "t", "column": "c"}]}, "pgfleet:monitoring.vector_indexes[0].database", "app"),
    ({"vector_indexes": [{"cluster": "other", "database": "app", "table": "t", "column": "c"}]}, "pgfleet:monitoring.vector_indexes[0].cluster", "main"),
    ({"vector_indexes": [{"database": "app", "table": "t", "column": "c", "operator": "<<>>"}]}, "pgfleet:monitoring.vector_indexes.0.operator", "<->"),
    ({"vector_indexes": [{"database": "app", "table": "t", "column": "c", "target_recall": 1.5}]}, "pgfleet:monitoring.vector_indexes.0.target_recall", "1"),
    ({"receivers": {"webhooks": ["http://203.0.113.5/hook"]}}, "pgfleet:monitoring.receivers.webhooks[0]", "198.18.0.1"),
    ({"receivers": {"webhooks": ["not a url"]}}, "pgfleet:monitoring.receivers.webhooks.0", "pattern"),
    ({"receivers": {"email": {**EMAIL, "password_secret": None}}}, "pgfleet:monitoring.receivers.email", "password_secret"),
    ({"remote_write_url": "https://metrics.example.com/api/v1/write"}, "pgfleet:monitoring.remote_write_url", "lab"),
])
def test_bad_monitoring_settings_are_named_with_their_fix(monitoring: dict, field: str, words: str) -> None:
    problems = _problems(**monitoring)
    hits = [p for p in problems if p.field.replace("[", ".").replace("]", "") == field.replace("[", ".").replace("]", "")]
    assert hits, [str(p) for p in problems]
    assert any(words in f"{p.message} {p.fix}" for p in hits), [str(p) for p in hits]


def test_an_unreadable_backup_schedule_is_named() -> None:
    doc = yaml.safe_load(spec_mod.stack_path("lab").read_text())
    data = spec_mod.config_from_yaml(yaml.safe_dump(doc), "lab") | {"environment": "lab"}
    data["backups"] = {**data["backups"], "full_schedule": "*-*-01 01:00:00"}
    with pytest.raises(SpecError) as e:
        spec_mod.parse(data, "lab")
    assert any(p.field == "pgfleet:backups" and "DAYS" in p.fix for p in e.value.problems)


def test_shipped_stacks_monitor_by_default() -> None:
    for stack in ("dev", "staging", "prod", "lab"):
        s = spec_mod.load(stack)
        assert s.monitoring.enabled
        # only the lab watches indexes: the tables its tests seed (a good and a poor HNSW index)
        assert [w.table for w in s.monitoring.vector_indexes] == (["recall_good", "recall_poor"] if stack == "lab" else [])


def test_the_monitoring_host_reaches_exporters_and_endpoints_but_no_database_or_patroni_port() -> None:
    from pgfleet import contract

    def ports(roles: list[str]) -> set[str]:
        return {p for r in contract.port_rules(roles, True, sources=["monitor"]) for p in r.ports}

    assert ports(["postgres"]) == {"9100", "9187", "9127-9130", "9854", "7001", "5003"}  # one PgBouncer exporter per process
    assert ports(["etcd"]) == {"9100", "2381"}
    # Patroni's metrics travel through HAProxy's TLS frontend (7001): its REST port stays for members and admins
    for src in ("clients", "monitor"):
        opened = {p for r in contract.port_rules(["postgres", "etcd"], True, sources=[src]) for p in r.ports}
        assert not opened & {"8008", "5432", "6432", "2379", "2380", "8432"}, (src, opened)
    # Prometheus and Alertmanager: admins only, on the monitoring host only
    assert {p for r in contract.port_rules(["monitor"], True) for p in r.ports} == {"22", "9090", "9093"}
