"""What ``pgfleet top`` shows, read from the stack's Prometheus: every PromQL query it sends is in :data:`QUERIES`.

Metric names come from :mod:`.metrics` only (tests/test_monitoring_cli.py
holds :data:`QUERIES` to the catalogue); label names are the scrape labels
``cluster``, ``node`` and ``job`` (:mod:`.prometheus`). :func:`build` turns
query answers into a :class:`Snapshot` without any I/O, so a missing metric is
simply ``None`` (the terminal view prints "—").
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pgfleet.monitoring.client import Alert, Prometheus, Sample

#: Bytes each replica's replay is behind its primary's WAL position (patroni_xlog_location is 0 on replicas).
_LAG = ("(max by (cluster) (patroni_xlog_location) - on (cluster) group_right max by (cluster, node) "
        "(patroni_xlog_replayed_location)) and on (cluster, node) (patroni_replica == 1)")

#: name -> PromQL; per member unless it says per cluster. ``up`` is every target, with its ``job``.
QUERIES: dict[str, str] = {
    "primary": "max by (cluster, node) (patroni_primary)",
    "replica": "max by (cluster, node) (patroni_replica)",
    "sync_standby": "max by (cluster, node) (patroni_sync_standby)",
    "lag_bytes": _LAG,
    "tps": ("sum by (cluster, node) (rate(pg_stat_database_xact_commit[1m])) "
            "+ sum by (cluster, node) (rate(pg_stat_database_xact_rollback[1m]))"),
    "backends": "sum by (cluster, node) (pg_stat_database_numbackends)",
    "pool_waiting": "sum by (cluster, node) (pgbouncer_pools_client_waiting_connections)",
    "pool_max_wait": "max by (cluster, node) (pgbouncer_pools_client_maxwait_seconds)",
    "up": "up",
    # per cluster
    "backup_age": "min by (cluster) (pgbackrest_backup_since_last_completion_seconds)",
    "recall": "min by (cluster, database, table, column) (pgfleet_vector_recall)",
}
#: Queries whose answer is one value per member (cluster, node).
MEMBER_VALUES = ("lag_bytes", "tps", "backends", "pool_waiting", "pool_max_wait")


@dataclass
class Member:
    cluster: str
    node: str
    #: "primary", "sync standby", "replica", or None when Patroni's metrics are missing
    role: str | None = None
    lag_bytes: float | None = None
    tps: float | None = None
    backends: float | None = None
    pool_waiting: float | None = None
    pool_max_wait: float | None = None
    #: job -> target up, for every scrape target labelled with this member
    targets: dict[str, bool] = field(default_factory=dict)


@dataclass
class ClusterView:
    name: str
    #: seconds since the newest completed backup of any type, None when the exporter reports none
    backup_age: float | None = None
    #: (database, table, column) -> recall@k of the watched index
    recall: dict[tuple[str, str, str], float] = field(default_factory=dict)


@dataclass
class Snapshot:
    members: list[Member]
    clusters: list[ClusterView]
    #: targets of hosts outside any cluster (the monitoring host, dedicated etcd): node -> job -> up
    other_targets: dict[str, dict[str, bool]]
    #: firing and pending alerts, as Prometheus lists them
    alerts: list[Alert]


def collect(prom: Prometheus) -> Snapshot:
    """Ask Prometheus every query of :data:`QUERIES` and its alerts."""
    return build({name: prom.query(q) for name, q in QUERIES.items()}, prom.alerts())


def build(answers: dict[str, list[Sample]], alerts: list[Alert]) -> Snapshot:
    """A snapshot from query answers by :data:`QUERIES` name; a name without an answer counts as no series."""
    members: dict[tuple[str, str], Member] = {}

    def member(s: Sample) -> Member | None:
        cluster, node = s.labels.get("cluster"), s.labels.get("node")
        if not cluster or not node:
            return None
        return members.setdefault((cluster, node), Member(cluster, node))

    flags: dict[str, set[tuple[str, str]]] = {}
    for name in ("primary", "replica", "sync_standby"):
        flags[name] = set()
        for s in answers.get(name, []):
            m = member(s)
            if m is not None and s.value == 1:
                flags[name].add((m.cluster, m.node))
    for name in MEMBER_VALUES:
        for s in answers.get(name, []):
            m = member(s)
            if m is not None:
                setattr(m, name, s.value)
    other: dict[str, dict[str, bool]] = {}
    for s in answers.get("up", []):
        job = s.labels.get("job", "?")
        m = member(s)
        if m is not None:
            m.targets[job] = m.targets.get(job, True) and s.value == 1
        else:
            node = s.labels.get("node") or s.labels.get("instance", "?")
            other.setdefault(node, {})[job] = other.get(node, {}).get(job, True) and s.value == 1
    for key, m in members.items():
        m.role = ("primary" if key in flags["primary"] else "sync standby" if key in flags["sync_standby"]
                  else "replica" if key in flags["replica"] else None)
    clusters: dict[str, ClusterView] = {c: ClusterView(c) for c, _ in members}
    for s in answers.get("backup_age", []):
        if s.labels.get("cluster"):
            clusters.setdefault(s.labels["cluster"], ClusterView(s.labels["cluster"])).backup_age = s.value
    for s in answers.get("recall", []):
        if s.labels.get("cluster"):
            view = clusters.setdefault(s.labels["cluster"], ClusterView(s.labels["cluster"]))
            view.recall[(s.labels.get("database", "?"), s.labels.get("table", "?"), s.labels.get("column", "?"))] = s.value
    return Snapshot(members=[members[k] for k in sorted(members)], clusters=[clusters[c] for c in sorted(clusters)],
                    other_targets={n: dict(sorted(j.items())) for n, j in sorted(other.items())}, alerts=alerts)
