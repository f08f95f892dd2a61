"""prometheus.yml for the monitoring host: one scrape job per exporter, every node, TLS with a client certificate.

Targets are given (the deploy knows the addresses); everything else comes from
the spec and the cluster contract. Scrapes that cross the network use the
cluster CA and the monitoring host's own certificate; each target carries the
``cluster`` and ``node`` labels the alert rules group by.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from pgfleet import contract
from pgfleet.monitoring.rules import EVALUATION_INTERVAL
from pgfleet.schema import Spec



@dataclass(frozen=True)
class Target:
    """A host to scrape: its name, the address the monitoring host dials, its cluster, and what it runs."""

    name: str
    address: str
    cluster: str | None
    postgres: bool = True
    etcd: bool = False
    #: PgBouncer processes on a database host: each has its own exporter (contract.pgbouncer_exporter_port)
    pgbouncer_processes: int = 1


@dataclass(frozen=True)
class TlsFiles:
    """The monitoring host's TLS files (the cluster CA and its client certificate)."""

    ca: str = contract.CA_FILE
    cert: str = contract.HOST_CERT
    key: str = contract.HOST_KEY


@dataclass(frozen=True)
class Job:
    name: str
    port: int
    on: str  # "all", "postgres", "etcd"
    path: str = "/metrics"
    #: one target per PgBouncer process of the host (ports from ``port`` up), labelled ``process``
    per_process: bool = False


#: Job names are what the rules match (``up{job="patroni"}``).
JOBS = (
    Job("node", contract.NODE_EXPORTER_PORT, "all"),
    Job("postgres", contract.POSTGRES_EXPORTER_PORT, "postgres"),
    Job("pgbouncer", contract.PGBOUNCER_EXPORTER_PORT, "postgres", per_process=True),
    Job("pgbackrest", contract.PGBACKREST_EXPORTER_PORT, "postgres"),
    # Patroni's /metrics through HAProxy's TLS frontend (client certificate required): its REST port stays
    # open to members and admins only, for health checks that cannot present a certificate
    Job("patroni", contract.HAPROXY_METRICS_PORT, "postgres", path="/patroni/metrics"),
    Job("haproxy", contract.HAPROXY_METRICS_PORT, "postgres"),
    Job("etcd", contract.ETCD_METRICS_PORT, "etcd"),
)
#: On the monitoring host itself, over loopback.
LOCAL_JOBS = (Job("prometheus", contract.PROMETHEUS_PORT, "local"), Job("alertmanager", contract.ALERTMANAGER_PORT, "local"),
              Job("pgfleet", contract.PGFLEET_EXPORTER_PORT, "local"))


def _runs(job: Job, t: Target) -> bool:
    return job.on == "all" or (job.on == "postgres" and t.postgres) or (job.on == "etcd" and t.etcd)


def _static(t: Target, port: int, process: int | None = None) -> dict[str, Any]:
    labels = {"node": t.name, **({"cluster": t.cluster} if t.cluster else {}), **({"process": str(process)} if process else {})}
    return {"targets": [f"{t.address}:{port}"], "labels": labels}


def _statics(j: Job, t: Target) -> list[dict[str, Any]]:
    if j.per_process:
        return [_static(t, contract.pgbouncer_exporter_port(p), p) for p in contract.pgbouncer_processes(t.pgbouncer_processes)]
    return [_static(t, j.port)]


def config(spec: Spec, targets: list[Target], *, tls: TlsFiles = TlsFiles(), rule_files: tuple[str, ...] = (contract.PROMETHEUS_RULES,),
           alertmanager: str = f"127.0.0.1:{contract.ALERTMANAGER_PORT}") -> dict[str, Any]:
    tls_config = {"ca_file": tls.ca, "cert_file": tls.cert, "key_file": tls.key}
    scrape = [{"job_name": j.name, "scheme": "https", "metrics_path": j.path, "tls_config": tls_config,
               "static_configs": [sc for t in targets if _runs(j, t) for sc in _statics(j, t)]}
              for j in JOBS if any(_runs(j, t) for t in targets)]
    # Prometheus and Alertmanager serve HTTPS (their UIs are for admins); the probe plain HTTP on loopback only
    scrape += [{"job_name": j.name, **({"scheme": "https", "tls_config": {"ca_file": tls.ca}} if j.name != "pgfleet" else {}),
                "static_configs": [{"targets": [f"127.0.0.1:{j.port}"], "labels": {"node": "monitoring"}}]}
               for j in LOCAL_JOBS]
    # the probe measures the clusters' nodes: its own cluster/node labels must win over the target's
    next(j for j in scrape if j["job_name"] == "pgfleet")["honor_labels"] = True
    doc: dict[str, Any] = {
        "global": {"scrape_interval": f"{EVALUATION_INTERVAL}s", "evaluation_interval": f"{EVALUATION_INTERVAL}s",
                   "external_labels": {"environment": spec.environment}},
        "rule_files": list(rule_files),
        "alerting": {"alertmanagers": [{"scheme": "https", "tls_config": {"ca_file": tls.ca},
                                        "static_configs": [{"targets": [alertmanager]}]}]},
        "scrape_configs": scrape,
    }
    if spec.monitoring.remote_write_url:
        doc["remote_write"] = [{"url": spec.monitoring.remote_write_url}]
    return doc


def config_yaml(spec: Spec, targets: list[Target], **kwargs: Any) -> str:
    return yaml.safe_dump(config(spec, targets, **kwargs), sort_keys=False)


def storage_flags(spec: Spec) -> list[str]:
    """Command-line flags the Prometheus unit needs beside the file (retention is not a file setting)."""
    return [f"--storage.tsdb.retention.time={spec.monitoring.retention_days}d"]

